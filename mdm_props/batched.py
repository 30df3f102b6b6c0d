"""Batched verification: one drawn structure, K parameter draws, checked at once.

A :class:`Batch` is a *structure* (model config, template, tokens A and B, orthonormal or not) and K
parameter draws (a seed and a scale each, and a step size η for the step claims). Draw i of a batch
is the :class:`~mdm_props.strategies.Case` ``batch.case(i)``: the very draw the per-draw path checks
for that seed. Its parameters are built by :func:`~mdm_props.params.init_params` on the CPU (K cheap
calls, stacked on a leading axis) and everything else runs batched: the model and its autograd
gradients under ``torch.func.vmap`` of the per-draw functions (:func:`~mdm_props.model.forward`,
``torch.func.grad`` of the query loss), the forward rounding bounds under ``vmap`` of
:func:`~mdm_props.rounding.forward_error_bounds`. Every storage bound is ONE function over a leading
batch axis K (``mdm_props.rounding.*_batch``, the claims' ``*_batch`` tolerances, with the derivation
in its docstring), and the per-draw bound is a thin wrapper that calls it on a batch of one: a slip in a
bound moves the batched runners (``mdm-props verify``) and the per-draw checkers alike. The numbers
agree up to the order of the floating-point sums of the model evaluations (vmap's kernels).

A claim's batched checker returns a :class:`BatchReport`: per check a :class:`BatchedCheck` with
per-draw arrays (observed, reference, error, tolerance, margin, holds), margins and verdicts
computed as :func:`~mdm_props.checks.identity`, :func:`~mdm_props.checks.inequality` and
:func:`~mdm_props.checks.worst_entry` compute them; :meth:`BatchReport.results` turns any draw back
into the per-draw :class:`~mdm_props.checks.CheckResult` s, and :func:`run_batched` keeps the worst
draw of every check and every failing draw (each carrying ``details["draw"]`` to replay it).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch.func import grad, vmap

from . import rounding
from .checks import CheckResult, identity, identity_with_error, inequality
from .coverage import split_draws
from .facts import Query, Template
from .model import RELATIVE_ENCODINGS, ForwardOutput, ModelConfig, forward, parameter_shapes, unembedding
from .params import require_finite, require_float64, resolve_device
from .search import describe
from .storage import QueryState, require_storage_model, storage_step
from .storage import first_factor as storage_first_factor
from .strategies import ETAS, MAX_SEED, SCALES, Case, sample_case
from .validation import require_int, require_number, require_seed

BATCH_SIZE = 250  # at most this many draws per structure (throughput plateaus near it: docs/performance.md)
MIN_STRUCTURES = 40  # runners spread their draws over at least this many structures when they can


def batch_size_for(draws: int) -> int:
    """Draws per structure for a run of ``draws``: ⌈draws / MIN_STRUCTURES⌉, at most BATCH_SIZE, so that a
    short run (verify's default 50 draws) still sees 25–40 structures and a long one is fast."""
    return max(1, min(BATCH_SIZE, math.ceil(require_int("draws", draws, 1) / MIN_STRUCTURES)))


# ---------------------------------------------------------------------------------------------
# batches of draws


@dataclass(frozen=True)
class Batch:
    """One structure and K parameter draws: draw i is ``case(i)`` (seed ``seeds[i]``, scale ``scales[i]``,
    step ``etas[i]`` when the claim takes one)."""

    cfg: ModelConfig
    template: Template
    A: int
    B: int
    orthonormal: bool
    seeds: tuple[int, ...]
    scales: tuple[float, ...]
    etas: tuple[float, ...] | None = None

    def __post_init__(self):
        if (
            not self.seeds
            or len(self.scales) != len(self.seeds)
            or (self.etas is not None and len(self.etas) != len(self.seeds))
        ):
            raise ValueError(
                f"seeds, scales (and etas) must be nonempty and of one length; got {len(self.seeds)}, "
                f"{len(self.scales)}" + ("" if self.etas is None else f", {len(self.etas)}")
            )

    @property
    def size(self) -> int:
        return len(self.seeds)

    def case(self, i: int) -> Case:
        """Draw i as the per-draw path's :class:`~mdm_props.strategies.Case`."""
        return Case(self.cfg, self.seeds[i], self.scales[i], self.orthonormal, self.template, self.A, self.B)

    def describe(self, i: int) -> dict:
        """Draw i as :func:`mdm_props.search.describe` writes it (with η when the batch has steps)."""
        return describe(self.case(i), **({} if self.etas is None else {"eta": self.etas[i]}))

    def params(self, device="cpu", cfg: ModelConfig | None = None) -> dict:
        """The K parameter dicts of :func:`~mdm_props.params.init_params`, stacked on a leading axis K
        (:func:`init_params_batch`: equal, bit for bit, to K calls of init_params)."""
        return init_params_batch(cfg or self.cfg, self.seeds, self.scales, orthonormal=self.orthonormal, device=device)

    def eta_tensor(self, device="cpu") -> torch.Tensor:
        if self.etas is None:
            raise ValueError("this batch has no step sizes (etas=None)")
        return torch.tensor(self.etas, dtype=torch.float64, device=device)

    @classmethod
    def from_cases(cls, cases: Sequence[Case], etas: Sequence[float] | None = None) -> Batch:
        """A batch of draws that share one structure (cfg, template, A, B, orthonormal)."""
        first = cases[0]
        for c in cases:
            if (c.cfg, c.template, c.A, c.B, c.orthonormal) != (
                first.cfg,
                first.template,
                first.A,
                first.B,
                first.orthonormal,
            ):
                raise ValueError("cases must share cfg, template, A, B and orthonormal to form one batch")
        return cls(
            first.cfg,
            first.template,
            first.A,
            first.B,
            first.orthonormal,
            tuple(c.seed for c in cases),
            tuple(c.scale for c in cases),
            None if etas is None else tuple(float(e) for e in etas),
        )


def batch_from_case(case: Case, size: int, eta: float | None = None) -> Batch:
    """A batch of ``size`` draws of ``case``'s structure: draw 0 is ``case`` itself (with step ``eta``), the
    others take a seed and a scale (and η from ``ETAS`` when ``eta`` is given) from ``random.Random(case.seed)``:
    what a Hypothesis example (structure + seed) checks in one call."""
    require_int("size", size, 1)
    rng = random.Random(case.seed)
    seeds = (case.seed,) + tuple(rng.randint(0, MAX_SEED) for _ in range(size - 1))
    scales = (case.scale,) + tuple(rng.choice(SCALES) for _ in range(size - 1))
    etas = None if eta is None else (float(eta),) + tuple(rng.choice(ETAS) for _ in range(size - 1))
    return Batch(case.cfg, case.template, case.A, case.B, case.orthonormal, seeds, scales, etas)


def assert_batch_holds(report: BatchReport) -> float:
    """Raise AssertionError listing the first failing draw's violated checks (with the draw to replay it) when
    some draw fails; return the batch's smallest margin (for ``hypothesis.target``)."""
    bad = torch.nonzero(report.failing).flatten()
    if len(bad):
        i = int(bad[0])
        failed = [f"{r} draw={r.details['draw']}" for r in report.results(i) if not r.holds and not r.undecided]
        raise AssertionError(f"{len(bad)} of {report.batch.size} draws fail; draw {i}: " + "; ".join(failed))
    return report.worst[1]


def init_params_batch(
    cfg: ModelConfig, seeds: Sequence[int], scales: Sequence[float], *, orthonormal: bool = False, device="cpu"
) -> dict:
    """``init_params(cfg, seeds[i], scale=scales[i], orthonormal=...)`` for every i, stacked (leading axis K).

    The random numbers are drawn per draw exactly as :func:`~mdm_props.params.init_params` draws them (one
    CPU generator per seed, the same ``randn`` calls in the same order); the deterministic transforms
    that follow (the scale and 1/√fan_in) are elementwise, so applying them to the stacked draws gives the
    same bits in one call; the QR of orthonormal embeddings stays per draw (LAPACK's result can depend on
    the alignment of a matrix inside a batch: measured, 1 ulp).
    """
    for s in seeds:
        require_seed("seeds", s)
    if orthonormal and cfg.d_model < cfg.vocab + 1:
        raise ValueError(f"orthonormal embeddings need d_model >= vocab + 1 = {cfg.vocab + 1}; got {cfg.d_model}")
    for c in scales:
        require_number("scales", c, positive=True)
    dev = resolve_device(device)
    shapes = parameter_shapes(cfg)
    raw_shapes = {n: ((sh[1], sh[0]) if n == "E" and orthonormal else sh) for n, sh in shapes.items()}
    raws: dict[str, list[torch.Tensor]] = {n: [] for n in shapes}
    for s in seeds:
        gen = torch.Generator(device="cpu").manual_seed(s)
        for n, sh in raw_shapes.items():
            raws[n].append(torch.randn(sh, generator=gen, dtype=torch.float64))
    K = len(seeds)
    params = {}
    for n, sh in shapes.items():
        t = torch.stack(raws[n])
        scale = torch.tensor(scales, dtype=torch.float64).reshape((K,) + (1,) * len(sh))
        if n == "E" and orthonormal:  # one QR per draw: a batched QR may round differently (memory alignment)
            t = torch.stack([orthonormal_columns(g) for g in raws[n]]).transpose(-1, -2).contiguous()
        elif n in ("E", "U", "P"):
            t = t / math.sqrt(cfg.d_model)
        elif n == "t5_bias":
            t = scale * t
        else:
            t = scale * t / math.sqrt(sh[-1])
        params[n] = t.to(dev)
    return params


def orthonormal_columns(g: torch.Tensor) -> torch.Tensor:
    """Q of the QR of g (d × n) with the signs of diag(R) fixed: :func:`~mdm_props.params.orthonormal_rows`
    before its transpose."""
    q, r = torch.linalg.qr(g)
    return q * torch.sign(torch.diagonal(r))


def stack_params(dicts: Sequence[dict], device="cpu") -> dict:
    """Stack parameter dicts of one shape on a new leading axis and move them to ``device``."""
    dev = resolve_device(device)
    return {k: torch.stack([d[k] for d in dicts]).to(dev) for k in dicts[0]}


def one_draw(params: dict) -> dict:
    """One draw's parameter dict as a batch of one (leading axis K = 1, views): how the per-draw bounds call
    the batched formulas."""
    return {k: v[None] for k, v in params.items()}


def one_value(x: float, like: torch.Tensor) -> torch.Tensor:
    """A number as a batch of one, (1,) float64 on ``like``'s device (a step η, a Gram defect ω, …)."""
    return torch.tensor([float(x)], dtype=torch.float64, device=like.device)


def one_state(s: QueryState) -> QueryState:
    """One draw's :class:`~mdm_props.storage.QueryState` as a batch of one (``tokens`` stays shared, (T,))."""
    per_draw = [f.name for f in dataclasses.fields(s) if f.name not in ("query", "tokens")]
    return dataclasses.replace(s, **{name: getattr(s, name)[None] for name in per_draw})


def unstack_params(params: dict, i: int) -> dict:
    """Draw i's parameter dict out of a stacked one."""
    return {k: v[i] for k, v in params.items()}


def sample_batches(
    draws: int,
    seed: int,
    batch_size: int = BATCH_SIZE,
    *,
    either_orthonormal: bool = False,
    step: bool = False,
    **sample_kwargs,
) -> Iterator[Batch]:
    """``draws`` seeded draws in batches of at most ``batch_size``: each batch draws a structure with
    :func:`~mdm_props.strategies.sample_case` (orthonormal with probability ½ when ``either_orthonormal``),
    then a seed and a scale per draw (and η from ``ETAS`` when ``step``)."""
    require_int("draws", draws, 1)
    require_int("batch_size", batch_size, 1)
    rng = random.Random(require_seed("seed", seed))
    left = draws
    while left:
        extra: dict = {"orthonormal": rng.random() < 0.5} if either_orthonormal else {}
        s = sample_case(rng, **extra, **sample_kwargs)
        k = min(batch_size, left)
        seeds = tuple(rng.randint(0, MAX_SEED) for _ in range(k))
        scales = tuple(rng.choice(SCALES) for _ in range(k))
        etas = tuple(rng.choice(ETAS) for _ in range(k)) if step else None
        yield Batch(s.cfg, s.template, s.A, s.B, s.orthonormal, seeds, scales, etas)
        left -= k


def require_batch_params(params: dict, cfg: ModelConfig, *, tied: bool = True, hypotheses=None) -> None:
    """The storage model (:func:`~mdm_props.storage.require_storage_model`), float64 finite parameters, and
    the claim's hypotheses on every draw (default H-rel, plus H-orth when ``tied``): a batched checker used
    outside them raises a ValueError naming the hypothesis and the first draw that breaks it, never a
    vacuous pass (the per-draw checkers return ``not-applicable`` instead; the batched runners only draw
    inside the hypotheses, so this never fires there)."""
    require_storage_model(cfg, tied=tied)
    require_float64(params)
    require_finite(params)
    require_batch_hypotheses(
        params, cfg, (("H-rel", "H-orth") if tied else ("H-rel",)) if hypotheses is None else hypotheses
    )


def require_batch_hypotheses(params: dict, cfg: ModelConfig, hypotheses) -> None:
    """Raise a ValueError naming the first of ``hypotheses`` (H-rel, H-bi, H-orth) that a draw of the batch
    breaks (H-orth: the Gram defect of each draw's E within :func:`mdm_props.rounding.gram_defect_limit`)."""
    if "H-rel" in hypotheses and not cfg.relative:
        raise ValueError(
            f"H-rel fails: pos={cfg.pos!r} puts positions into the values; the batched checkers "
            "need a relative encoding"
        )
    if "H-bi" in hypotheses and cfg.attention != "bidirectional":
        raise ValueError(f"H-bi fails: attention={cfg.attention!r}; the batched checkers need bidirectional attention")
    if "H-orth" in hypotheses:
        omega, limit = rounding.gram_defect_batch(params["E"]), rounding.gram_defect_limit(cfg.d_model)
        bad = (~(omega <= limit)).nonzero()
        if len(bad):
            i = int(bad[0])
            raise ValueError(
                f"H-orth fails on draw {i}: Gram defect of E ω = {float(omega[i]):.3g} > {limit:.3g} "
                "(= 1e3·d·u, rounding alone)"
            )


# ---------------------------------------------------------------------------------------------
# the model, its gradients and its forward bounds, batched over the leading parameter axis


def batched_forward(params: dict, cfg: ModelConfig, tokens: torch.Tensor) -> ForwardOutput:
    """:func:`~mdm_props.model.forward` of every draw: every field gets a leading axis K."""
    return vmap(lambda p: forward(p, cfg, tokens))(params)


def batched_forward_bounds(params: dict, cfg: ModelConfig, tokens: torch.Tensor, safety: float = 1.0) -> dict:
    """:func:`~mdm_props.rounding.forward_error_bounds` of every draw (leading axis K)."""
    return vmap(lambda p: rounding.forward_error_bounds(p, cfg, tokens, safety=safety))(params)


def query_state(params: dict, cfg: ModelConfig, query: Query, out: ForwardOutput | None = None) -> QueryState:
    """:func:`mdm_props.storage.evaluate` for every draw: a :class:`~mdm_props.storage.QueryState` whose
    tensors carry a leading axis K (``tokens`` stays (T,), shared by the batch)."""
    tokens = query.tensor(params["E"].device)
    if out is None:
        out = batched_forward(params, cfg, tokens)
    b = batched_forward_bounds(params, cfg, tokens)
    i = query.slot
    logits = out.logits[:, i].detach()
    return QueryState(
        query,
        tokens,
        out.inputs.detach(),
        out.attn[:, 0, :, i].detach(),
        out.context[:, 0, :, i].detach(),
        logits,
        torch.log_softmax(logits, dim=-1),
        b["attn"][:, 0, :, i],
        b["context"][:, 0, :, i],
        b["logits"][:, i],
        b["logprobs"][:, i],
    )


def storage_gradients(params: dict, cfg: ModelConfig, query: Query) -> tuple[torch.Tensor, QueryState]:
    """G = ∂(−log p(target))/∂W_OV of layer 0 for every draw, (K, H, d, d), by ``vmap(grad(...))`` of the
    per-draw loss (autograd, as :func:`mdm_props.storage.storage_gradient`), and the batched
    :class:`~mdm_props.storage.QueryState` of the same evaluation."""
    return parameter_gradients(params, cfg, query, "W_OV")


def parameter_gradients(params: dict, cfg: ModelConfig, query: Query, name: str) -> tuple[torch.Tensor, QueryState]:
    """∂(−log p(target))/∂``name`` of layer 0 for every draw (K, …) by ``vmap(grad(...))`` of the per-draw
    loss, and the batched :class:`~mdm_props.storage.QueryState` of the same evaluation."""
    if name not in params:
        raise ValueError(f"name must be one of the parameters {sorted(params)}; got {name!r}")
    tokens = query.tensor(params["E"].device)

    def loss(W, p):
        out = forward({**p, name: W}, cfg, tokens)
        return -torch.log_softmax(out.logits[query.slot], dim=-1)[query.target], out

    G, out = vmap(grad(loss, has_aux=True))(params[name], params)
    return G[:, 0], query_state(params, cfg, query, out)


def unembeddings(params: dict, cfg: ModelConfig) -> torch.Tensor:
    """Every draw's U (K, V, d): :func:`~mdm_props.model.unembedding` under the leading axis."""
    return vmap(lambda p: unembedding(p, cfg))(params)


def storage_steps(params: dict, G: torch.Tensor, eta: torch.Tensor) -> dict:
    """Every draw's W_OV ← W_OV − η_k G_k on layer 0 (G: (K, H, d, d), η: (K,)); see
    :func:`mdm_props.storage.storage_step`."""
    return storage_step(params, G, eta)


# ---------------------------------------------------------------------------------------------
# the storage-path bounds: one formula each, in mdm_props.rounding, over a leading batch axis


def storage_gradient_error_bound(params: dict, cfg: ModelConfig, s: QueryState) -> torch.Tensor:
    """:func:`mdm_props.rounding.storage_gradient_error_batch` (safety 1) for every draw, (K, H, d, d), read off
    the batched query state ``s`` (the per-draw :func:`mdm_props.rounding.storage_gradient_error_bound` calls
    the same function on a batch of one)."""
    return rounding.storage_gradient_error_batch(
        unembeddings(params, cfg), s.logits, s.e_logp, s.context, s.e_context, s.query.target, s.tokens.shape[-1]
    )


def first_factor(p_f: torch.Tensor, p_r: torch.Tensor, target: int) -> torch.Tensor:
    """(p_f − e_A)ᵀ(p_r − e_A) per draw (K,): :func:`mdm_props.storage.first_factor` with y_f = y_r = A."""
    return storage_first_factor(p_f, target, p_r, target)


# ---------------------------------------------------------------------------------------------
# per-draw verdicts and margins, as mdm_props.checks computes them


def _ratio(error: torch.Tensor, tolerance: torch.Tensor) -> torch.Tensor:
    inf = torch.full_like(error, math.inf)
    return torch.where(tolerance > 0, error / tolerance, torch.where(error == 0, torch.zeros_like(error), inf))


@dataclass(frozen=True)
class BatchedCheck:
    """One check over a batch: per-draw arrays (K,) of what a :class:`~mdm_props.checks.CheckResult` holds.
    ``kind`` is "identity", "inequality" or "worst_entry"; ``scale`` the inequality's margin scale;
    ``details`` per-draw extras: a dict of name → (K,) array or a constant."""

    claim: str
    quantity: str
    kind: str
    relation: str
    observed: torch.Tensor
    reference: torch.Tensor
    error: torch.Tensor
    tolerance: torch.Tensor
    margin: torch.Tensor
    holds: torch.Tensor
    scale: torch.Tensor | None = None
    index: torch.Tensor | None = None  # worst_entry: the entry chosen per draw
    details: dict = field(default_factory=dict)
    undecided: torch.Tensor | None = None  # inequality: a strict one within its rounding tolerance (checks.inequality)

    @property
    def failing(self) -> torch.Tensor:
        """Draws that violate this check (neither holds nor undecided), (K,)."""
        return ~self.holds if self.undecided is None else ~self.holds & ~self.undecided

    @property
    def decided_margin(self) -> torch.Tensor:
        """The margin with undecided draws at +inf (never the worst; a non-finite observation stays NaN)."""
        return self.margin if self.undecided is None else torch.where(self.undecided, math.inf, self.margin)

    def result(self, i: int) -> CheckResult:
        """Draw i's :class:`~mdm_props.checks.CheckResult`, built by the per-draw constructor."""
        det = {k: (v[i].item() if isinstance(v, torch.Tensor) else v) for k, v in self.details.items()}
        o, ref, tol = float(self.observed[i]), float(self.reference[i]), float(self.tolerance[i])
        if self.kind == "identity":
            return identity(self.claim, self.quantity, o, ref, tol, **det)
        if self.kind == "inequality":
            assert self.scale is not None
            return inequality(self.claim, self.quantity, o, ref, self.relation, float(self.scale[i]), tol, **det)
        assert self.index is not None
        index = tuple(int(j) for j in self.index[i]) if self.index.dim() > 1 else (int(self.index[i]),)
        return identity_with_error(self.claim, self.quantity, o, ref, float(self.error[i]), tol, index=index, **det)


def identity_check(claim: str, quantity: str, observed, exact, tolerance, **details) -> BatchedCheck:
    """:func:`mdm_props.checks.identity` per draw: error |observed − exact| (inf when not finite), margin
    1 − error/tolerance, holds when error/tolerance ≤ 1."""
    observed, exact, tolerance = (
        torch.as_tensor(t, dtype=torch.float64).detach() for t in (observed, exact, tolerance)
    )
    if not bool((tolerance >= 0).all()):
        raise ValueError(f"tolerance must be >= 0; got {tolerance.min()}")
    error = torch.where(torch.isfinite(observed), (observed - exact).abs(), torch.full_like(observed, math.inf))
    ratio = _ratio(error, tolerance)
    return BatchedCheck(
        claim, quantity, "identity", "==", observed, exact, error, tolerance, 1.0 - ratio, ratio <= 1.0, details=details
    )


def inequality_check(
    claim: str, quantity: str, observed, bound, relation: str, scale, tolerance=0.0, **details
) -> BatchedCheck:
    """:func:`mdm_props.checks.inequality` per draw (same margin: signed distance / scale, 0 when met only
    within the tolerance)."""
    observed = torch.as_tensor(observed, dtype=torch.float64).detach()
    bound, scale, tolerance = (
        torch.broadcast_to(torch.as_tensor(t, dtype=torch.float64, device=observed.device), observed.shape).detach()
        for t in (bound, scale, tolerance)
    )
    if not bool((scale > 0).all()):
        raise ValueError(f"scale must be > 0; got {scale.min()}")
    signed = observed - bound if relation in (">", ">=") else bound - observed
    finite = torch.isfinite(observed)
    strict = relation in (">", "<")
    holds = finite & ((signed > 0) if strict else (signed >= -tolerance))
    # strict and within the rounding tolerance on the wrong side: undecided (margin NaN, as the per-draw result)
    undecided = finite & (tolerance > 0) & (signed <= 0) & (signed >= -tolerance) if strict else None
    violation = torch.where(finite, (-signed).clamp_min(0.0), torch.full_like(signed, math.inf))
    margin = torch.where(holds & (signed < 0), torch.zeros_like(signed), signed / scale)
    if undecided is not None:
        margin = torch.where(undecided, torch.full_like(margin, math.nan), margin)
    return BatchedCheck(
        claim,
        quantity,
        "inequality",
        relation,
        observed,
        bound,
        violation,
        tolerance,
        margin,
        holds,
        scale=scale,
        details=details,
        undecided=undecided,
    )


def worst_entry_check(claim: str, quantity: str, observed, exact, bound, **details) -> BatchedCheck:
    """:func:`mdm_props.checks.worst_entry` (``reference_rounding=False``) per draw over the trailing axes:
    the entry with the largest |observed − exact|/bound."""
    observed, exact, bound = (t.detach().to(torch.float64) for t in (observed, exact, bound))
    K, shape = observed.shape[0], observed.shape[1:]
    same_inf = torch.isinf(observed) & (observed == exact)
    error = torch.where(same_inf, torch.zeros_like(observed), (observed - exact).abs())
    ratio = _ratio(error, bound).nan_to_num(nan=math.inf).reshape(K, -1)
    idx = ratio.argmax(-1)
    pick = lambda t: t.reshape(K, -1).gather(1, idx[:, None])[:, 0]  # noqa: E731
    o, e, err, tol = pick(observed), pick(exact), pick(error), pick(bound)
    r = _ratio(err, tol)
    r = torch.where(torch.isfinite(o), r, torch.full_like(r, math.inf))
    index = torch.stack(torch.unravel_index(idx, tuple(shape)), -1) if len(shape) else idx
    return BatchedCheck(
        claim, quantity, "worst_entry", "==", o, e, err, tol, 1.0 - r, r <= 1.0, index=index, details=details
    )


@dataclass(frozen=True)
class BatchReport:
    """A batched checker's answer: the batch and its checks (in the per-draw checker's order)."""

    batch: Batch
    checks: list[BatchedCheck]

    @property
    def margins(self) -> torch.Tensor:
        """The smallest margin of each draw over its decided checks, (K,) (+inf when none is decided)."""
        return torch.stack([c.decided_margin for c in self.checks]).amin(0)

    @property
    def holds(self) -> torch.Tensor:
        """Whether every check holds, per draw (K,)."""
        return torch.stack([c.holds for c in self.checks]).all(0)

    @property
    def failing(self) -> torch.Tensor:
        """Whether some check is violated (neither holds nor undecided), per draw (K,)."""
        return torch.stack([c.failing for c in self.checks]).any(0)

    @property
    def undecided(self) -> torch.Tensor:
        """Whether some check is undecided, per draw (K,)."""
        flags = [c.undecided for c in self.checks if c.undecided is not None]
        return torch.stack(flags).any(0) if flags else torch.zeros_like(self.holds)

    @property
    def worst(self) -> tuple[int, float]:
        """(draw index, margin) of the batch's smallest margin."""
        m = self.margins
        i = int(torch.argmin(m.nan_to_num(nan=-math.inf)))
        return i, float(m[i])

    def results(self, i: int) -> list[CheckResult]:
        """Draw i's CheckResults (what the per-draw checker returns), each with ``details["draw"]``."""
        draw = self.batch.describe(i)
        out = []
        for c in self.checks:
            r = c.result(i)  # keeps the per-draw status (an undecided strict inequality stays undecided)
            out.append(dataclasses.replace(r, details={**r.details, "draw": draw, "batch_index": i}))
        return out

    def selected(self) -> list[CheckResult]:
        """The results of the worst draw of every check and of every draw that fails a check or is undecided."""
        keep = {int(torch.argmin(c.decided_margin.nan_to_num(nan=-math.inf))) for c in self.checks}
        keep |= {int(i) for i in torch.nonzero(self.failing | self.undecided).flatten()}
        return [r for i in sorted(keep) for r in self.results(i)]


def run_batched(
    check_batch: Callable[..., BatchReport],
    draws: int,
    seed: int,
    device="cpu",
    *,
    batch_size: int | None = None,
    either_orthonormal: bool = False,
    step: bool = False,
    args: str | None = None,
    **sample_kwargs,
) -> list[CheckResult]:
    """``check_batch(batch, device)`` on each of :func:`sample_batches` (``batch_size`` default
    :func:`batch_size_for`); keeps, per batch, the worst draw of every check and every failing draw
    (:meth:`BatchReport.selected`). ``args`` ("module:name") names the per-draw checker's argument builder
    when it is not :func:`~mdm_props.search.case_args`; it is recorded in each draw for
    :func:`~mdm_props.search.replay`."""
    resolve_device(device)
    out: list[CheckResult] = []
    size = batch_size_for(draws) if batch_size is None else batch_size
    for batch in sample_batches(draws, seed, size, either_orthonormal=either_orthonormal, step=step, **sample_kwargs):
        out += check_batch(batch, device).selected()
    if args is not None:  # the per-draw checker's argument builder, for search.replay
        out = [dataclasses.replace(r, details={**r.details, "draw": {**r.details["draw"], "args": args}}) for r in out]
    return out


def run_over_encodings(
    check_batch: Callable[..., BatchReport],
    draws: int,
    seed: int,
    device="cpu",
    *,
    encodings: Sequence[str] = RELATIVE_ENCODINGS,
    **kwargs,
) -> list[CheckResult]:
    """:func:`run_batched` with the ``draws`` split evenly over ``encodings`` (:func:`mdm_props.coverage.split_draws`,
    one sub-seed each), so that even a short run examines every encoding its property tests draw."""
    return [
        r
        for pos, n, s in split_draws(draws, seed, encodings)
        for r in run_batched(check_batch, n, s, device, pos=(pos,), **kwargs)
    ]
