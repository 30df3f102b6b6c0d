"""A claim declared once, evaluated in every arithmetic.

A claim module declares its per-draw claim as a :class:`Spec`:

* its registry row (:class:`mdm_props.registry.Claim`, in the module's ``CLAIMS``);
* ``quantities(xp)``: the observed values, the closed forms and their derived float64 tolerances (with
  their derivations in the docstrings of the functions it calls), written once over a float64 backend
  ``xp`` (:class:`PerDraw`: one draw, the model run per draw; :class:`Batched`: K draws of one structure
  under ``vmap``); every value carries a leading draw axis K (a batch of one per draw);
* ``checks``: its comparisons as data (:class:`Check`: a stable key, the quantity, its reference, the
  relation, the tolerance key, the margin's scale), never told apart by their label text;
* ``certified`` (optional, :class:`Certified`): the exact values in ball arithmetic (the reference model of
  :mod:`mdm_props.certified`, which shares no code with the torch model) and the signs they must have.
  A claim with no certified path declares none.

The backends evaluate that one declaration: :func:`check` (one draw: the registry's checker),
:func:`check_batch` (one structure, K draws: :mod:`mdm_props.batched`), :func:`run` (the seeded runner)
and :func:`mdm_props.certified.certify` (ball arithmetic). A :class:`Draw` (structure, parameters,
template, A, B and the step η when the claim takes one) is what every backend consumes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from . import batched, rounding, storage
from .checks import CheckResult, not_applicable
from .facts import Query, Template
from .model import ModelConfig
from .storage import (
    STORAGE_HYPOTHESES,
    QueryState,
    require_storage_inputs,
    unmet_hypotheses,
)
from .validation import require_int

CHECK_KINDS = ("identity", "inequality", "worst_entry")


# ---------------------------------------------------------------------------------------------
# the draw


@dataclass(frozen=True)
class Draw:
    """One draw of a storage claim: the structure ``cfg``, the parameters, the template, the tokens A
    and B, and the step size ``eta`` when the claim takes one (None otherwise)."""

    params: dict
    cfg: ModelConfig
    template: Template
    A: int
    B: int
    eta: float | None = None

    @classmethod
    def from_case(cls, case, device="cpu", eta: float | None = None) -> Draw:
        """The draw of a :class:`~mdm_props.strategies.Case` (parameters on ``device``)."""
        return cls(case.params(device), case.cfg, case.template, case.A, case.B, eta)

    @property
    def args(self) -> tuple:
        """``(params, cfg, template, A, B)``: the positional arguments of the legacy per-draw checkers."""
        return (self.params, self.cfg, self.template, self.A, self.B)


# ---------------------------------------------------------------------------------------------
# float64 backends: one draw (a batch of one) or K draws of one structure


class PerDraw:
    """The float64 backend on one :class:`Draw`: the model and its autograd gradients per draw
    (:mod:`mdm_props.storage`), every value returned as a batch of one (leading axis K = 1)."""

    def __init__(self, draw: Draw):
        self.draw, self.cfg, self.template, self.A, self.B = draw, draw.cfg, draw.template, draw.A, draw.B
        self.params = batched.one_draw(draw.params)
        E = draw.params["E"]
        self.eta = None if draw.eta is None else batched.one_value(draw.eta, E)

    def gradient(self, query: Query) -> tuple[torch.Tensor, QueryState]:
        """(G (1, H, d, d), state): ∂(−log p(target))/∂W_OV by autograd and the query's state."""
        G, s = storage.storage_gradient(self.draw.params, self.cfg, query)  # looked up at call time
        return G[None], batched.one_state(s)

    def gradient_error(self, query: Query, state: QueryState) -> torch.Tensor:
        """Bound (1, H, d, d) on the autograd gradient's rounding (safety 1)."""
        return rounding.storage_gradient_error_bound(self.draw.params, self.cfg, query, safety=1.0)[None]

    def state(self, query: Query, params: dict | None = None) -> QueryState:
        """The query's state (a batch of one) at the stacked ``params`` (default: the draw's)."""
        p = self.draw.params if params is None else batched.unstack_params(params, 0)
        return batched.one_state(storage.evaluate(p, self.cfg, query))

    def unembeddings(self) -> torch.Tensor:
        return batched.unembeddings(self.params, self.cfg)

    def map(self, fn: Callable, *args):
        """``fn`` on the draw's slice of each (1, …) argument, re-stacked (what ``vmap`` does for a batch)."""
        out = fn(*(batched.unstack_params(a, 0) if isinstance(a, dict) else a[0] for a in args))
        return tuple(o[None] for o in out) if isinstance(out, tuple) else out[None]


class Batched:
    """The float64 backend on a :class:`~mdm_props.batched.Batch`: the same functions under ``vmap``,
    every value with a leading axis K."""

    def __init__(self, batch: batched.Batch, device="cpu", params: dict | None = None):
        self.batch, self.cfg, self.template, self.A, self.B = batch, batch.cfg, batch.template, batch.A, batch.B
        self.params = batch.params(device) if params is None else params
        self.eta = None if batch.etas is None else batch.eta_tensor(device)

    def gradient(self, query: Query) -> tuple[torch.Tensor, QueryState]:
        return batched.storage_gradients(self.params, self.cfg, query)

    def gradient_error(self, query: Query, state: QueryState) -> torch.Tensor:
        return batched.storage_gradient_error_bound(self.params, self.cfg, state)

    def state(self, query: Query, params: dict | None = None) -> QueryState:
        return batched.query_state(self.params if params is None else params, self.cfg, query)

    def unembeddings(self) -> torch.Tensor:
        return batched.unembeddings(self.params, self.cfg)

    def map(self, fn: Callable, *args):
        return torch.func.vmap(fn)(*args)


Backend = PerDraw | Batched


# ---------------------------------------------------------------------------------------------
# checks as data


@dataclass(frozen=True)
class Check:
    """One comparison of a claim, as data. ``key`` is stable (soundness tables, tests and certificates
    name a check by it, never by ``label``); ``observed``, ``reference``, ``tolerance``, ``scale`` name
    entries of the claim's quantities (``reference`` may be a number, e.g. 0); ``details`` maps a
    reported name to a quantity key (or a constant via :func:`const`).

    kinds: ``identity`` (observed = reference within tolerance, per draw a scalar), ``worst_entry``
    (the same over trailing axes, the entry with the largest error/tolerance), ``inequality``
    (observed <relation> reference, the weak side allowing the tolerance, the margin divided by scale)."""

    key: str
    label: str
    kind: str
    observed: str
    reference: str | float
    tolerance: str
    relation: str = "=="
    scale: str | None = None
    details: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self):
        if self.kind not in CHECK_KINDS:
            raise ValueError(f"kind must be one of {CHECK_KINDS}; got {self.kind!r}")
        if (self.kind == "inequality") != (self.relation != "=="):
            raise ValueError(f"{self.key}: an inequality needs a relation other than '==' (and only it)")
        if self.kind == "inequality" and self.scale is None:
            raise ValueError(f"{self.key}: an inequality needs a scale (the margin's denominator)")


@dataclass(frozen=True)
class _Const:
    value: Any


def const(value) -> _Const:
    """A constant detail of a :class:`Check` (e.g. ``("n_heads", const(2))``)."""
    return _Const(value)


def Identity(key: str, label: str, observed: str, exact: str, tolerance: str, details=()) -> Check:
    """``observed == exact`` within ``tolerance`` (per draw a scalar)."""
    return Check(key, label, "identity", observed, exact, tolerance, details=tuple(details))


def WorstEntry(key: str, label: str, observed: str, exact: str, tolerance: str, details=()) -> Check:
    """``observed == exact`` within ``tolerance`` entrywise; reported at the worst entry."""
    return Check(key, label, "worst_entry", observed, exact, tolerance, details=tuple(details))


def Inequality(
    key: str, label: str, observed: str, relation: str, bound, scale: str, tolerance: str, details=()
) -> Check:
    """``observed <relation> bound``, the weak side allowing ``tolerance``, margin = distance / scale."""
    return Check(key, label, "inequality", observed, bound, tolerance, relation, scale, tuple(details))


def _value(values: dict, key, like: torch.Tensor):
    if isinstance(key, _Const):
        return key.value
    if isinstance(key, (int, float)):
        return float(key)
    try:
        return values[key]
    except KeyError:
        raise KeyError(f"the claim's quantities have no entry {key!r}; they have {sorted(values)}") from None


def evaluate_checks(claim_id: str, checks: Sequence[Check], values: dict) -> list[batched.BatchedCheck]:
    """Every :class:`Check` on the quantities ``values`` (each with a leading draw axis K): per-draw
    arrays of verdicts and margins (:class:`~mdm_props.batched.BatchedCheck`)."""
    out = []
    for c in checks:
        obs = values[c.observed]
        ref = _value(values, c.reference, obs)
        tol = values[c.tolerance]
        det = {name: _value(values, k, obs) for name, k in c.details}
        if c.kind == "identity":
            out.append(batched.identity_check(claim_id, c.label, obs, ref, tol, **det))
        elif c.kind == "worst_entry":
            out.append(batched.worst_entry_check(claim_id, c.label, obs, ref, tol, **det))
        else:
            scale = values[c.scale]
            out.append(batched.inequality_check(claim_id, c.label, obs, ref, c.relation, scale, tol, **det))
    return out


# ---------------------------------------------------------------------------------------------
# the declaration


@dataclass(frozen=True)
class Proof:
    """A certified statement: every ball of ``values[quantity]`` (a ball or a list of balls) is
    ``relation`` 0 (``>``, ``>=``, ``<``, ``<=``)."""

    key: str
    quantity: str
    relation: str


@dataclass(frozen=True)
class Certified:
    """A claim's certified path (ball arithmetic, :mod:`mdm_props.certified`).

    ``values(ap, draw)`` returns the exact values as balls (``ap``: the draw's parameters as exact balls,
    :func:`mdm_props.certified.arb_params`), from the exact reference model; the statement is proved when
    every :class:`Proof` holds for every point of its ball, refuted when one certainly fails.
    ``value``: the quantity whose certified lower bound is reported (upper bound when refuted);
    ``details(values, draw)``: what the certificate reports besides. ``soundness(draw, ap)`` (optional):
    {check key: (certified true error)/(derived tolerance)} of the float64 checks, for the soundness table;
    ``sources``: {check key: which tolerance it measures}."""

    statement: str
    values: Callable
    proofs: tuple[Proof, ...]
    value: str
    details: Callable | None = None
    soundness: Callable | None = None
    sources: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Spec:
    """A per-draw storage claim, declared once (see the module docstring).

    ``quantities(xp) -> dict``: everything the checks read, over a float64 backend ``xp``;
    ``checks``: a tuple of :class:`Check`, or a function of the draw's options returning one (C4a's
    depend on its step sizes); ``tied``: the claim needs the tied unembedding (H-orth's U = E[:V]);
    ``step``: the claim takes a step size η per draw; ``sample``: the runners' draw options
    (:func:`mdm_props.search.per_draw_cases`); ``title``: the not-applicable result's quantity."""

    id: str
    title: str
    hypotheses: tuple[str, ...]
    quantities: Callable
    checks: tuple[Check, ...] | Callable
    tied: bool = True
    step: bool = False
    sample: dict = field(default_factory=dict)
    certified: Certified | None = None

    @property
    def storage_hypotheses(self) -> tuple[str, ...]:
        """The hypotheses a draw is tested for before the checks (those of :data:`STORAGE_HYPOTHESES`)."""
        return tuple(h for h in self.hypotheses if h in STORAGE_HYPOTHESES)

    def check_list(self, **options) -> tuple[Check, ...]:
        return self.checks(**options) if callable(self.checks) else self.checks


def comparisons(spec: Spec, draw: Draw, **options) -> list[CheckResult]:
    """The claim's checks on one draw whatever the hypotheses (negative controls read them): the
    quantities on :class:`PerDraw` (a batch of one), each check's per-draw :class:`CheckResult`."""
    require_storage_inputs(draw.params, draw.cfg, tied=spec.tied)
    if spec.step and draw.eta is None:
        raise ValueError(f"{spec.id} takes a step size: draw.eta must be a float > 0; got None")
    values = spec.quantities(PerDraw(draw), **options)
    return [c.result(0) for c in evaluate_checks(spec.id, spec.check_list(**options), values)]


def results_by_key(spec: Spec, draw: Draw, **options) -> dict[str, CheckResult]:
    """{check key: result} of :func:`comparisons` on one draw: how a soundness table or a test names a check."""
    checks = spec.check_list(**options)
    return {c.key: r for c, r in zip(checks, comparisons(spec, draw, **options), strict=True)}


def check(spec: Spec, draw: Draw, **options) -> list[CheckResult]:
    """The claim on one draw: :func:`comparisons`, or one not-applicable result naming the hypotheses
    the draw breaks (outside them a tolerance would absorb the defect and pass vacuously)."""
    require_storage_inputs(draw.params, draw.cfg, tied=spec.tied)
    unmet = unmet_hypotheses(draw.params, draw.cfg, spec.storage_hypotheses)
    if unmet:
        extra = {} if draw.eta is None else {"eta": draw.eta}
        return [not_applicable(spec.id, spec.title, "; ".join(unmet), **extra)]
    return comparisons(spec, draw, **options)


def check_batch(spec: Spec, batch: batched.Batch, device="cpu", **options) -> batched.BatchReport:
    """The claim on every draw of ``batch`` at once (the same checks and bounds, per draw)."""
    xp = Batched(batch, device)
    batched.require_batch_params(xp.params, batch.cfg, tied=spec.tied, hypotheses=spec.storage_hypotheses)
    values = spec.quantities(xp, **options)
    return batched.BatchReport(batch, evaluate_checks(spec.id, spec.check_list(**options), values))


def run(spec: Spec, draws: int, seed: int, device="cpu", **kwargs) -> list[CheckResult]:
    """The seeded runner: ``draws`` draws split over the relative encodings, checked in batches that share a
    structure (:func:`mdm_props.batched.run_over_encodings`)."""
    require_int("draws", draws, 1)
    return batched.run_over_encodings(
        lambda b, d: check_batch(spec, b, d), draws, seed, device, step=spec.step, **spec.sample, **kwargs
    )


def per_draw_cases(spec: Spec, draws: int, seed: int) -> list:
    """[(case, η or None)]: the draws the claim's per-draw runner makes for ``seed``."""
    from .search import per_draw_cases as cases

    items = cases(draws, seed, step=spec.step, **spec.sample)
    return [item if spec.step else (item, None) for item in items]


def run_per_draw(spec: Spec, draws: int, seed: int, device="cpu") -> list[CheckResult]:
    """The claim on each of :func:`per_draw_cases`, one :func:`check` each (the reference the batched path
    agrees with); every result carries its draw (``details["draw"]``)."""
    from .params import resolve_device
    from .search import describe

    resolve_device(device)
    out = []
    for case, eta in per_draw_cases(spec, draws, seed):
        draw = describe(case, **({} if eta is None else {"eta": eta}))
        results = check(spec, Draw.from_case(case, device, eta))
        out += [dataclasses.replace(r, details={**r.details, "draw": draw}) for r in results]
    return out
