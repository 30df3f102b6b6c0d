"""Meta-tests of the C2 checkers and bounds: each rejects a wrong formula or a value a few bounds
off, and the Monte Carlo variance correction κ is both right and necessary."""

import math

import pytest
import torch
from scipy import stats

from mdm_props import strategies
from mdm_props.claims import c2_correlated_routes as c2
from mdm_props.statistics import FALSE_ALARM

D_K, BASE, DELTA = 64, 1e4, 2


@pytest.fixture(scope="module")
def sample():
    return c2.sample_scores(16, D_K, BASE, DELTA, 2000, seed=5)


def test_correlation_check_accepts_the_right_formula(sample):
    assert c2.check_score_correlation(sample["s_f"], sample["s_r"], D_K, BASE, 2.0 * DELTA).holds


def test_correlation_check_rejects_the_wrong_rotation_direction(sample):
    """S_r computed with R_{+Δ} (the forward rotation for both) has correlation 1 with S_f: rejected."""
    q, k = sample["q"], sample["k"]
    wrong = (q * (k @ rope_matrix_T(DELTA))).sum(-1)
    r = c2.check_score_correlation(sample["s_f"], wrong, D_K, BASE, 2.0 * DELTA)
    assert not r.holds, str(r)


def rope_matrix_T(delta):
    from mdm_props.model import rope_matrix

    return rope_matrix(delta, D_K, BASE).T


@pytest.mark.parametrize("d_k", [2, 4])
def test_fisher_z_needs_the_kappa_correction(d_k):
    """400 replicate studies of n = 500 draws: Σ z² of the κ-standardised statistic lies inside the
    χ²₄₀₀ interval at false alarm 1e-6, and that of the plain Fisher statistic (κ = 1) lies above it —
    the bivariate-normal variance 1/(n − 3) understates the spread of r for these bilinear scores."""
    reps, n, g = 400, 500, 2.0 * DELTA
    s = c2.sample_scores(4, d_k, BASE, DELTA, reps * n, seed=11 + d_k)
    rho, kappa = c2.score_correlation(d_k, BASE, g), c2.score_correlation_variance_factor(d_k, BASE, g)
    sf, sr = s["s_f"].view(reps, n), s["s_r"].view(reps, n)
    z = torch.tensor([math.atanh(c2.sample_correlation(a, b)) - math.atanh(rho) for a, b in zip(sf, sr, strict=False)])
    z2 = float((z * z).sum()) * (n - 3)
    low, high = stats.chi2.ppf(FALSE_ALARM / 2, reps), stats.chi2.isf(FALSE_ALARM / 2, reps)
    assert low < z2 / kappa < high, (z2 / kappa, low, high)
    assert z2 > high, (z2, high)


@pytest.mark.parametrize("d_k", [2, 8])
def test_kappa_matches_the_sample_delta_method_estimate(d_k):
    """The analytic n·Var(r) = κ(1 − ρ²)² agrees with the distribution-free sample estimate
    (c2.delta_method_variance) over 20 batches of 5,000 draws: a t-test (19 d.o.f.) at false alarm 1e-6.
    κ = 1 (plain Fisher) is rejected the same way."""
    batches, n = 20, 5000
    s = c2.sample_scores(4, d_k, BASE, DELTA, batches * n, seed=3 + d_k)
    rho = c2.score_correlation(d_k, BASE, 4.0)
    exact = c2.score_correlation_variance_factor(d_k, BASE, 4.0) * (1 - rho * rho) ** 2
    est = torch.tensor(
        [
            c2.delta_method_variance(a, b)
            for a, b in zip(s["s_f"].view(batches, n), s["s_r"].view(batches, n), strict=False)
        ]
    )
    crit = stats.t.isf(FALSE_ALARM / 2, batches - 1)
    se = float(est.std()) / math.sqrt(batches)
    assert abs(float(est.mean()) - exact) / se < crit
    assert abs(float(est.mean()) - (1 - rho * rho) ** 2) / se > crit


def test_formula_check_rejects_a_value_ten_bounds_off(monkeypatch):
    """The float64-vs-mpmath bound is not vacuous: a formula off by 10× the bound is rejected."""
    d_k, g = 16, 4.0
    bound = c2.correlation_formula_error(d_k, BASE, g)
    assert bound < 1e-13
    exact = c2.score_correlation(d_k, BASE, g)
    monkeypatch.setattr(c2, "score_correlation", lambda *a: exact + 10 * bound)
    assert not c2.check_correlation_formula(d_k, BASE, g).holds


def test_limit_check_rejects_a_wrong_limit(monkeypatch):
    """A limit off by 10× the second-order bound fails the second-order check (d_k = 1024)."""
    d_k, g = 1024, 4.0
    true = c2.score_correlation_limit(g, BASE)
    second = c2.riemann_limit_bounds(d_k, BASE, g)[1]
    monkeypatch.setattr(c2, "score_correlation_limit", lambda *a, **k: true + 10 * second)
    results = c2.check_correlation_limit(d_k, BASE, g)
    assert not results[1].holds, str(results[1])


def test_model_score_check_rejects_a_perturbed_score(sample):
    results = c2.check_model_scores(sample, 0)
    assert all(r.holds for r in results)
    bad = dict(sample, s_f=sample["s_f"].clone())
    bad["s_f"][0] += 10 * results[0].tolerance
    assert not c2.check_model_scores(bad, 0)[0].holds


def test_reflection_check_tells_t5_from_the_symmetric_case():
    """Under t5 the claimed difference b(+Δ) − b(−Δ) is ≫ the bound, so the alibi/none statement
    (difference 0) would be rejected there: the observed difference is > 10 bounds from 0."""
    import random

    rng = random.Random(1)
    for _ in range(5):
        case = strategies.sample_case(rng, pos=("t5",), orthonormal=False)
        r = c2.check_reflection_scores(case.params(), case.cfg, case.template, case.A, case.B)
        assert r.holds, str(r)
        assert abs(r.observed) > 10 * r.tolerance, str(r)


def test_printed_value_tolerance():
    assert c2.printed_value_tolerance("-0.654") == pytest.approx(5e-4)
    assert c2.printed_value_tolerance("0.7715") == pytest.approx(5e-5)
    assert c2.printed_value_tolerance("−0.654") == pytest.approx(5e-4)
    with pytest.raises(ValueError):
        c2.printed_value_tolerance("n/a")
