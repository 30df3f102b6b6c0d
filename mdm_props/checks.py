"""Structured results that every claim checker returns, shared by the tests and ``mdm-props verify``.

A :class:`CheckResult` is one comparison: the quantity, what it must equal or respect, the observed
error, the derived tolerance and a *relative* margin (dimensionless; > 0 means the claim holds with
room to spare). A :class:`Counterexample` is the outcome of a negative control's search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

UNIT_ROUNDOFF = 2.0**-53  # u: the rounding of an exact reference to float64 (mdm_props.rounding has the kit)

RELATIONS = ("==", ">", ">=", "<=", "<")
# the outcome of one comparison: ``undecided`` is reserved for checks that cannot tell the two apart at
# the precision used (e.g. a Taylor window below the float64 floor); ``not-applicable`` for a draw
# outside the claim's hypotheses (the checker says which hypothesis failed, in ``reason``)
STATUSES = ("holds", "violated", "not-applicable", "undecided")


@dataclass(frozen=True)
class CheckResult:
    claim: str
    quantity: str
    observed: float
    reference: float  # the exact value it must equal, or the bound it must respect
    relation: str  # observed <relation> reference; "==" means within ``tolerance``
    error: float  # |observed − reference| for "==", the size of the violation (0 when none) otherwise
    tolerance: float  # derived rounding/statistical allowance (0 for a strict mathematical bound)
    margin: float  # relative margin: 1 − error/tolerance for "=="; signed distance to the bound / scale otherwise
    holds: bool
    details: dict = field(default_factory=dict)
    status: str = ""  # one of STATUSES; "" = derived from ``holds`` (holds / violated)
    reason: str = ""  # why, for not-applicable and undecided

    def __post_init__(self):
        status = self.status or ("holds" if self.holds else "violated")
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}; got {status!r}")
        if self.holds != (status == "holds"):
            raise ValueError(f"holds={self.holds} contradicts status={status!r}")
        object.__setattr__(self, "status", status)

    @property
    def applicable(self) -> bool:
        """The draw satisfied the claim's hypotheses (the comparison was made)."""
        return self.status != "not-applicable"

    @property
    def undecided(self) -> bool:
        """The checker could not decide (see :func:`undecided`): neither holds nor violated, not a failure."""
        return self.status == "undecided"

    @property
    def error_ratio(self) -> float:
        """error / tolerance (0 when both vanish); a check holds when this is ≤ 1 (NaN when not applicable)."""
        if not self.applicable:
            return math.nan
        if self.tolerance > 0:
            return self.error / self.tolerance
        return 0.0 if self.error == 0 else math.inf

    def __str__(self) -> str:
        if self.status in ("not-applicable", "undecided"):
            return f"{self.claim} {self.quantity}: {self.status}: {self.reason}"
        status = "holds" if self.holds else "VIOLATED"
        return (
            f"{self.claim} {self.quantity}: observed {self.observed:.6g} {self.relation} {self.reference:.6g} "
            f"(error {self.error:.3g}, tolerance {self.tolerance:.3g}, margin {self.margin:.3g}) {status}"
        )


def not_applicable(claim: str, quantity: str, reason: str, **details) -> CheckResult:
    """The draw lies outside ``claim``'s hypotheses (``reason`` says which failed): no comparison was
    made, so the result neither holds nor is violated; numbers are NaN."""
    if not reason:
        raise ValueError("reason must say which hypothesis does not hold")
    nan = math.nan
    return CheckResult(claim, quantity, nan, nan, "==", nan, nan, nan, False, details, "not-applicable", reason)


def identity(claim: str, quantity: str, observed: float, exact: float, tolerance: float, **details) -> CheckResult:
    """``observed`` must equal ``exact`` within the derived ``tolerance``."""
    observed, exact, tolerance = float(observed), float(exact), float(tolerance)
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0; got {tolerance}")
    error = abs(observed - exact) if math.isfinite(observed) else math.inf
    ratio = error / tolerance if tolerance > 0 else (0.0 if error == 0 else math.inf)
    return CheckResult(claim, quantity, observed, exact, "==", error, tolerance, 1.0 - ratio, ratio <= 1.0, details)


def undecided(claim: str, quantity: str, reason: str, **details) -> CheckResult:
    """A comparison the checker could not decide (``reason`` says why): neither holds nor violated.
    It counts as not holding in ``holds`` but is left out of :func:`summarize`'s verdict and margins."""
    if not reason:
        raise ValueError("reason must say why the check could not be decided")
    nan = math.nan
    return CheckResult(
        claim, quantity, nan, nan, "==", nan, nan, nan, False, {**details, "reason": reason}, "undecided", reason
    )


def inequality(
    claim: str,
    quantity: str,
    observed: float,
    bound: float,
    relation: str,
    scale: float,
    tolerance: float = 0.0,
    **details,
) -> CheckResult:
    """``observed <relation> bound``, allowing a rounding ``tolerance`` on the weak side.

    The relative margin is the signed distance to the bound divided by ``scale`` (a positive
    magnitude of the quantity, e.g. the product of the norms that bound it), so saturated draws
    with tiny absolute values still report a meaningful margin. A weak inequality that is met only
    within its rounding ``tolerance`` (−tolerance ≤ distance < 0: the bound is touched, which
    rounding cannot resolve) reports margin 0, so that margin ≥ 0 exactly when the check holds.
    A *strict* inequality whose observed value is on the wrong side but within its rounding
    ``tolerance`` (−tolerance ≤ distance ≤ 0, tolerance > 0) is :func:`undecided`: the exact value
    may lie on either side (a thorough run met it: C1b's Δε ≈ 1e-18 > 0 at α^f(B) ≈ 1e-15, computed as
    −2.2e-16 against a rounding error bound of 3.2e-14); beyond the tolerance it is violated.
    """
    if relation not in RELATIONS[1:]:
        raise ValueError(f"relation must be one of {RELATIONS[1:]}; got {relation!r}")
    observed, bound, scale, tolerance = float(observed), float(bound), float(scale), float(tolerance)
    if not scale > 0:
        raise ValueError(f"scale must be > 0; got {scale}")
    signed = observed - bound if relation in (">", ">=") else bound - observed  # > 0: on the right side
    strict = relation in (">", "<")
    if strict and math.isfinite(observed) and tolerance > 0 and -tolerance <= signed <= 0:
        reason = (
            f"observed {observed:.6g} {relation} {bound:.6g} is within the rounding tolerance {tolerance:.3g} "
            "on the wrong side: float64 cannot decide the strict inequality"
        )
        return undecided(claim, quantity, reason, observed=observed, bound=bound, tolerance=tolerance, **details)
    if not math.isfinite(observed):
        holds, violation = False, math.inf
    else:
        holds = (signed > 0) if strict else (signed >= -tolerance)
        violation = max(0.0, -signed)
    margin = 0.0 if (holds and signed < 0) else signed / scale
    return CheckResult(claim, quantity, observed, bound, relation, violation, tolerance, margin, holds, details)


def identity_with_error(
    claim: str, quantity: str, observed: float, exact: float, error: float, tolerance: float, **details
) -> CheckResult:
    """Like :func:`identity`, with the error supplied (computed exactly, e.g. in mpmath) rather than
    recomputed from the float64 rounding of ``exact``."""
    ratio = error / tolerance if tolerance > 0 else (0.0 if error == 0 else math.inf)
    if not math.isfinite(observed):
        ratio = math.inf
    return CheckResult(
        claim,
        quantity,
        float(observed),
        float(exact),
        "==",
        float(error),
        float(tolerance),
        1.0 - ratio,
        ratio <= 1.0,
        details,
    )


def worst_entry(
    claim: str,
    quantity: str,
    observed: torch.Tensor,
    exact: torch.Tensor,
    bound: torch.Tensor,
    error: torch.Tensor | None = None,
    *,
    reference_rounding: bool = True,
    **details,
) -> CheckResult:
    """One :class:`CheckResult` for a whole array: the entry with the largest error/tolerance.

    ``error`` defaults to |observed − exact|; then, with ``reference_rounding``, ``u|exact|`` is added to
    the tolerance for the rounding of an exact reference to float64 (C0's oracle comparisons; the
    storage claims compare two float64 computations whose bounds already cover it and pass False).
    Pass the exact error when ``exact`` is a rounded mpmath value. Entries where observed and exact are
    the same infinity (masked scores) have error 0.
    """
    observed, exact, bound = (torch.as_tensor(t).detach().to("cpu", torch.float64) for t in (observed, exact, bound))
    same_inf = torch.isinf(observed) & (observed == exact)
    finite_exact = torch.where(torch.isinf(exact), torch.zeros_like(exact), exact)
    if error is None:
        error = (observed - exact).abs()
        if reference_rounding:
            bound = bound + UNIT_ROUNDOFF * finite_exact.abs()
    error = torch.where(same_inf, torch.zeros_like(observed), error.detach().to("cpu", torch.float64))
    ratio = torch.where(bound > 0, error / bound, torch.where(error > 0, math.inf, 0.0)).nan_to_num(nan=math.inf)
    idx = int(torch.argmax(ratio.flatten()))
    index = tuple(int(v) for v in np.unravel_index(idx, tuple(observed.shape))) if observed.dim() else ()
    o, e = float(observed.flatten()[idx]), float(exact.flatten()[idx])
    return identity_with_error(
        claim, quantity, o, e, float(error.flatten()[idx]), float(bound.flatten()[idx]), index=index, **details
    )


@dataclass(frozen=True)
class Counterexample:
    """Outcome of a negative control: a search for a draw that violates ``claim`` once
    ``dropped`` (a hypothesis) is removed."""

    claim: str
    dropped: str
    found: bool
    searched: int  # draws examined
    example: dict = field(default_factory=dict)  # the violating draw and its numbers, when found
    observed: float = math.nan  # the violating quantity (e.g. a negative inner product)

    def __str__(self) -> str:
        what = (
            f"counterexample found after {self.searched} draws: {self.example}"
            if self.found
            else (f"no counterexample in {self.searched} draws")
        )
        return f"{self.claim} without {self.dropped}: {what}"


def summarize(results: list[CheckResult]) -> dict:
    """Worst relative margin and worst error/tolerance ratio (over the decided, applicable checks), overall
    status (every decided check holds: a not-applicable result does not hold; an undecided one is counted,
    not judged) and the numbers of not-applicable and undecided checks."""
    if not results:
        raise ValueError("results must hold at least one CheckResult")
    decided = [r for r in results if r.applicable and not r.undecided]
    return {
        "draws": len(results),
        "worst_margin": min((r.margin for r in decided), default=math.nan),
        "worst_error_ratio": max((r.error_ratio for r in decided), default=math.nan),
        "holds": all(r.holds for r in results if not r.undecided),
        "not_applicable": sum(not r.applicable for r in results),
        "undecided": sum(r.undecided for r in results),
    }


@dataclass(frozen=True)
class NegativeControl:
    """A registered negative control: ``run(draws, seed, device) -> Counterexample`` searches for a
    violation of ``claim`` with hypothesis ``dropped`` removed (it must find one); ``certify(example,
    max_bits) -> Certificate`` (optional) re-checks the counterexample it records in ball arithmetic
    (:mod:`mdm_props.certified`): ``refuted`` certifies the violation."""

    id: str  # "<claim>~<what changed>", e.g. "C3~absolute"
    claim: str
    dropped: str  # the hypothesis dropped, e.g. "H-rel (absolute positions)"
    description: str
    run: object  # callable (draws: int, seed: int, device: str) -> Counterexample
    default_draws: int = 200
    certify: object = None  # callable (example: dict, max_bits: int) -> certified.Certificate, or None


_LISTENERS: list = []


def add_result_listener(listener) -> None:
    """Call ``listener(results)`` on every list that :func:`assert_holds` checks (the pytest margin
    summary of conftest.py registers one); a listener that is already registered is not added twice."""
    if listener not in _LISTENERS:
        _LISTENERS.append(listener)


def remove_result_listener(listener) -> None:
    if listener in _LISTENERS:
        _LISTENERS.remove(listener)


def assert_holds(results, label: str | None = None) -> dict:
    """Assert that every :class:`CheckResult` of ``results`` holds (the failing ones' ``str`` in the
    message) and, inside a Hypothesis test, steer the search to the worst case with
    ``hypothesis.target(−(smallest margin))`` (``target`` maximises, so the margin is negated).
    Returns :func:`summarize` of the results. ``label`` names the target (default: the claim ids);
    a test that calls this twice per example passes two labels."""
    results = list(results)
    if not results or not all(isinstance(r, CheckResult) for r in results):
        raise ValueError(f"results must be a non-empty list of CheckResult; got {results!r}")
    for listener in list(_LISTENERS):
        listener(results)
    summary = summarize(results)
    worst = summary["worst_margin"]
    from hypothesis.control import currently_in_test_context

    if currently_in_test_context() and math.isfinite(worst):
        from hypothesis import target

        claims = ",".join(sorted({r.claim for r in results}))
        target(-worst, label=label or f"negated smallest relative margin ({claims})")
    failing = [r for r in results if not r.holds and not r.undecided]
    assert not failing, "\n".join(str(r) for r in failing)
    return summary


class ClaimSkipped(Exception):
    """Raised by a runner that cannot run here (e.g. C0.5 without a CUDA device); the message says why."""
