"""Soft-prompt parametrisations: a search vector z -> K virtual-token embeddings [P, K, H].

``direct`` searches all K x H values; ``subspace`` searches z in R^d and decodes x0 + A z
with a seeded random projection A (Black-Box Tuning, Sun et al. 2022), d << K x H, whose rows
are Gaussian (``gaussian``) or real token embeddings minus their mean (``tokens``). Both
start at x0, the embeddings of K real vocabulary tokens, and take their bounds from the
model's embedding statistics so candidates stay in the region real tokens occupy.
"""

from __future__ import annotations

import os
import string
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .config import BASES


@dataclass
class SoftPromptSpace:
    """What the optimizer searches (dim, bounds, z0) and how to turn it into embeddings."""

    kind: str
    n_tokens: int
    hidden_size: int
    x0: torch.Tensor                 # [K, H], the starting soft prompt
    lower: torch.Tensor              # [dim]
    upper: torch.Tensor              # [dim]
    projection: torch.Tensor | None  # [d, K*H] for subspace, None for direct
    init_tokens: list[int]
    radius: float = 1.0
    basis: str = "gaussian"

    @property
    def dim(self) -> int:
        return self.lower.numel()

    @property
    def z0(self) -> torch.Tensor:
        """The search point that decodes to x0."""
        return self.x0.flatten() if self.projection is None else torch.zeros_like(self.lower)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z [P, dim] -> soft-prompt embeddings [P, K, H] (same device, x0's dtype)."""
        z = z.to(self.x0)
        flat = z if self.projection is None else self.x0.flatten() + z @ self.projection
        return flat.view(-1, self.n_tokens, self.hidden_size)

    def describe(self) -> dict:
        return {"space": self.kind, "tokens": self.n_tokens, "dim": self.dim, "init_tokens": self.init_tokens,
                "radius": self.radius, **({"basis": self.basis} if self.projection is not None else {}),
                "bounds": [float(self.lower.min()), float(self.upper.max())]}


def available_memory() -> int | None:
    """Bytes of memory the system can still hand out (MemAvailable: free plus reclaimable cache)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def check_projection_fits(subspace: int, n_tokens: int, hidden: int) -> None:
    """The projection A [d, K*H] (float32, built on the CPU) must fit in half the memory left, so a
    mistyped --subspace is one line, not a machine swapping itself to a halt."""
    need, free = 4 * subspace * n_tokens * hidden, available_memory()
    if free is None or need <= free / 2:
        return
    values = n_tokens * hidden
    raise ValueError(f"--subspace {subspace} needs a {need / 2**30:.1f} GiB projection (d x K x H = {subspace} x "
                     f"{n_tokens} x {hidden} float32), more than half the {free / 2**30:.1f} GiB of memory left; "
                     f"the soft prompt has only K x H = {values} values, so use --subspace {min(values, 64)} or "
                     f"another d <= {values}, or 0 to search all {values} directly")


def make_space(embedding_matrix: torch.Tensor, n_tokens: int, subspace: int, seed: int,
               special_ids: set[int] | None = None, radius: float = 1.0,
               init_ids: list[int] | None = None, basis: str = "gaussian") -> SoftPromptSpace:
    """Build a seeded search space from the model's input embedding table [V, H].

    ``radius`` scales how far a candidate may move from x0: 1 is about as far as real token
    embeddings spread; larger lets soft prompts leave the region real tokens occupy.
    ``init_ids``: the tokens x0 starts from (the first K non-special ones; random tokens fill up
    if fewer); default K random non-special tokens.
    ``basis`` (subspace only): ``gaussian`` draws each coordinate of A independently, scaled by
    that hidden dimension's spread; ``tokens`` makes each row a random real token's embedding
    minus the mean embedding, so A z moves along the directions (and correlations) real tokens
    vary in. Both give A z about the same size per coordinate."""
    if not radius > 0:
        raise ValueError(f"--radius must be > 0 (got {radius})")
    if basis not in BASES:
        raise ValueError(f"--basis must be one of {', '.join(BASES)} (got {basis!r})")
    if n_tokens < 1:
        raise ValueError(f"--tokens must be >= 1 (got {n_tokens})")
    if subspace < 0:
        raise ValueError(f"--subspace must be >= 0 (0 searches all values directly; got {subspace})")
    emb = embedding_matrix.detach().float().cpu()   # built on the CPU with a CPU generator: the same space on any device
    vocab, hidden = emb.shape
    gen = torch.Generator(device="cpu").manual_seed(seed)
    allowed = torch.ones(vocab, dtype=torch.bool)
    if special_ids:
        allowed[list(special_ids)] = False
    candidates = allowed.nonzero().flatten()
    random_ids = candidates[torch.randperm(candidates.numel(), generator=gen)[:n_tokens]].tolist()
    given = [i for i in init_ids or [] if i not in (special_ids or ())][:n_tokens]
    if any(not 0 <= i < vocab for i in given):
        raise ValueError(f"init token ids must be in [0, {vocab}) (got {given})")
    init = given + random_ids[:n_tokens - len(given)]
    if len(init) < n_tokens:   # x0 would come out shorter than K, and the first decode fail on its size
        start = f"its {len(given)} --init-text tokens, then " if given else "K "
        raise ValueError(f"--tokens {n_tokens} is more than this model can supply: the soft prompt starts as "
                         f"{start}distinct vocabulary tokens, and it has only {candidates.numel()} that are not "
                         f"special; use --tokens {len(given) + candidates.numel()} or fewer")
    x0 = emb[init].clone()
    device = embedding_matrix.device
    if subspace == 0:
        # each coordinate may range over what real tokens use in that hidden dimension
        lo, hi = emb.min(0).values, emb.max(0).values
        if radius != 1.0:
            mid, half = (hi + lo) / 2, radius * (hi - lo) / 2
            lo, hi = mid - half, mid + half
        x_flat = x0.flatten()   # a narrow box still holds the start, or no optimizer could begin there
        lo, hi = lo.repeat(n_tokens).minimum(x_flat), hi.repeat(n_tokens).maximum(x_flat)
        return SoftPromptSpace("direct", n_tokens, hidden, x0.to(device), lo.to(device),
                               hi.to(device), None, init, radius)
    check_projection_fits(subspace, n_tokens, hidden)
    # z uniform in [-1, 1]^d has per-entry variance 1/3, so rows of per-coordinate variance
    # 3 var / d make A z about as large, per coordinate, as real embeddings vary around their mean
    if basis == "tokens":   # rows: real tokens' offsets from the mean, so their covariance is the table's
        ids = candidates[torch.randint(candidates.numel(), (subspace * n_tokens,), generator=gen)]
        rows = (emb[ids] - emb.mean(0)).reshape(subspace, n_tokens * hidden)
        projection = rows * (radius * (3.0 / subspace) ** 0.5)
    else:                   # independent coordinates, each scaled by its hidden dimension's spread
        std = emb.std(0)                                                       # [H]
        scale = (radius * std.repeat(n_tokens) * (3.0 / subspace) ** 0.5)[None, :]      # [1, K*H]
        projection = torch.randn(subspace, n_tokens * hidden, generator=gen) * scale
    ones = torch.ones(subspace)
    return SoftPromptSpace("subspace", n_tokens, hidden, x0.to(device), (-ones).to(device), ones.to(device),
                           projection.to(device), init, radius, basis)


def punctuation_ids(tokenizer) -> list[int]:
    """Tokens that are one ASCII punctuation mark or a space: the candidates ``--init screen`` tries.

    Words as a reply's first token make the model go on with the word, not answer (the option
    mass near a random token is ~0.1%); after a mark or a space it still answers (SmolLM2: 29-95%)."""
    special = set(tokenizer.all_special_ids)
    singles = (tokenizer.encode(mark, add_special_tokens=False) for mark in string.punctuation + " ")
    return sorted({ids[0] for ids in singles if len(ids) == 1 and ids[0] not in special})


def fittest_tokens(embedding_matrix: torch.Tensor, ids: list[int], n_tokens: int,
                   fitness: Callable[[torch.Tensor], torch.Tensor]) -> list[int]:
    """The candidate token whose K-fold repeat has the lowest fitness, repeated K times: one
    population of len(ids) soft prompts [C, K, H] scored in one call."""
    if not ids:
        raise ValueError("no candidate tokens to screen")
    soft = embedding_matrix[torch.tensor(ids, device=embedding_matrix.device)][:, None, :].expand(-1, n_tokens, -1)
    return [ids[int(torch.argmin(fitness(soft)))]] * n_tokens
