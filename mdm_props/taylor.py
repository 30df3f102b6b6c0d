"""The one Taylor / asymptotic-fit engine: the Taylor test (pyadjoint's ``taylor_test(J, m, h)``, JAX's
``check_grads``) and the fitted-series test of a remainder of a stated order, shared by every claim that
checks an expansion (C4b's Taylor check, C6's small-branch limit, C8's per-layer Taylor check).

Two entries, one set of bands (:func:`taylor_order_band`, :func:`observed_order`, TAYLOR_WINDOW,
TAYLOR_SAFETY):

* :func:`taylor_test` — a remainder R(η) = O(η²) with computed Taylor coefficients and an optional exact
  evaluation (below).
* :func:`fit_series` and :func:`series_checks` — a remainder R(ε) = O(ε^order) with no computed
  coefficients: the series R(ε)/ε^order = c₁ + c₂ε + c₃ε² is fitted through three points of a geometric
  scan (:func:`series_coefficients`, Richardson) at the first start where it settles, then the observed
  order is read further down, within the band the fit gives (:func:`series_band`); a fit that does not
  settle only because of the float64 floor is ``undecided`` (:func:`window_result`).

A claim "J(m + ηh) = J(m) + η dJ·h + O(η²)" is checked on the remainder
``R(η) = J(m + ηh) − J(m) − η dJ·h`` over ``η = 2^−k``: the observed order ``log2(R(η)/R(η/2))`` is 2
and ``R(η)/η² → c₂ = ½ hᵀ∇²J h`` (the leading coefficient). The caller supplies ``R`` as a function
``η ↦ (R̂(η), floor(η))`` (the computed remainder and a bound on its rounding), ``c₂`` and the next
computed Taylor coefficients ``(c₃, c₄, c₅)``; optionally an exact evaluation ``η ↦ (R(η), floor)``
(e.g. the mpmath oracle at ≥ 50 digits) for draws whose asymptotic regime float64 cannot resolve.

**Window logic** (:func:`taylor_test`). Each η carries a relative band ``x(η)``
(:func:`taylor_relative_band`: the next Taylor terms, a tail bound from the curvature scale ρ̂ of
:func:`taylor_radius`, and the rounding floor ``floor/η²``), all estimated from the draw.

1. *float64.* Evaluate from the a-priori top (η ≤ ρ̂/4 and the Taylor part of x ≤ TAYLOR_WINDOW) down
   to the rounding floor (``floor/η² > TAYLOR_WINDOW·|c₂|``: stop). The window moves down in η until
   the data settle: the *settled window* is the longest run of consecutive step sizes that ends at
   the bottom (the smallest η float64 resolves) on which every ``R(η)/η²`` is within ``x(η)|c₂|`` of
   c₂ and every observed order within :func:`taylor_order_band` of 2. With ≥ TAYLOR_MIN_WINDOW
   step sizes it ``holds``. Points above it that miss their band are pre-asymptotic (the higher
   Taylor terms, which ρ̂ underestimated, still matter there) and are reported, not judged.
2. *first-order signature* (:func:`first_order_signature`). ``violated`` needs positive evidence at
   the bottom of the resolved range: on the last TAYLOR_MIN_WINDOW step sizes the deviation
   ``D(η) = R(η)/η² − c₂`` exceeds its band ten times over (``x(η)|c₂| ≤ TAYLOR_WINDOW·|D(η)|``) and
   doubles at each halving (``log2(D(η/2)/D(η))`` within :func:`taylor_order_band` of 1): a term
   ``δη`` in R, i.e. a wrong derivative. A true remainder has none: a Taylor term ``c_kη^k`` (k ≥ 3)
   makes D shrink (log2 ratio ≤ −1); a pre-asymptotic, saturating remainder (``R ≈ c₂ρη`` for
   ``η ≫ ρ``, as log-sum-exp does) keeps D ≈ −c₂ (log2 ratio ≈ 0 or below).
3. *exact.* If float64 neither settles nor shows the signature, the descent continues below the
   float64 floor with the exact evaluation, one step size at a time; the first run of
   TAYLOR_MIN_WINDOW consecutive exact step sizes that settles decides ``holds``, the signature
   decides ``violated``. Any run below the float64 window has at least float64's power against a
   first-order term δη: such a term makes D = δ/η larger the smaller η is.
4. Otherwise ``undecided`` (never ``violated``), with the reason and the window tried.

**Work.** The float64 stage evaluates at most ``len(TAYLOR_EXPONENTS)`` = 61 step sizes. The exact stage
evaluates at most TAYLOR_EXACT_BUDGET of them (:func:`taylor_test`'s ``exact_budget``); when the budget
is spent before it decides, the test is ``undecided`` and the reason names the budget and the step
sizes evaluated. The result records, per stage, the step sizes evaluated and the wall time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from .checks import CheckResult, identity, inequality, undecided
from .rounding import STORAGE_SAFETY, gamma

TAYLOR_WINDOW = 0.1  # the asymptotic window: neglected terms + floor ≤ 10% of the leading term
TAYLOR_RADIUS_FRACTION = 0.25  # the a-priori top: η ≤ ρ̂/4, ρ̂ the curvature scale of the computed coefficients
TAYLOR_MIN_WINDOW = 3  # step sizes in a settled window: three ratios and two observed orders
TAYLOR_EXPONENTS = range(0, 61)  # float64 stage: η = 2^−k
TAYLOR_EXACT_EXPONENTS = range(0, 121)  # exact stage: η down to 2^−120 (exact steps need ≤ 53 + 120 + 64 bits)
TAYLOR_SAFETY = STORAGE_SAFETY  # 2, once, on the Taylor terms and on every composed rounding floor
# exact evaluations per Taylor test: the exact stage's whole window spans 18–24 step sizes on the C4b case
# space (derivation and measurement: taylor_test's docstring); one evaluation costs ≤ 0.6 s there
TAYLOR_EXACT_BUDGET = 32

STATUSES = ("holds", "violated", "undecided")

Remainder = Callable[[float], tuple[float, float]]  # η ↦ (R(η), a bound on its error)


# ---------------------------------------------------------------------------------------------
# bounds


def taylor_floor(
    e_L0: float, e_L1: float, L0: float, L1: float, eta: float, ip: float, g_r: list, g: list, theta: list
) -> float:
    """The float64 floor of the Taylor remainder R̂(η) = fl(L̂(θ̂') − L̂(θ) + η⟨ĝ_r, g⟩), θ̂' = fl(θ − fl(ηg)),
    × TAYLOR_SAFETY: the two loss evaluations (forward bounds e_L0, e_L1); θ̂' differs from θ − ηg by
    γ_2(|θ| + 2η|g|) entrywise, which moves L by ≤ Σ|g_r| γ_2(|θ| + 2η|g|) (first order); the dot
    product ⟨ĝ_r, g⟩ of N entries γ_N Σ|g_r||g| (times η); the two additions γ_3(|L0| + |L1| + η|ip|).

    The linear term uses the computed gradient as given: an error in it is what a Taylor test detects
    (a remainder of order 1), so it is not part of the floor."""
    N = sum(t.numel() for t in g)
    s_theta = sum(
        float((a.abs() * (th.abs() + 2 * eta * b.abs())).sum()) for a, b, th in zip(g_r, g, theta, strict=False)
    )
    s_dot = sum(float((a.abs() * b.abs()).sum()) for a, b in zip(g_r, g, strict=False))
    floor = e_L0 + e_L1 + gamma(2) * s_theta + gamma(3) * (abs(L0) + abs(L1) + eta * abs(ip)) + eta * gamma(N) * s_dot
    return TAYLOR_SAFETY * floor


def gradient_resolution(g_r: list, g: list) -> float:
    """TAYLOR_SAFETY γ_N Σ|g_r||g|, N entries: the rounding of the float64 slope ⟨ĝ_r, g⟩ as one dot
    product. In an exact evaluation R(η) = L(θ − ηg) − L(θ) + η⟨ĝ_r, g⟩ (L exact, the slope from the
    float64 gradient as given) this is the part of a first-order term δη that float64 rounding alone
    can put there: the exact stage's floor carries η times it, so its window ends where
    ``gradient_resolution/η`` reaches TAYLOR_WINDOW|c₂| (the float64 gradient cannot say more below).
    Stated assumption: autograd's own rounding of ĝ_r moves ⟨ĝ_r, g⟩ by no more than this; a violation
    in the exact stage needs a first-order term ten times the band (:func:`first_order_signature`),
    i.e. ≥ 10× this."""
    N = sum(t.numel() for t in g)
    return TAYLOR_SAFETY * gamma(N) * sum(float((a.abs() * b.abs()).sum()) for a, b in zip(g_r, g, strict=False))


def taylor_radius(A2: float, taylor: tuple[float, ...]) -> float:
    """ρ̂ = min_k (|c₂|/|c_k|)^{1/(k−2)} over the computed coefficients c_k = φ^(k)(0)/k! (``taylor`` =
    (c₃, c₄, …), c₂ = A2): the radius at which the computed terms reach the leading one (root test,
    from the terms at hand); inf when every c_k is 0. An *estimate* of the curvature scale: the
    coefficients not computed can make the true radius smaller (issue 15: c₃…c₅ gave ρ̂ = 1.21, c₆…c₉
    give root-test values 0.60, 0.40, 0.32, 0.27), which is why :func:`taylor_test` only starts its
    search at ρ̂/4 and lets the data decide where the asymptotic regime begins."""
    rho = math.inf
    for k, c in enumerate(taylor, start=3):
        if c != 0:
            rho = min(rho, (abs(A2) / abs(c)) ** (1.0 / (k - 2)))
    return rho


def taylor_part(A2: float, taylor: tuple[float, ...], eta: float) -> float:
    """The Taylor part of :func:`taylor_relative_band` (no floor): TAYLOR_SAFETY (Σ_k |c_k| η^{k−2} +
    tail)/|A2|; inf at or beyond ρ̂."""
    rho = taylor_radius(A2, taylor)
    if not eta < rho:
        return math.inf
    kept = sum(abs(c) * eta ** (k + 1) for k, c in enumerate(taylor))
    q = eta / rho
    tail = abs(A2) * q ** (len(taylor) + 1) / (1 - q)
    return TAYLOR_SAFETY * (kept + tail) / abs(A2)


def taylor_relative_band(A2: float, taylor: tuple[float, ...], floor: float, eta: float) -> float:
    """x(η) with |R(η)/η² − A2| ≤ x(η)|A2|, A2 = φ''(0)/2, for η < ρ̂ (:func:`taylor_radius`).

    R(η)/η² = A2 + Σ_{k≥3} c_k η^{k−2}, c_k = φ^(k)(0)/k!; the computed terms (``taylor`` = (c₃, c₄, c₅),
    nested autograd along the line) are kept with their absolute values, and the rest is bounded
    under the assumption that the coefficients not computed grow no faster than the computed ones
    suggest, |c_k| ≤ |A2| ρ̂^{−(k−2)} (k ≥ 6): Σ_{k≥6} ≤ |A2| (η/ρ̂)⁴/(1 − η/ρ̂). TAYLOR_SAFETY = 2
    multiplies both; the rounding floor adds floor/η².

    The assumption can fail (issue 15; :func:`taylor_radius`): the band is then too narrow at the
    larger η, which the earlier checker took for a violation. It is not widened; instead
    :func:`taylor_test` no longer trusts it a priori: a step size counts only inside a settled
    window that reaches the smallest resolved η, where every Taylor term, computed or not, is
    smallest."""
    return taylor_part(A2, taylor, eta) + floor / (eta**2 * abs(A2))


def taylor_order_band(x1: float, x2: float) -> float:
    """|log2(R(η)/R(η/2)) − 2| ≤ log2((1 + x)/(1 − x)), x = max(x(η), x(η/2)) < 1: the ratio of
    R(η)/η² ∈ A2(1 ± x(η)) and R(η/2)/(η/2)² ∈ A2(1 ± x(η/2)). The same holds for any quantity known
    to a relative x at η and η/2 (:func:`first_order_signature` uses it for D(η))."""
    x = max(x1, x2)
    if not 0 <= x < 1:
        raise ValueError(f"the relative band must lie in [0, 1); got {x}")
    return math.log2((1 + x) / (1 - x))


def observed_order(R1: float, R2: float) -> float:
    """log2(R(η)/R(η/2)); nan when the two remainders differ in sign or one is 0."""
    return math.log2(R1 / R2) if R2 != 0 and R1 / R2 > 0 else math.nan


# ---------------------------------------------------------------------------------------------
# the test


@dataclass(frozen=True)
class TaylorPoint:
    """One step size η = 2^−k: the remainder, its floor, its band x(η) and how it was evaluated."""

    k: int
    eta: float
    remainder: float
    floor: float
    band: float  # x(η), relative to |c₂|
    precision: str  # "float64" or "exact"

    @property
    def ratio(self) -> float:
        """R(η)/η²."""
        return self.remainder / self.eta**2


@dataclass(frozen=True)
class TaylorResult:
    """The outcome of :func:`taylor_test`.

    ``window``: the step sizes judged (the settled window for ``holds``, the bottom run that shows a
    first-order term for ``violated``, the last run tried for ``undecided``); ``orders``: (k, observed
    order, band) on it; ``points``: every step size evaluated, in both stages."""

    status: str
    leading: float
    coefficients: tuple
    radius: float
    window: tuple = ()
    orders: tuple = ()
    points: tuple = ()
    precision: str = "float64"  # where the decision was taken
    exact_needed: bool = False
    reason: str = ""
    seconds: tuple = (0.0, 0.0)  # wall time of the float64 and the exact stage
    calls: tuple = (0, 0)  # step sizes evaluated by the float64 and the exact stage (points: those kept)

    def evaluations(self) -> dict[str, int]:
        """Step sizes evaluated per stage, including those above a floor (not in ``points``)."""
        return {"float64": self.calls[0], "exact": self.calls[1]}

    def ratios(self) -> list[tuple[int, float, float]]:
        """(k, R(η)/η², band |c₂| x(η)) on the window."""
        return [(p.k, p.ratio, p.band * abs(self.leading)) for p in self.window]


def _ratio_ok(p: TaylorPoint, A2: float) -> bool:
    return p.band < 1 and abs(p.ratio - A2) <= p.band * abs(A2)


def _order(p: TaylorPoint, q: TaylorPoint) -> tuple[int, float, float]:
    """(k, observed order, its band) for consecutive step sizes p (η) and q (η/2)."""
    band = taylor_order_band(p.band, q.band) if max(p.band, q.band) < 1 else math.inf
    return p.k, observed_order(p.remainder, q.remainder), band


def _order_ok(p: TaylorPoint, q: TaylorPoint) -> bool:
    _, order, band = _order(p, q)
    return math.isfinite(order) and abs(order - 2) <= band


def _consecutive(points) -> bool:
    return all(q.k == p.k + 1 for p, q in zip(points, points[1:], strict=False))


def settled(points: list[TaylorPoint], A2: float) -> bool:
    """Every R(η)/η² within x(η)|c₂| of c₂ and every observed order within its band of 2, on
    consecutive step sizes."""
    return (
        _consecutive(points)
        and all(_ratio_ok(p, A2) for p in points)
        and all(_order_ok(p, q) for p, q in zip(points, points[1:], strict=False))
    )


def settled_suffix(points: list[TaylorPoint], A2: float) -> list[TaylorPoint]:
    """The longest settled run of ``points`` that ends at the last (smallest η) one."""
    j = len(points)
    while j > 0 and settled(points[j - 1 :], A2):
        j -= 1
    return points[j:]


def first_order_signature(points: list[TaylorPoint], A2: float) -> bool:
    """A first-order term δη in R resolved on consecutive step sizes: D(η) = R(η)/η² − c₂ exceeds its
    band ten times over, y(η) = x(η)|c₂|/|D(η)| ≤ TAYLOR_WINDOW, keeps its sign, and doubles at each
    halving, |log2(D(η/2)/D(η)) − 1| ≤ :func:`taylor_order_band`(y(η), y(η/2))."""
    if len(points) < 2 or not _consecutive(points):
        return False
    D = [p.ratio - A2 for p in points]
    if any(d == 0 or not math.isfinite(d) for d in D):
        return False
    y = [p.band * abs(A2) / abs(d) for p, d in zip(points, D, strict=False)]
    if any(not v <= TAYLOR_WINDOW for v in y):
        return False
    return all(
        d2 / d1 > 0 and abs(math.log2(d2 / d1) - 1) <= taylor_order_band(y1, y2)
        for d1, d2, y1, y2 in zip(D, D[1:], y, y[1:], strict=False)
    )


def _verdict(
    status, A2, coefficients, rho, window, points, precision, exact_needed, reason, seconds=(0.0, 0.0), calls=(0, 0)
):
    orders = tuple(_order(p, q) for p, q in zip(window, window[1:], strict=False))
    return TaylorResult(
        status,
        A2,
        tuple(coefficients),
        rho,
        tuple(window),
        orders,
        tuple(points),
        precision,
        exact_needed,
        reason,
        tuple(seconds),
        tuple(calls),
    )


def taylor_test(
    remainder: Remainder,
    leading: float,
    coefficients: tuple[float, ...],
    *,
    exact: Remainder | None = None,
    exact_budget: int = TAYLOR_EXACT_BUDGET,
) -> TaylorResult:
    """The Taylor test of a remainder R(η) = O(η²) with R(η)/η² → ``leading`` (c₂).

    ``remainder(η) -> (R̂, floor)``: the float64 remainder and a bound on its rounding (e.g.
    :func:`taylor_floor`); ``coefficients``: the computed (c₃, c₄, c₅); ``exact(η) -> (R, floor)``:
    an evaluation whose floor lies far below float64's (the mpmath oracle), used only when float64
    cannot decide, at most ``exact_budget`` times. The window logic is in the module docstring.
    ``leading = 0`` (no quadratic term to compare) is ``undecided``.

    Why TAYLOR_EXACT_BUDGET = 32. The exact stage starts below η₆₄, where float64's floor/η² reached
    TAYLOR_WINDOW|c₂|; its own floor is dominated by ηG (G = :func:`gradient_resolution`), so its window
    closes near η_G = G/(TAYLOR_WINDOW|c₂|): it can evaluate about log2(η₆₄/η_G) step sizes before its
    floor stops it, however the draw behaves. η₆₄ ∝ √(floor₆₄/|c₂|) and η_G ∝ N u Σ|g_r||g|/|c₂| (N
    parameters), so the span grows only logarithmically in the draw's sizes. Measured (C4b, 30 seeded
    draws of the property test's case space, every encoding): the span is 18–24 step sizes, and a draw
    forced into the exact stage settles on its first 3 (20 of 20 draws). The budget covers the whole
    span with room to spare; a draw that would need more is ``undecided`` with the budget named, and
    the stage costs ≤ 32 evaluations (≈ 0.1–0.6 s each on this case space: the oracle at 50 and 100
    digits), about 7 s for the slowest of the 30 draws run to their floor."""
    if isinstance(exact_budget, bool) or not isinstance(exact_budget, int) or exact_budget < 1:
        raise ValueError(f"exact_budget must be an integer >= 1; got {exact_budget!r}")
    t0 = time.perf_counter()
    A2 = float(leading)
    rho = taylor_radius(A2, coefficients) if A2 != 0 else 0.0
    if A2 == 0 or not math.isfinite(A2):
        return _verdict(
            "undecided",
            A2,
            coefficients,
            rho,
            [],
            [],
            "float64",
            False,
            f"the leading coefficient c₂ = {A2}: no quadratic term to compare",
        )
    points: list[TaylorPoint] = []

    def verdict(status, window, stage, reason, seconds, calls):
        """The result in ``stage`` ("float64" or "exact": the exact evaluation was needed) on ``window``."""
        return _verdict(status, A2, coefficients, rho, window, points, stage, stage == "exact", reason, seconds, calls)

    k_stop, last_part, n64 = None, None, 0
    for k in TAYLOR_EXPONENTS:
        eta = 2.0**-k
        if eta > TAYLOR_RADIUS_FRACTION * rho or taylor_part(A2, coefficients, eta) > TAYLOR_WINDOW:
            continue  # above the a-priori top
        R, floor = remainder(eta)
        n64 += 1
        part = floor / (eta**2 * abs(A2))
        rising = last_part is not None and part >= last_part
        last_part = part
        if part > TAYLOR_WINDOW:
            if rising:
                k_stop = k  # the float64 floor: below here floor/η² only grows
                break
            continue  # a floor ∝ |R| that a large pre-asymptotic R inflates falls as η does: go on
        points.append(
            TaylorPoint(k, eta, float(R), float(floor), taylor_relative_band(A2, coefficients, floor, eta), "float64")
        )
    window = [p for p in points if p.band <= TAYLOR_WINDOW]
    run = settled_suffix(window, A2)
    seconds = (time.perf_counter() - t0, 0.0)
    if len(run) >= TAYLOR_MIN_WINDOW:
        return verdict("holds", run, "float64", "settled in float64", seconds, (n64, 0))
    bottom = window[-TAYLOR_MIN_WINDOW:]
    if len(bottom) == TAYLOR_MIN_WINDOW and first_order_signature(bottom, A2):
        return verdict(
            "violated",
            bottom,
            "float64",
            "a first-order term at the smallest step sizes float64 resolves",
            seconds,
            (n64, 0),
        )
    k_first = points[-1].k + 1 if points else (k_stop if k_stop is not None else TAYLOR_EXPONENTS.stop)
    floor64 = (
        f"float64 settles on {len(run)} step size(s) at the bottom of its window "
        f"k = {[p.k for p in window]} (needs {TAYLOR_MIN_WINDOW})"
    )
    if exact is None:
        return verdict("undecided", bottom, "float64", floor64 + "; no exact evaluation given", seconds, (n64, 0))
    tried: list[TaylorPoint] = []
    last_part, spent, t1 = None, 0, time.perf_counter()
    capped: int | None = None
    for k in TAYLOR_EXACT_EXPONENTS:
        eta = 2.0**-k
        if k < k_first or eta > TAYLOR_RADIUS_FRACTION * rho or taylor_part(A2, coefficients, eta) > TAYLOR_WINDOW:
            continue
        if spent == exact_budget:
            capped = k  # the first step size the budget left out
            break
        spent += 1
        R, floor = exact(eta)
        band = taylor_relative_band(A2, coefficients, floor, eta)
        part = floor / (eta**2 * abs(A2))
        rising = last_part is not None and part >= last_part
        last_part = part
        if part > TAYLOR_WINDOW:
            if rising:
                break  # the exact floor (for C4b: the float64 gradient's own resolution)
            continue
        p = TaylorPoint(k, eta, float(R), float(floor), band, "exact")
        points.append(p)
        if band <= TAYLOR_WINDOW:
            tried.append(p)
        last = tried[-TAYLOR_MIN_WINDOW:]
        seconds = (seconds[0], time.perf_counter() - t1)
        if len(last) == TAYLOR_MIN_WINDOW and settled(last, A2):
            return verdict("holds", last, "exact", floor64 + "; settled in the exact evaluation", seconds, (n64, spent))
        if len(last) == TAYLOR_MIN_WINDOW and first_order_signature(last, A2):
            return verdict(
                "violated",
                last,
                "exact",
                floor64 + "; the exact evaluation shows a first-order term",
                seconds,
                (n64, spent),
            )
    evaluated = [p.k for p in points if p.precision == "exact"]
    stop = (
        f"its budget of {exact_budget} evaluations (TAYLOR_EXACT_BUDGET) was spent before k = {capped}; "
        f"k = {evaluated} within its floor"
        if capped is not None
        else "down to its floor"
    )
    return verdict(
        "undecided",
        tried[-TAYLOR_MIN_WINDOW:] or bottom,
        "exact",
        floor64 + f"; the exact evaluation did not settle either on k = {[p.k for p in tried]} ({stop})",
        (seconds[0], time.perf_counter() - t1),
        (n64, spent),
    )


def check_results(claim: str, result: TaylorResult, leading_name: str, **extra) -> list[CheckResult]:
    """A :class:`TaylorResult` as CheckResults: for a decided test, the worst observed order
    (``log2(R(η)/R(η/2)) = 2``) and the worst ratio (``R(η)/η² = <leading_name>``) on the window,
    each against its band; for an undecided one, one ``undecided`` result with the reason. Details:
    the status, stage, windows, coefficients, ``evaluations`` and ``stage_seconds`` per stage, and
    ``extra``."""
    info = {
        "status": result.status,
        "precision": result.precision,
        "exact_needed": result.exact_needed,
        "window": [p.k for p in result.window],
        "A2": result.leading,
        "taylor": result.coefficients,
        "radius": result.radius,
        "tried": [p.k for p in result.points],
        "above_window": [p.k for p in result.points if p.k < (result.window[0].k if result.window else 0)],
        "evaluations": result.evaluations(),
        "stage_seconds": {"float64": result.seconds[0], "exact": result.seconds[1]},
        **extra,
    }
    if result.status == "undecided":
        return [undecided(claim, f"Taylor test: R(η)/η² → {leading_name} at order 2", result.reason, **info)]
    info["reason"] = result.reason
    out = []
    if result.orders:
        worst = max(result.orders, key=lambda o: abs(o[1] - 2) / o[2] if math.isfinite(o[1]) else math.inf)
        out.append(
            identity(
                claim,
                "observed order log2(R(η)/R(η/2)) = 2",
                worst[1],
                2.0,
                worst[2],
                k=worst[0],
                orders=[round(o[1], 6) for o in result.orders],
                **info,
            )
        )
    worst = max(result.ratios(), key=lambda r: abs(r[1] - result.leading) / r[2] if r[2] > 0 else math.inf)
    out.append(identity(claim, f"R(η)/η² = {leading_name}", worst[1], result.leading, worst[2], k=worst[0], **info))
    return out


# ---------------------------------------------------------------------------------------------
# the fitted-series test: a remainder of a stated order over a geometric scan, fitted where it settles


@dataclass(frozen=True)
class SeriesFit:
    """The series r(ε) = R(ε)/ε^order = c₁ + c₂ε + c₃ε² fitted through ε = 2^−k₀, 2^−(k₀+1), 2^−(k₀+2)
    (:func:`fit_series`): ``coefficients`` (c₁, c₂, c₃) and the fitted correction x₀ at ε = 2^−k₀
    (:func:`series_band` without floor)."""

    order: int
    k0: int
    coefficients: tuple[float, float, float]
    x0: float

    @property
    def eps(self) -> list[float]:
        """The three fit points 2^−k₀, 2^−(k₀+1), 2^−(k₀+2)."""
        return [2.0**-k for k in (self.k0, self.k0 + 1, self.k0 + 2)]


def series_coefficients(eps: list[float], R: list[float], order: int = 1) -> tuple[float, float, float]:
    """(c₁, c₂, c₃) of r(ε) = R(ε)/ε^order = c₁ + c₂ε + c₃ε² through the three points given (exact
    quadratic interpolation in ε: Richardson extrapolation of r to ε = 0)."""
    if len(eps) != 3 or len(R) != 3:
        raise ValueError(f"eps and R must hold 3 values each; got {len(eps)} and {len(R)}")
    import numpy as np

    e = np.asarray(eps, dtype=float)
    coef = np.linalg.solve(np.vander(e, 3, increasing=True), np.asarray(R, dtype=float) / e**order)
    return float(coef[0]), float(coef[1]), float(coef[2])


def series_band(c: tuple[float, float, float], floor: float, eps: float, order: int = 1) -> float:
    """x(ε) with |R(ε)/ε^order − c₁| ≤ x(ε)|c₁|, R computed in float64 with error ≤ ``floor``.

    Assumption (stated): on ε ≤ 2^−k₀ the series r(ε) = c₁ + c₂ε + c₃ε² + … is dominated by the terms
    fitted at ε = 2^−k₀ … 2^−(k₀+2) (:func:`fit_series`); the terms not fitted are covered by
    TAYLOR_SAFETY = 2 on the fitted ones: x = (2(|c₂|ε + |c₃|ε²) + floor/ε^order)/|c₁|."""
    c1, c2, c3 = c
    if c1 == 0:
        return math.inf
    return (TAYLOR_SAFETY * (abs(c2) * eps + abs(c3) * eps**2) + floor / eps**order) / abs(c1)


def fit_series(R_at: Callable[[int], float], order: int, starts: tuple[int, ...]) -> SeriesFit:
    """The first k₀ of ``starts`` at which the series fitted through ε = 2^−k₀, 2^−(k₀+1), 2^−(k₀+2)
    (:func:`series_coefficients`) says its own fit points lie in the asymptotic window (the fitted
    correction x₀ = 2(|c₂|ε + |c₃|ε²)/|c₁| ≤ TAYLOR_WINDOW/2 at ε = 2^−k₀); the last start when none does
    (then x₀ > TAYLOR_WINDOW/2, which :func:`series_checks` reports as a failure: a remainder of the wrong
    order never settles). ``R_at(k)`` gives the remainder at ε = 2^−k (scaled by the caller)."""
    if not starts:
        raise ValueError("starts must name at least one first exponent")
    for k0 in starts:
        eps = [2.0**-k for k in (k0, k0 + 1, k0 + 2)]
        c = series_coefficients(eps, [R_at(k) for k in (k0, k0 + 1, k0 + 2)], order)
        x0 = series_band(c, 0.0, eps[0], order)
        if x0 <= TAYLOR_WINDOW / 2:
            break
    return SeriesFit(order, k0, c, x0)


def fit_uncertainty(eps: list[float], floor: float, order: int) -> tuple[float, float, float]:
    """(Δ₁, Δ₂, Δ₃) with |ĉ_j − c_j| ≤ Δ_j for the series fitted through ε_i (:func:`series_coefficients`)
    when every R(ε_i) is off by at most ``floor``: the fit is linear, ĉ = V⁻¹ r with V the Vandermonde
    matrix of the ε_i and r_i = R(ε_i)/ε_i^order, so |ĉ − c| ≤ |V⁻¹| (floor/ε_i^order) entrywise."""
    import numpy as np

    e = np.asarray(eps, dtype=float)
    delta = np.abs(np.linalg.inv(np.vander(e, 3, increasing=True))) @ (floor / e**order)
    return float(delta[0]), float(delta[1]), float(delta[2])


def settled_within_floor(c: tuple[float, float, float], delta: tuple[float, float, float], eps0: float, order: int):
    """The smallest fitted correction x₀ (:func:`series_band` without floor, at ε₀) of any series within
    ``delta`` of ``c`` (:func:`fit_uncertainty`): (|c₁| + Δ₁, max(|c₂| − Δ₂, 0), max(|c₃| − Δ₃, 0))."""
    low = (abs(c[0]) + delta[0], max(abs(c[1]) - delta[1], 0.0), max(abs(c[2]) - delta[2], 0.0))
    return series_band(low, 0.0, eps0, order)


def window_result(
    claim: str, x0: float, floor_share: float, x0_floor: float = math.inf, /, **info
) -> list[CheckResult]:
    """The fit found an asymptotic window: x₀ ≤ TAYLOR_WINDOW/2 (:func:`fit_series`). When it did not, and
    either the float64 floor is ≥ TAYLOR_WINDOW/2 of the fitted leading term at the last fit start
    (``floor_share``) or a series within the floor's reach of the fitted one would settle (``x0_floor``
    ≤ TAYLOR_WINDOW/2, :func:`settled_within_floor`: the fitted corrections are rounding noise), the regime
    lies below what float64 resolves: ``undecided`` with the reason (counted, never a pass), as
    :func:`taylor_test` reports it."""
    if x0 > TAYLOR_WINDOW / 2 and (floor_share >= TAYLOR_WINDOW / 2 or x0_floor <= TAYLOR_WINDOW / 2):
        reason = (
            f"no fit start settles (x₀ = {x0:.3g}); at the last start the float64 floor is {floor_share:.3g} of "
            f"the fitted leading term and within the floor's reach the fit settles to x₀ = {x0_floor:.3g}: the "
            f"regime lies below what float64 resolves"
        )
        return [undecided(claim, "the remainder's fitted series settles", reason, **info)]
    return [
        inequality(
            claim,
            "the remainder's fitted series settles (x₀ ≤ TAYLOR_WINDOW/2 at some fit start)",
            x0 if math.isfinite(x0) else 1e300,
            TAYLOR_WINDOW / 2,
            "<=",
            TAYLOR_WINDOW / 2,
            **info,
        )
    ]


SERIES_PROBES = (4, 8)  # the observed order is read at ε = 2^−(k₀+4) and 2^−(k₀+8), each against ε/2


def series_checks(
    claim: str, quantity: str, R_at: Callable[[int], float], fit: SeriesFit, floor: float, /, **info
) -> list[CheckResult]:
    """The fitted-series test of a remainder R(ε) = O(ε^order) (``fit`` = :func:`fit_series` of ``R_at``):

    * the fit settles (:func:`window_result`; ``undecided`` where the float64 floor could explain that it
      does not: :func:`fit_uncertainty`, :func:`settled_within_floor`);
    * observed order :func:`observed_order` (log2(R(ε)/R(ε/2))) = ``order`` at ε = 2^−(k₀+j), j in
      SERIES_PROBES, within :func:`taylor_order_band` of x = max(x(ε), x(ε/2)) (:func:`series_band` with
      ``floor``), where x ≤ TAYLOR_WINDOW (beyond it the probe is not judged)."""
    c, order, eps = fit.coefficients, fit.order, fit.eps
    x0_floor = settled_within_floor(c, fit_uncertainty(eps, floor, order), eps[0], order)
    share = floor / (eps[0] ** order * abs(c[0])) if c[0] else math.inf
    results = window_result(claim, fit.x0, share, x0_floor, **info)
    for k in (fit.k0 + j for j in SERIES_PROBES):
        x = max(series_band(c, floor, 2.0**-k, order), series_band(c, floor, 2.0 ** -(k + 1), order))
        if x > TAYLOR_WINDOW:
            continue
        results.append(
            identity(
                claim,
                quantity,
                observed_order(R_at(k), R_at(k + 1)),
                float(order),
                taylor_order_band(x, x),
                k=k,
                x=x,
                **info,
            )
        )
    return results
