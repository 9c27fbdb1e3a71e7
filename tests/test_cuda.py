"""The GPU path (issue 3): the evaluator, DE and a whole run on CUDA. Skipped without a GPU.

CPU tests prove the fast path equals a one-sequence-at-a-time full forward; these prove CUDA
gives the CPU's answers (fp32), sane answers in bf16, the same answers whatever the batching,
and that the optimizer's population and the evaluator's output never leave the device.
Run on a lent GPU with ``pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import json

import pytest
import torch

from conftest import invoke
from promptopt.evaluator import SoftPromptEvaluator
from promptopt.models import build_tiny
from promptopt.objectives import load_vsm13
from promptopt.optimizers import DifferentialEvolution

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

POSITIONS = ("reply", "answer", "suffix", "prefix")
FP32_TOL = 1e-4
BATCH_TOL = 1e-5
# bf16 vs fp32 on the tiny model (initialiser range 0.4 amplifies rounding): measured on the CPU,
# max |probs| 0.04-0.06 and |expected| 0.06-0.12 over answer, suffix, prefix, bounds at ~3x that;
# reply 0.15 and 0.51 (the answer is read at a soft token's own position, whose rounded input
# goes straight into it), bounds at 2x
BF16_TOL = {"reply": (0.3, 1.0), "answer": (0.15, 0.3), "suffix": (0.15, 0.3), "prefix": (0.15, 0.3)}


@pytest.fixture(scope="module")
def vsm():
    survey = load_vsm13()
    return survey.prompts("main"), list(survey.n_options)


@pytest.fixture(scope="module")
def cpu_model():
    return build_tiny()


@pytest.fixture(scope="module")
def soft(cpu_model):
    """8 candidates of 2 soft tokens near real token embeddings."""
    gen = torch.Generator().manual_seed(0)
    emb = cpu_model.embedding_matrix.detach()
    ids = torch.randint(4, emb.shape[0], (8, 2), generator=gen)
    return emb[ids] + 0.3 * emb.std() * torch.randn(8, 2, emb.shape[1], generator=gen)


@pytest.mark.parametrize("position", POSITIONS)
def test_cuda_fp32_gives_the_cpu_answers(cpu_model, vsm, soft, position):
    prompts, n_options = vsm
    gpu_model = build_tiny(device="cuda", dtype="float32")
    want = SoftPromptEvaluator(cpu_model, prompts, n_options, position=position).evaluate(soft)
    got = SoftPromptEvaluator(gpu_model, prompts, n_options, position=position).evaluate(soft.cuda())
    assert got.probs.device.type == "cuda" and got.expected.device.type == "cuda"
    for name in ("probs", "mass", "expected"):
        diff = (getattr(got, name).double().cpu() - getattr(want, name).double()).abs().max().item()
        assert diff <= FP32_TOL, (name, diff)


@pytest.mark.parametrize("position", POSITIONS)
def test_cuda_bf16_stays_near_fp32(cpu_model, vsm, soft, position):
    prompts, n_options = vsm
    assert build_tiny(device="cuda").dtype == torch.float32   # small models default to fp32 on CUDA too
    gpu_model = build_tiny(device="cuda", dtype="bfloat16")
    assert gpu_model.dtype == torch.bfloat16
    want = SoftPromptEvaluator(cpu_model, prompts, n_options, position=position).evaluate(soft)
    got = SoftPromptEvaluator(gpu_model, prompts, n_options, position=position).evaluate(soft.cuda())
    assert torch.isfinite(got.probs).all()
    probs_tol, expected_tol = BF16_TOL[position]
    assert (got.probs.double().cpu() - want.probs.double()).abs().max().item() <= probs_tol
    assert (got.expected.double().cpu() - want.expected.double()).abs().max().item() <= expected_tol


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cuda_answers_do_not_depend_on_batch_rows_batch_mates_or_order(vsm, soft, dtype):
    prompts, n_options = vsm
    model = build_tiny(device="cuda", dtype=dtype)
    x = soft.cuda()
    default = SoftPromptEvaluator(model, prompts, n_options).evaluate(x)
    tol = BATCH_TOL if dtype == "float32" else 1e-2   # bf16: another kernel split may round differently
    for rows in (1, 7):
        ev = SoftPromptEvaluator(model, prompts, n_options, batch_rows=rows)
        assert (ev.evaluate(x).probs - default.probs).abs().max().item() <= tol
        assert ev.last_batch_rows == rows
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(1))
    ev = SoftPromptEvaluator(model, prompts, n_options)
    assert (ev.evaluate(x[perm]).probs - default.probs[perm.cuda()]).abs().max().item() <= tol
    alone = ev.evaluate(x[3:4])
    assert (alone.probs[0] - default.probs[3]).abs().max().item() <= tol


def test_de_population_and_state_stay_on_the_gpu():
    de = DifferentialEvolution(16, bounds=(-1.0, 1.0), popsize=8, seed=0, device="cuda")
    for _ in range(3):
        x = de.ask()
        assert x.device.type == "cuda" and x.shape == (8, 16)
        assert ((x >= -1) & (x <= 1)).all()
        de.tell((x ** 2).sum(-1))
    assert de.state_dict() is not None


def test_a_whole_run_on_cuda_completes_and_is_no_worse_than_naive(tmp_path):
    out = tmp_path / "run"
    code, _, err = invoke(["run", "--model", "tiny", "--device", "cuda", "--popsize", "6", "--generations", "3",
                           "--quiet", "--out", str(out)])
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["evaluations"] == 18 and summary["stop_reason"] == "generations"
    assert (out / "checkpoint.safetensors").exists() and (out / "report.md").exists()
    assert summary["loss"] < summary["naive_loss"]
