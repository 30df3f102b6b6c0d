"""Deep-block queries evaluated for K parameter draws of one structure at once (C5 and C9 share it).

The quantities take the K draws stacked on a leading axis (:func:`stacked` makes a batch of one, so the
per-draw checkers run the same kernels as the runners' batches). log p's bound is
:func:`~mdm_props.rounding_mode.adjoint_error_bounds_batch` (draw by draw the adjoint bound of
:func:`~mdm_props.rounding_mode.adjoint_error_bounds`); gradients carry the running radii of the
``vmap``-ed forward and autograd backward pass (:func:`~mdm_props.rounding_mode.with_error_bounds`).

The runners draw structures covering every value of a claim's coverage set (:func:`structure_batches`),
each with :data:`PER_STRUCTURE` parameter draws (:class:`StructureBatch`), and record each draw in full
(:func:`run_batches`, ``details["draw"]``) for ``verify --replay``. Not a claim module (no ``CLAIMS``).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..checks import CheckResult
from ..claim import evaluate_checks
from ..model import ModelConfig, forward
from ..params import check_params, resolve_device
from ..rounding_mode import adjoint_error_bounds_batch, with_error_bounds
from ..validation import require_int, require_seed

TINY = torch.finfo(torch.float64).tiny  # a zero bound meets a zero difference: both sides exact
MAX_SEED = 2**32 - 1
PER_STRUCTURE = 8  # parameter draws per structure, checked in one vmap-ed evaluation
DRAWN_SCALES = (1.0, 0.5, 2.0)  # deep_case's parameter scales
CANDIDATES = 16  # structures examined per slot while some factor value is still uncovered


# ---------------------------------------------------------------------------------------------
# one side: log p at the slots of a token sequence, and the gradient of a summed query loss, for K
# parameter draws of one structure at once (a leading draw axis K; the per-draw functions are a batch of one)


def stacked(params: dict) -> dict:
    """One draw's parameters as a batch of one (leading axis 1)."""
    return {n: v.detach()[None] for n, v in params.items()}


def check_batch(params: dict, cfg: ModelConfig) -> int:
    """K, after checking every draw of the stacked ``params`` (names, shapes, float64, finite)."""
    sizes = {int(v.shape[0]) if v.dim() else -1 for v in params.values()}
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError("params must hold every parameter stacked on one leading draw axis K")
    K = sizes.pop()
    for i in range(K):
        check_params({n: v[i] for n, v in params.items()}, cfg)
    return K


def logprob_state_batch(params: dict, cfg: ModelConfig, tokens, slots) -> tuple[torch.Tensor, torch.Tensor]:
    """log p (K, k, V) at ``slots`` of one token sequence for the K stacked draws ``params``, and each
    draw's first-order error bound (the adjoint bound, :func:`mdm_props.rounding_mode.adjoint_error_bounds_batch`:
    draw by draw the bound of :func:`mdm_props.rounding_mode.adjoint_error_bounds`)."""
    tok = torch.as_tensor(tokens, dtype=torch.long, device=params["E"].device)
    at = torch.as_tensor(slots, dtype=torch.long, device=tok.device)
    return adjoint_error_bounds_batch(
        lambda p: torch.log_softmax(forward(p, cfg, tok, checked=True).logits[at], dim=-1), params
    )


def logprob_state(params: dict, cfg: ModelConfig, tokens, slots) -> tuple[torch.Tensor, torch.Tensor]:
    """log p (k, V) at ``slots`` of one token sequence and its first-order error bound: a batch of one of
    :func:`logprob_state_batch`."""
    check_params(params, cfg)
    value, bound = logprob_state_batch(stacked(params), cfg, tokens, slots)
    return value[0], bound[0]


def gradient_state_batch(params: dict, cfg: ModelConfig, tokens, slots, targets, names) -> tuple[dict, dict]:
    """∇ Σ_j −log p(target_j at slot_j) with respect to the parameters ``names`` for the K stacked draws
    ``params`` (a dict of (K, …) tensors; zeros where a parameter is unused), and its running-error bound
    (:func:`mdm_props.rounding_mode.with_error_bounds`, × SAFETY 2).

    The K losses come from the model under ``torch.func.vmap``; autograd differentiates their sum (the draws
    share no parameter, so draw i's gradient is ∂L_i/∂θ_i; the sum's backward hands each draw an exact 1).
    The radii are those of the aten operations that actually run, forward and backward: under vmap the
    batched kernels, each rule applied to them as to any operation (a contraction's length, a reduction's
    count are per draw; an accumulating scatter may count the draw axis as well, which only enlarges its
    γ_n). So the bound is the derivation of C5/C5b for the computation performed; it is not bit for bit the
    radius of the unbatched autograd pass (another sequence of kernels), and a batch of one runs the same
    kernels as the runners' batches."""
    tok = torch.as_tensor(tokens, dtype=torch.long, device=params["E"].device)
    at = torch.as_tensor(slots, dtype=torch.long, device=tok.device)
    y = torch.as_tensor(targets, dtype=torch.long, device=tok.device)
    S = tuple(names)

    def loss(p: dict) -> torch.Tensor:
        logp = torch.log_softmax(forward(p, cfg, tok, checked=True).logits[at], dim=-1)
        return -logp.gather(-1, y[:, None]).sum()

    leaves = {n: v.detach().requires_grad_(True) for n, v in params.items()}

    def run() -> dict:
        with torch.enable_grad():
            # the draws are independent: ∂(Σ_i L_i)/∂θ_i = ∂L_i/∂θ_i (the sum's backward hands each draw a 1)
            total = torch.func.vmap(loss)(leaves).sum()
            grads = torch.autograd.grad(total, [leaves[n] for n in S], allow_unused=True)
        return dict(zip(S, grads, strict=True))

    grad, bound = with_error_bounds(run)

    def filled(d: dict) -> dict:
        return {n: torch.zeros_like(params[n]) if d[n] is None else d[n] for n in S}

    return filled(grad), filled(bound)


def flat_batch(d: dict, names) -> torch.Tensor:
    """The entries ``names`` of a dict of (K, …) tensors, flattened to (K, Σ sizes)."""
    K = next(iter(d.values())).shape[0]
    return torch.cat([d[n].reshape(K, -1) for n in names], dim=1)


def storage_gradient_state_batch(
    params: dict, cfg: ModelConfig, tokens, slots, targets, storage
) -> tuple[torch.Tensor, torch.Tensor]:
    """∇_S Σ_j −log p(target_j at slot_j) on the storage ``storage`` for the K stacked draws ``params``
    (K, |S|), and its running-error bound: :func:`gradient_state_batch` flattened."""
    grad, bound = gradient_state_batch(params, cfg, tokens, slots, targets, storage)
    return flat_batch(grad, storage), flat_batch(bound, storage)


def storage_gradient_state(
    params: dict, cfg: ModelConfig, tokens, slots, targets, storage
) -> tuple[torch.Tensor, torch.Tensor]:
    """∇_S Σ_j −log p(target_j at slot_j) on the storage ``storage`` (flattened) and its running-error bound:
    a batch of one of :func:`storage_gradient_state_batch`."""
    check_params(params, cfg)
    value, bound = storage_gradient_state_batch(stacked(params), cfg, tokens, slots, targets, storage)
    return value[0], bound[0]


# ---------------------------------------------------------------------------------------------
# the runners: structures covering every value of every factor, each with PER_STRUCTURE parameter draws
# checked in one batched evaluation


@dataclass(frozen=True)
class StructureBatch:
    """One structure (``case``, its draw 0: a frozen dataclass with ``seed``, ``scale``, ``params(device)``)
    and the parameter draws (seed, scale) checked with it."""

    case: Any
    seeds: tuple[int, ...]
    scales: tuple[float, ...]

    @property
    def size(self) -> int:
        return len(self.seeds)

    def draw(self, i: int):
        """Draw i as a per-draw case (what the claim's checker replays)."""
        return dataclasses.replace(self.case, seed=self.seeds[i], scale=self.scales[i])

    def params(self, device="cpu") -> dict:
        """The draws' parameters (``init_params`` of each draw: the deep block's, norm gains included)
        stacked on a leading axis."""
        draws = [self.draw(i).params(device) for i in range(self.size)]
        return {n: torch.stack([p[n] for p in draws]) for n in draws[0]}


def structure_batches(
    draws: int,
    seed: int,
    sample: Callable[[random.Random], Any],
    factors: Callable[[Any], set],
    coverage: frozenset,
    size: int = PER_STRUCTURE,
) -> list[StructureBatch]:
    """``draws`` seeded draws in ⌈draws/size⌉ structures of ``size`` parameter draws (the last one fewer).

    Coverage: while some (factor, value) of ``coverage`` has not been drawn, each structure is the one,
    among the next :data:`CANDIDATES` of the seeded stream (``sample(rng)``), whose ``factors`` add the
    most uncovered values (the first on a tie); afterwards structures are taken as drawn. Every further
    draw of a structure takes a seed and a scale from the same stream."""
    require_int("draws", draws, 1)
    require_int("size", size, 1)
    rng = random.Random(require_seed("seed", seed))
    seen: set = set()
    out = []
    for start in range(0, draws, size):
        missing = coverage - seen
        case = sample(rng)
        if missing:
            for _ in range(CANDIDATES - 1):
                other = sample(rng)
                if len(factors(other) & missing) > len(factors(case) & missing):
                    case = other
        seen |= factors(case)
        K = min(size, draws - start)
        seeds = (case.seed,) + tuple(rng.randint(0, MAX_SEED) for _ in range(K - 1))
        scales = (case.scale,) + tuple(rng.choice(DRAWN_SCALES) for _ in range(K - 1))
        out.append(StructureBatch(case, seeds, scales))
    return out


def run_batches(claim: str, batches, quantities, checks, describe, device: str) -> list[CheckResult]:
    """One result per draw and check: ``quantities(stacked params, cfg, template, A, B)`` of each batch's
    structure, every check of ``checks`` evaluated (:func:`mdm_props.claim.evaluate_checks`), each result
    carrying its draw's full description (``details["draw"] = describe(draw)``) for ``verify --replay``."""
    dev = resolve_device(device)
    out = []
    for batch in batches:
        c = batch.case
        values = quantities(batch.params(dev), c.cfg, c.template, c.A, c.B)
        for check in evaluate_checks(claim, checks, values):
            for i in range(batch.size):
                r = check.result(i)
                out.append(dataclasses.replace(r, details={**r.details, "draw": describe(batch.draw(i))}))
    return out
