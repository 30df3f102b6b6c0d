"""C2: correlated forward/reverse routes (THEORY.md §2 C2a–C2c).

Kinds: C2a distributional (exact in distribution; Monte Carlo at false-alarm 1e-6 with the exact
delta-method variance — Fisher's bivariate-normal 1/(n−3) is too small for these bilinear scores),
C2b identity (every draw, derived float64 bound), C2c typical (a rate over fixed seeds with a
Clopper–Pearson interval at 1 − 1e-6).
"""

import functools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mdm_props import strategies
from mdm_props.checks import ClaimSkipped, assert_holds
from mdm_props.claims import c2_correlated_routes as c2
from mdm_props.model import rope_matrix
from mdm_props.statistics import clopper_pearson

D_K, BASE, DELTA = 64, 1e4, 2  # the structure of the C2a meta-test (as tests/meta/test_checkers_c2.py)

d_ks = st.integers(1, 128).map(lambda h: 2 * h)
gaps = st.integers(1, 64).map(lambda dl: 2.0 * dl)

# THEORY.md §2 C2a, as printed there: (d_k, base, g, printed value); d_k None = the d_k → ∞ limit.
TABLE = [
    (2, 1e4, 4, "-0.654"),
    (4, 1e4, 4, "0.173"),
    (6, 1e4, 4, "0.443"),
    (8, 1e4, 4, "0.567"),
    (16, 1e4, 4, "0.695"),
    (64, 1e4, 4, "0.748"),
    (None, 1e4, 4, "0.7715"),
    (64, 5e5, 4, "0.817"),
    (None, 5e5, 4, "0.8396"),
    (64, 1e4, 64, "0.435"),
    # the presets' first layer at their (d_k, base) (THEORY §2b): LLaDA, Dream, SMDM
    (128, 5e5, 4, "0.828"),
    (128, 1e6, 4, "0.836"),
    (128, 1e4, 4, "0.759"),
]


# ---------------------------------------------------------------------------------------------
# C2a: the formula


@pytest.mark.claim("C2a")
@given(d_k=d_ks, base=strategies.rope_bases, g=gaps)
def test_correlation_formula_matches_mpmath_and_the_trace(d_k, base, g):
    """(2/d_k) Σ cos(gθ_l) in float64 and tr(rope_matrix(g))/d_k agree with the 50-digit sum."""
    r = c2.check_correlation_formula(d_k, base, g)
    assert_holds([r])


@pytest.mark.claim("C2a")
@pytest.mark.parametrize("d_k, base, g, printed", TABLE)
def test_theory_table_values(d_k, base, g, printed):
    """Each printed value is the formula (or its limit) rounded: within half a unit of its last digit."""
    value = float(c2.score_correlation_limit(g, base)) if d_k is None else c2.score_correlation(d_k, base, g)
    assert abs(value - float(printed)) <= c2.printed_value_tolerance(printed), (value, printed)


@pytest.mark.claim("C2a")
def test_positivity_thresholds_stated_in_theory():
    """At Δ = 2, base 1e4: positive exactly from d_k = 4, above 0.4 exactly from d_k = 6 (d_k ≤ 256)."""
    values = {d: c2.score_correlation(d, 1e4, 4.0) for d in range(2, 257, 2)}
    assert [d for d, v in values.items() if v <= 0] == [2]
    assert [d for d, v in values.items() if v <= 0.4] == [2, 4]


@pytest.mark.claim("C2a")
@pytest.mark.parametrize("base, g", [(1e4, 4.0), (5e5, 4.0), (1e4, 64.0), (100.0, 2.0)])
def test_limit_quadrature_closed_form_and_riemann_rate(base, g):
    """∫₀¹ cos(g base^−u) du by mpmath.quad equals (Ci(g) − Ci(g/base))/ln base; the float64 formula
    converges to it at the derived rate: within |g| ln(base)/d_k, and within L²(g²+|g|)/(3d_k²) of
    the first-order Euler–Maclaurin term (cos g − cos(g/base))/d_k, for d_k = 2 … 4096."""
    quad, closed = c2.score_correlation_limit(g, base, method="quad"), c2.score_correlation_limit(g, base)
    assert abs(quad - closed) < 1e-40
    errors = {}
    for d_k in [2**j for j in range(1, 13)]:
        for r in c2.check_correlation_limit(d_k, base, g):
            assert r.holds, str(r)
        errors[d_k] = c2.score_correlation(d_k, base, g) - float(closed)
    lead = math.cos(g) - math.cos(g / base)
    assert abs(errors[4096] * 4096 - lead) <= c2.riemann_limit_bounds(4096, base, g)[1] * 4096 + 1e-9


# ---------------------------------------------------------------------------------------------
# C2a: Monte Carlo


MC = [(64, 1e4, 2), (16, 1e4, 2), (8, 1e4, 2), (4, 1e4, 2), (64, 5e5, 2), (64, 1e4, 32)]


@pytest.mark.claim("C2a")
@pytest.mark.parametrize("d_k, base, delta", MC)
def test_monte_carlo_correlation_matches_formula(device, d_k, base, delta):
    """10,000 iid (W_Q, W_K) draws: |atanh r − atanh ρ| ≤ z_{1−5e-7} √(κ/(n−3)) (false alarm 1e-6);
    the first draws' S_f, S_r equal √d_k × model.forward's scores at the right slots."""
    sample = c2.sample_scores(16, d_k, base, delta, 10_000, seed=1000 + d_k + delta, device=device)
    r = c2.check_score_correlation(sample["s_f"], sample["s_r"], d_k, base, 2.0 * delta)
    print(
        r,
        f"z = {r.details['statistic']:.3f}, κ = {r.details['kappa']:.3f} "
        f"(estimated {r.details['kappa_estimated']:.3f})",
    )
    assert r.holds, str(r)
    for i in range(3):
        for s in c2.check_model_scores(sample, i):
            assert s.holds, str(s)


# the real models' first layer (THEORY §2b "Real architectures"): d_k = 128 and their RoPE base; 2,000 draws
# each (the test's false alarm is 1e-6 at any n; fewer draws keep the suite in its time budget)
PRESET_MC = [("llada", 128, 5e5), ("dream", 128, 1e6), ("smdm", 128, 1e4)]


@pytest.mark.claim("C2a")
@pytest.mark.parametrize("name, d_k, base", PRESET_MC)
def test_monte_carlo_correlation_at_the_presets_first_layer(name, d_k, base):
    sample = c2.sample_scores(16, d_k, base, 2, 2_000, seed=2000 + len(name), device="cpu")
    r = c2.check_score_correlation(sample["s_f"], sample["s_r"], d_k, base, 4.0)
    assert r.holds, str(r)


@pytest.mark.claim("C2a")
@given(case=strategies.cases(pos=st.sampled_from(["alibi", "none", "t5"]), orthonormal=False))
def test_reflection_symmetric_encodings(device, case):
    """alibi, none: the mask-to-B score is the same in both configurations (correlation 1); t5: they
    differ by exactly b(+Δ) − b(−Δ). Scores from model.forward, any template."""
    r = c2.check_reflection_scores(case.params(device), case.cfg, case.template, case.A, case.B)
    assert_holds([r])


# ---------------------------------------------------------------------------------------------
# C2b


@pytest.mark.claim("C2b")
@given(case=strategies.cases(pos=st.just("rope"), orthonormal=False))
def test_route_gradient_identity(device, case):
    """⟨∇S_f, ∇S_r⟩ of the model's scores (torch.func.grad through model.forward) equals
    Σ_l cos(gθ_l)(‖x_M‖²‖k_l‖² + ‖x_B‖²‖q_l‖²)/d_k within the derived bound, any template."""
    params = case.params(device)
    gf, gr = c2.route_gradients(params, case.cfg, case.template, case.A, case.B)
    r = c2.check_route_gradient(params, case.cfg, case.template, case.A, case.B, gf, gr)
    assert_holds([r])


@pytest.mark.claim("C2b")
@pytest.mark.parametrize("d_k, base, delta", [(2, 1e4, 2), (4, 1e4, 2), (64, 1e4, 2), (8, 5e5, 1)])
def test_route_gradient_expectation_has_the_sign_of_the_trace(device, d_k, base, delta):
    """E⟨∇S_f, ∇S_r⟩ = (σ_Q² + σ_K²)‖x_M‖²‖x_B‖² tr(R_g): the Monte Carlo mean of the identity's right-hand
    side over 10,000 iid draws matches it (z-test with the exact variance, false alarm 1e-6), and its
    sign is the sign of tr(R_g) (negative at d_k = 2, Δ = 2)."""
    s = c2.sample_scores(16, d_k, base, delta, 10_000, seed=77 + d_k, device=device)
    g = 2.0 * delta
    values = c2.route_gradient_formula(s["q"], s["k"], s["x_M"], s["x_B"], g, base)
    mean, var = c2.route_gradient_moments(s["x_M"].cpu(), s["x_B"].cpu(), s["sigma"], s["sigma"], d_k, base, g)
    r = c2.check_route_gradient_mean(values.cpu(), mean, var)
    assert r.holds, str(r)
    trace = float(torch.trace(rope_matrix(g, d_k, base)))
    assert math.copysign(1, mean) == math.copysign(1, trace) and abs(trace) > 1e-3
    assert (float(values.mean()) > 0) == (trace > 0)


# ---------------------------------------------------------------------------------------------
# C2c (typical)

C2C_SEEDS = 60  # the correlation rate (≈ 0.94) needs ≥ 49/60 for a CP lower bound > 1/2 at 1 − 1e-6


@functools.cache
def _trials(device):
    return tuple(c2.forward_training_trial(s, device=device) for s in c2.trial_seeds(C2C_SEEDS, 2024))


@pytest.mark.claim("C2c")
def test_forward_training_raises_reverse_attention_and_score_correlation(device):
    """60 fixed seeds of forward-only training (c2.TRAINING): the rate at which the forward AND
    reverse attention to B rise, and the rate at which the across-pair Corr(S_f, S_r) rises, each have
    a Clopper–Pearson (1 − 1e-6) lower bound > 1/2 (a rate ≤ 1/2 would pass with probability ≤ 5e-7)."""
    trials = _trials(device)
    attn = c2.check_rate("C2c", "attention to B rises", sum(map(c2.attention_rose, trials)), len(trials))
    corr = c2.check_rate("C2c", "Corr(S_f, S_r) rises", sum(map(c2.correlation_rose, trials)), len(trials))
    print(attn, corr, sep="\n")
    assert attn.holds and corr.holds, f"{attn}\n{corr}"


@pytest.mark.claim("C2c")
def test_runner_reports_the_rate_with_its_interval():
    """The registry runner (default 30 seeds) returns the attention rate as a CP-bounded check, and
    refuses (skips) too few seeds."""
    [r] = c2.run_c2c(30, 0, "cpu")
    assert r.holds, str(r)
    assert r.details["trials"] == 30 and r.details["interval"] == clopper_pearson(r.details["successes"], 30)
    with pytest.raises(ClaimSkipped, match="needs >= 21 seeds"):  # 20/20 cannot confirm a rate > 1/2 at 1e-6
        c2.run_c2c(20, 0, "cpu")


# ---------------------------------------------------------------------------------------------
# negative controls (search, then assert a counterexample was found)


def _control(control_id):
    return next(n for n in c2.NEGATIVE_CONTROLS if n.id == control_id)


@pytest.mark.negative_control("C2a")
def test_small_head_gives_a_negative_correlation(device):
    """Searching d_k/base/Δ finds a negative formula value that Monte Carlo confirms at 1e-6 (one-sided)."""
    cx = _control("C2a~d_k=2").run(2000, 0, device)
    assert cx.found, str(cx)
    assert cx.example["formula"] < 0 and cx.example["upper_bound"] < 0


@pytest.mark.negative_control("C2a")
def test_anisotropic_queries_break_the_formula(device):
    """Without H-iso (row-scaled W_Q) the sample correlation rejects tr(R_g)/d_k at 1e-6."""
    cx = _control("C2a~anisotropic").run(2000, 0, device)
    assert cx.found, str(cx)


@pytest.mark.negative_control("C2b")
def test_small_head_gives_a_negative_route_gradient_inner_product(device):
    """d_k = 2: a draw with ⟨∇S_f, ∇S_r⟩ below −tolerance exists (found by seeded search)."""
    cx = _control("C2b~d_k=2").run(50, 0, device)
    assert cx.found and cx.observed < 0, str(cx)


@pytest.mark.negative_control("C2c")
@pytest.mark.parametrize("control_id", ["C2c~absolute", "C2c~d_k=2"])
def test_training_without_the_hypotheses_can_lower_reverse_attention(device, control_id):
    """Learned absolute positions, or RoPE with d_head = 2: a seed whose forward-only training does not
    raise the reverse attention to B (found by seeded search)."""
    cx = _control(control_id).run(20, 0, device)
    assert cx.found, str(cx)
    assert cx.example["after"]["attn_r"] <= cx.example["before"]["attn_r"]


def test_c2_inputs_are_validated():
    with pytest.raises(ValueError, match="d_k must be an even integer"):
        c2.score_correlation(3, 1e4, 4.0)
    with pytest.raises(ValueError, match="base must be a finite number > 1"):
        c2.score_correlation(4, 1.0, 4.0)
    with pytest.raises(ValueError, match="n \\(Monte Carlo draws\\)"):
        c2.sample_scores(8, 4, 1e4, 2, 3, 0)
    with pytest.raises(ValueError, match="method must be"):
        c2.score_correlation_limit(4.0, 1e4, method="simpson")
    with pytest.raises(ValueError, match="unknown training settings"):
        c2.forward_training_trial(0, epochs=3)


# ---------------------------------------------------------------------------------------------
# meta-tests: the checkers and their bounds on their own (the registry audit looks for them in this file)


@pytest.fixture(scope="module")
def sample():
    return c2.sample_scores(16, D_K, BASE, DELTA, 2000, seed=5)


@pytest.mark.meta("C2a")
def test_correlation_check_rejects_g_equal_delta(sample):
    """Claiming g = Δ (0.885) instead of g = 2Δ (0.748) is rejected by 2000 draws."""
    r = c2.check_score_correlation(sample["s_f"], sample["s_r"], D_K, BASE, float(DELTA))
    assert not r.holds and r.error_ratio > 2, str(r)


@pytest.mark.meta("C2b")
def test_route_gradient_check_rejects_a_gradient_ten_bounds_off():
    """Perturb ∇S_f along ∇S_r so that the inner product moves by 10× the bound: rejected; the bound is
    ≤ 1e-11 relative to the scale of the terms (not vacuous)."""
    import random

    rng = random.Random(0)
    for _ in range(5):
        case = strategies.sample_case(rng, pos=("rope",), orthonormal=False)
        params = case.params()
        gf, gr = c2.route_gradients(params, case.cfg, case.template, case.A, case.B)
        ok = c2.check_route_gradient(params, case.cfg, case.template, case.A, case.B, gf, gr)
        assert ok.holds, str(ok)
        norm2 = float((gr["W_Q"] ** 2).sum() + (gr["W_K"] ** 2).sum())
        step = 10 * ok.tolerance / norm2
        bad = {k: gf[k] + step * gr[k] for k in gf}
        res = c2.check_route_gradient(params, case.cfg, case.template, case.A, case.B, bad, gr)
        assert not res.holds and res.error_ratio > 5, str(res)
        q = params["W_Q"][0, 0] @ params["E"][case.cfg.mask_id]
        k = params["W_K"][0, 0] @ params["E"][case.B]
        scale = (
            float(params["E"][case.cfg.mask_id].norm()) ** 2 * float(k.norm()) ** 2
            + float(params["E"][case.B].norm()) ** 2 * float(q.norm()) ** 2
        ) / case.cfg.d_head
        assert ok.tolerance < 1e-11 * scale


@pytest.mark.meta("C2c")
def test_rate_check_needs_more_than_half():
    assert c2.check_rate("C2c", "x", 30, 30).holds
    assert not c2.check_rate("C2c", "x", 20, 20).holds  # CP lower bound 0.484 at 1 − 1e-6
    assert not c2.check_rate("C2c", "x", 40, 60).holds
