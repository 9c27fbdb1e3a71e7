"""Any optimizer from Nevergrad's registry behind the promptopt contract (``ng:<Name>``).

Nevergrad proposes one candidate per ``ask`` in Python on the host; this wrapper asks
``popsize`` of them (``num_workers=popsize``) and tells all. Useful as a reference and
for algorithms promptopt does not ship; expect far more overhead per generation than
the batched built-ins.
"""

from __future__ import annotations

import difflib
import functools
import pickle
import warnings
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from .base import Optimizer

__all__ = ["NevergradOptimizer", "make_nevergrad", "nevergrad_names"]


def _ng():
    import nevergrad as ng  # slow import (~1 s): only when a Nevergrad optimizer is used
    return ng


def nevergrad_names() -> list[str]:
    """Names accepted after ``ng:`` (keys of ``nevergrad.optimizers.registry``)."""
    return sorted(_ng().optimizers.registry)


class NevergradOptimizer(Optimizer):
    """Wraps ``nevergrad.optimizers.registry[ng_name]``; use :func:`make_nevergrad`
    for a class bound to another name. This class itself is ``ng:NGOpt``.

    Hyper-parameters: ``budget`` [100_000] evaluation budget told to Nevergrad (pass
    the real one: NGOpt chooses its algorithm from budget, dim and num_workers);
    ``x0`` [None] initial value of the parametrization (Nevergrad starts from it).

    State dicts hold the pickled Nevergrad optimizer (``"pickle_state"``): load them
    only from trusted run directories you wrote yourself. Meta-optimizers (NGOpt,
    portfolios) and thread-based recast ones (Powell, ...) cannot be restored by
    Nevergrad itself, so they lack ``"exact_resume"`` and ``state_dict`` raises.
    """

    name = "ng:NGOpt"
    ng_name = "NGOpt"
    min_popsize = 1
    capabilities = frozenset({"batched", "pickle_state"})  # NGOpt: no exact_resume (see above)

    def __init__(self, dim, *, bounds, popsize=32, seed=0, device="cpu", dtype=torch.float32,
                 budget: int | None = 100_000, x0: Any = None):
        super().__init__(dim, bounds=bounds, popsize=popsize, seed=seed, device=device, dtype=dtype)
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
            raise ValueError(f"budget must be a positive int or None (got {budget!r})")
        ng = _ng()
        lo = self.lower.double().cpu().numpy()
        hi = self.upper.double().cpu().numpy()
        x0t = self._check_x0(x0)
        init = (lo + hi) / 2 if x0t is None else x0t.double().cpu().numpy()
        # sigma (hi - lo) / 6, as Nevergrad advises for bounded arrays (its default 1 ignores the scale)
        param = ng.p.Array(init=init).set_mutation(sigma=(hi - lo) / 6).set_bounds(lo, hi)
        # RandomState takes seeds below 2**32 only; larger ones (promptopt allows up to 2**63 - 1) go
        # through a SeedSequence, and smaller ones keep the stream recorded runs were made with
        param.random_state = np.random.RandomState(
            self.seed if self.seed < 2**32 else np.random.MT19937(np.random.SeedSequence(self.seed)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._opt = ng.optimizers.registry[self.ng_name](param, budget=budget, num_workers=popsize)
            if "exact_resume" in self.capabilities:
                self._opt.enable_pickling()  # no-op except for optimizers that must log history
        self.budget = budget
        self._cands: list | None = None

    def _ask(self) -> Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._cands = [self._opt.ask() for _ in range(self.popsize)]
        x = np.stack([c.value for c in self._cands]).astype(np.float64)
        z = torch.as_tensor(x).to(device=self.device, dtype=self.dtype)
        # Nevergrad's bounded Array stays in [lo, hi] in float64; the guard covers the
        # rounding of the cast to dtype only.
        return torch.minimum(torch.maximum(z, self.lower), self.upper)

    def _tell(self, z: Tensor, fitness: Tensor) -> None:
        f = fitness.detach().cpu().double().numpy()
        f = np.where(np.isfinite(f), f, 1e300)  # ng rejects inf
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for c, v in zip(self._cands, f.tolist()):
                self._opt.tell(c, v)
        self._cands = None

    def _state(self) -> dict[str, Any]:
        if "exact_resume" not in self.capabilities:
            raise RuntimeError(f"{self.name} cannot be checkpointed: Nevergrad cannot restore this optimizer "
                               "(use a plain algorithm such as ng:TwoPointsDE, or 'de', to resume runs)")
        return {"ng_name": self.ng_name, "pickle": pickle.dumps((self._opt, self._cands))}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self._opt, self._cands = pickle.loads(state["pickle"])


def _resumable(short: str) -> bool:
    """Whether Nevergrad can pickle *and* unpickle this optimizer mid-run."""
    from nevergrad.optimization import optimizerlib, recaster

    entry = _ng().optimizers.registry[short]
    cls = entry if isinstance(entry, type) else getattr(entry, "_OptimizerClass", None)
    if cls is None:
        return False
    return not issubclass(cls, (recaster.RecastOptimizer, optimizerlib.NGOptBase, optimizerlib.Portfolio))


@functools.lru_cache(maxsize=None)
def make_nevergrad(name: str) -> type[NevergradOptimizer]:
    """Class for ``"ng:<Name>"`` (or bare ``"<Name>"``), Name a key of
    ``nevergrad.optimizers.registry``. Cached, so the same name gives the same class."""
    if not isinstance(name, str):
        raise TypeError(f"nevergrad optimizer name must be a str like 'ng:TwoPointsDE' (got {type(name).__name__})")
    short = name[3:] if name.startswith("ng:") else name
    registry = _ng().optimizers.registry
    if short not in registry:
        close = difflib.get_close_matches(short, list(registry), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join('ng:' + c for c in close)}?" if close else "; see promptopt.optimizers.nevergrad_names()"
        raise ValueError(f"unknown Nevergrad optimizer {name!r}{hint}")
    if short == NevergradOptimizer.ng_name:
        return NevergradOptimizer
    cls_name = "Nevergrad_" + "".join(ch if ch.isalnum() else "_" for ch in short)
    caps = NevergradOptimizer.capabilities | ({"exact_resume"} if _resumable(short) else set())
    return type(cls_name, (NevergradOptimizer,), {"name": "ng:" + short, "ng_name": short, "__module__": __name__,
                                                 "capabilities": frozenset(caps),
                                                 "__doc__": f"Nevergrad {short} behind the promptopt contract."})
