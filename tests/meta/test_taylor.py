"""Meta-tests of the Taylor-test module (mdm_props.taylor) on remainders with a known expansion:
quadratic + cubic (holds, order 2), first order (violated, order 1), a rounding floor injected as
bounded noise (the window stops above it), a remainder whose asymptotic regime starts late
(2cρ² log cosh(η/ρ): its computed coefficients overestimate the radius of convergence, as on the
draw of issue 15; linear, order 1, for η ≫ ρ), and the exact stage for regimes float64 cannot
resolve. Properties over drawn coefficients, never pinned numbers."""

import math

import mpmath
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdm_props import taylor
from mdm_props.checks import STATUSES

U = 2.0**-53

leading = st.floats(0.1, 100.0).flatmap(lambda c: st.sampled_from([c, -c]))
cubic = st.floats(-100.0, 100.0)
radii = st.integers(1, 20).map(lambda j: 2.0**-j)


def polynomial(c2, c3, delta=0.0):
    """R(η) = δη + c₂η² + c₃η³ in float64, floor 4u(|δη| + |c₂η²| + |c₃η³|)."""

    def remainder(eta):
        terms = (delta * eta, c2 * eta**2, c3 * eta**3)
        return sum(terms), 4 * U * sum(abs(t) for t in terms)

    return remainder


def log_cosh(c2, rho, delta=0.0, noise=0.0):
    """R(η) = 2c₂ρ² log cosh(η/ρ) + δη (+ bounded noise ≤ ``noise``, declared in the floor): c₃ = c₅ = 0,
    c₄ = −c₂/(6ρ²), so ρ̂ = √6 ρ while the true radius of convergence is πρ/2."""

    def remainder(eta):
        x = eta / rho
        lc = x + math.log1p(math.exp(-2 * x)) - math.log(2.0)
        wobble = noise * math.sin(1e3 * math.log2(eta))  # a deterministic, bounded "rounding error"
        return 2 * c2 * rho**2 * lc + delta * eta + wobble, 16 * U * abs(c2) * rho**2 * (x + 1) + 4 * U * abs(
            delta * eta
        ) + noise

    return remainder


def exact_log_cosh(c2, rho, delta=0.0, floor=0.0):
    """The same remainder at 50 digits; floor ``floor`` (plus float64's rounding of the result)."""

    def remainder(eta):
        with mpmath.workdps(50):
            x = mpmath.mpf(eta) / mpmath.mpf(rho)
            R = 2 * c2 * mpmath.mpf(rho) ** 2 * mpmath.log(mpmath.cosh(x)) + mpmath.mpf(delta) * eta
        return float(R), floor + 2 * U * abs(float(R))

    return remainder


def log_cosh_coefficients(c2, rho):
    return (0.0, -c2 / (6 * rho**2), 0.0)


def assert_consistent(result):
    """What every TaylorResult promises: a status from STATUSES; for a decided one, a window of
    consecutive step sizes with TAYLOR_MIN_WINDOW of them, each inside the a-priori band limit."""
    assert result.status in STATUSES
    if result.status != "undecided":
        ks = [p.k for p in result.window]
        assert len(ks) >= taylor.TAYLOR_MIN_WINDOW and ks == list(range(ks[0], ks[0] + len(ks)))
        assert all(p.band <= taylor.TAYLOR_WINDOW for p in result.window)
        assert len(result.orders) == len(ks) - 1


@given(c2=leading, c3=cubic)
def test_quadratic_plus_cubic_holds_with_order_two(c2, c3):
    """R = c₂η² + c₃η³ with (c₃, 0, 0) known: holds in float64; every order within its band of 2 and
    every R/η² within its band of c₂; the window starts where the Taylor part fits the window."""
    result = taylor.taylor_test(polynomial(c2, c3), c2, (c3, 0.0, 0.0))
    assert_consistent(result)
    assert result.status == "holds" and result.precision == "float64" and not result.exact_needed
    assert all(abs(order - 2) <= band for _, order, band in result.orders)
    assert all(abs(ratio - c2) <= band for _, ratio, band in result.ratios())
    top = result.window[0].eta
    assert taylor.taylor_part(c2, (c3, 0.0, 0.0), top) <= taylor.TAYLOR_WINDOW


@given(c2=leading, c3=cubic, rel=st.floats(1e-6, 1.0), sign=st.sampled_from([1.0, -1.0]))
def test_a_first_order_term_is_violated_with_order_one(c2, c3, rel, sign):
    """R = δη + c₂η² + c₃η³ (a wrong derivative): violated, with observed orders ≈ 1 at the bottom."""
    result = taylor.taylor_test(polynomial(c2, c3, sign * rel * abs(c2)), c2, (c3, 0.0, 0.0))
    assert_consistent(result)
    assert result.status == "violated"
    assert all(abs(order - 1) < 0.1 for _, order, _ in result.orders)


@given(c2=leading, c3=cubic, noise=st.floats(1e-14, 1e-6))
def test_an_injected_rounding_floor_ends_the_window_above_it(c2, c3, noise):
    """A bounded error of size ``noise`` declared in the floor: never violated; it holds unless the floor
    leaves fewer than TAYLOR_MIN_WINDOW step sizes below the Taylor terms (then undecided: no exact
    evaluation given), and no step size below the one where floor/η² reaches TAYLOR_WINDOW|c₂| is used."""

    def remainder(eta):
        R, floor = polynomial(c2, c3)(eta)
        return R + noise * math.sin(1e3 * math.log2(eta)), floor + noise

    result = taylor.taylor_test(remainder, c2, (c3, 0.0, 0.0))
    assert_consistent(result)
    room = [p for p in result.points if p.band <= taylor.TAYLOR_WINDOW]
    assert result.status == "holds" or (result.status == "undecided" and len(room) < taylor.TAYLOR_MIN_WINDOW)
    assert all(p.floor / p.eta**2 <= taylor.TAYLOR_WINDOW * abs(c2) for p in result.points)
    assert all(p.eta >= math.sqrt(noise / (taylor.TAYLOR_WINDOW * abs(c2))) for p in result.points)


@given(c2=leading, c3=st.floats(-1.0, 1.0), rho=st.integers(10, 20).map(lambda j: 2.0**-j))
def test_a_hidden_higher_term_moves_the_window_down(c2, c3, rho):
    """R = c₂η² + c₃η³ + c₂η⁸/ρ⁶ with only (c₃, 0, 0) computed (as on the draw of issue 15, where c₃…c₅
    hid the larger c₆…): the a-priori window starts too high, the points where the hidden term
    exceeds the band are left above the window, and the test holds in float64 below them."""

    def remainder(eta):
        R, floor = polynomial(c2, c3)(eta)
        hidden = c2 * eta**8 / rho**6
        return R + hidden, floor + 4 * U * abs(hidden)

    result = taylor.taylor_test(remainder, c2, (c3, 0.0, 0.0))
    assert_consistent(result)
    assert result.status == "holds" and result.precision == "float64"
    assert result.window[0].eta < rho and any(p.k < result.window[0].k for p in result.points)
    assert all(abs(ratio - c2) <= band for _, ratio, band in result.ratios())


@given(c2=leading, rho=radii)
def test_a_saturating_remainder_settles_lower_down(c2, rho):
    """2c₂ρ² log cosh(η/ρ): the computed coefficients suggest ρ̂ = √6 ρ, above the true radius πρ/2,
    and for η ≫ ρ the remainder is linear (order 1), as a saturating softmax makes it. The test
    moves its window down and holds in float64; it never reports a violation."""
    result = taylor.taylor_test(log_cosh(c2, rho), c2, log_cosh_coefficients(c2, rho))
    assert_consistent(result)
    assert result.status == "holds" and result.precision == "float64"
    assert result.window[0].eta <= taylor.TAYLOR_RADIUS_FRACTION * taylor.taylor_radius(
        c2, log_cosh_coefficients(c2, rho)
    )


@given(c2=leading, rho=radii, wide=st.booleans())
def test_a_regime_below_the_float64_floor_is_decided_exactly_or_undecided(c2, rho, wide):
    """A float64 floor so high that no window of TAYLOR_MIN_WINDOW step sizes exists above it:
    without an exact evaluation the result is undecided (never violated); with the 50-digit one it
    holds there, with exact_needed; with an exact floor as high as float64's, undecided again."""
    noise = 1e-2 * abs(c2) * rho**2  # floor/η² reaches TAYLOR_WINDOW|c₂| at η ≈ 0.32ρ: one float64 step size
    remainder = log_cosh(c2, rho, noise=noise)
    coefficients = log_cosh_coefficients(c2, rho)
    alone = taylor.taylor_test(remainder, c2, coefficients)
    assert_consistent(alone)
    assert alone.status == "undecided" and alone.reason
    exact = taylor.taylor_test(remainder, c2, coefficients, exact=exact_log_cosh(c2, rho, floor=noise if wide else 0.0))
    assert_consistent(exact)
    if wide:
        assert exact.status == "undecided" and exact.exact_needed
    else:
        assert exact.status == "holds" and exact.precision == "exact" and exact.exact_needed
        assert all(p.precision == "exact" for p in exact.window)


@given(c2=leading, rho=radii, rel=st.floats(0.05, 1.0))
def test_a_first_order_term_below_the_float64_floor_is_violated_exactly(c2, rho, rel):
    """The same draw with a wrong derivative (δη, δ = rel·c₂ρ): the exact stage finds the first-order
    term (every ratio ten bands off, observed orders below 2 beyond their band)."""
    noise = 1e-2 * abs(c2) * rho**2
    delta = rel * c2 * rho
    result = taylor.taylor_test(
        log_cosh(c2, rho, delta, noise), c2, log_cosh_coefficients(c2, rho), exact=exact_log_cosh(c2, rho, delta)
    )
    assert_consistent(result)
    assert result.status == "violated" and result.precision == "exact"
    assert all(abs(ratio - c2) >= band / taylor.TAYLOR_WINDOW for _, ratio, band in result.ratios())
    assert all(order < 2 - band for _, order, band in result.orders)


def test_check_results_carry_the_status():
    c2 = 3.0
    holds = taylor.check_results("C4b", taylor.taylor_test(polynomial(c2, 1.0), c2, (1.0, 0.0, 0.0)), "c₂")
    assert [r.status for r in holds] == ["holds", "holds"]
    bad = taylor.check_results("C4b", taylor.taylor_test(polynomial(c2, 1.0, 1e-3), c2, (1.0, 0.0, 0.0)), "c₂")
    assert [r.status for r in bad] == ["violated", "violated"] and round(bad[0].observed, 1) == 1.0
    rho = 2.0**-8
    open_ = taylor.taylor_test(log_cosh(c2, rho, noise=1e-2 * c2 * rho**2), c2, log_cosh_coefficients(c2, rho))
    (r,) = taylor.check_results("C4b", open_, "c₂")
    assert r.status == "undecided" and r.undecided and not r.holds and "undecided" in str(r)
    assert r.details["reason"] == open_.reason and r.details["window"] == [p.k for p in open_.window]
    zero = taylor.taylor_test(polynomial(0.0, 1.0), 0.0, (1.0, 0.0, 0.0))
    assert zero.status == "undecided" and "c₂" in zero.reason


def test_taylor_bands():
    assert taylor.taylor_order_band(0.1, 0.05) == pytest.approx(math.log2(1.1 / 0.9))
    assert taylor.taylor_order_band(0.1, 0.1) < 0.3  # an observed order of 1 is far outside
    with pytest.raises(ValueError, match="relative band"):
        taylor.taylor_order_band(1.0, 0.1)
    assert taylor.taylor_radius(2.0, (0.0, 8.0, 0.0)) == pytest.approx(0.5)
    assert taylor.taylor_relative_band(2.0, (0.0, 8.0, 0.0), 0.0, 0.5) == math.inf  # beyond ρ̂
    x = taylor.taylor_relative_band(2.0, (1.0, 0.0, 0.0), 0.0, 1e-3)
    assert x == pytest.approx(taylor.TAYLOR_SAFETY * (1e-3 + 2.0 * (1e-3 / 2.0) ** 4 / (1 - 5e-4)) / 2.0)
    assert taylor.observed_order(4.0, 1.0) == 2.0 and math.isnan(taylor.observed_order(1.0, -1.0))


@given(c2=leading, j=st.integers(25, 55))
def test_the_exact_stage_stops_undecided_at_its_budget(c2, j):
    """R = c₂η² + c₂η⁸/ρ⁶ (ρ = 2^−j) with float64 blind (its floor declared as |c₂|: no window) and an exact
    evaluation: the regime starts about j + 9 halvings down, beyond TAYLOR_EXACT_BUDGET step sizes. The
    exact stage stops after exactly that many evaluations, undecided with the budget named (never holds
    or violated); given a budget past the regime, the same test holds there."""
    rho = 2.0**-j
    calls = []

    def blind(eta):
        return c2 * eta**2, abs(c2)

    def exact(eta):
        calls.append(eta)
        with mpmath.workdps(60):
            e = mpmath.mpf(eta)
            R = float(c2 * e**2 + c2 * e**8 / mpmath.mpf(rho) ** 6)
        return R, 4 * U * abs(R)

    capped = taylor.taylor_test(blind, c2, (0.0, 0.0, 0.0), exact=exact)
    assert_consistent(capped)
    assert capped.status == "undecided" and len(calls) == taylor.TAYLOR_EXACT_BUDGET
    assert capped.evaluations() == {"float64": 2, "exact": taylor.TAYLOR_EXACT_BUDGET}  # float64: k = 0, 1
    assert f"budget of {taylor.TAYLOR_EXACT_BUDGET} evaluations" in capped.reason
    calls.clear()
    wide = taylor.taylor_test(blind, c2, (0.0, 0.0, 0.0), exact=exact, exact_budget=len(taylor.TAYLOR_EXACT_EXPONENTS))
    assert_consistent(wide)
    assert wide.status == "holds" and wide.precision == "exact" and wide.window[0].k > j
    assert len(calls) > taylor.TAYLOR_EXACT_BUDGET
