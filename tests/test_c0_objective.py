"""C0.4: the masked-diffusion objective (convention "1/t": t ~ U(0,1), each token masked with
probability t, masked tokens scored with weight 1/t).

* facts.mdm_objective_exact equals an independent enumeration with weights
  ∫₀¹ t^{k−1}(1−t)^{L−k} dt = 1/(k C(L,k)), to the derived float64 bound (and the mpmath oracle).
* facts.mdm_objective_samples has exactly the law derived in THEORY C0.4 / mdm_props.claims.c0:
  X = ℓ(S)/t with P(S) = 1/((L+1) C(L,|S|)) and t | S ~ Beta(|S|+1, L−|S|+1) (X = 0 for S = ∅).
  Its variance is infinite (the |S| = 1 term has E[1/t² | S] = ∞), so a CLT or Chebyshev test of the
  sample mean would not be valid; the law itself is tested with Kolmogorov–Smirnov, and the mean
  of that law, ∫₀^∞ (1 − F), is checked against the exact objective (unbiasedness).
"""

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate

from mdm_props import rounding, strategies
from mdm_props.checks import assert_holds, identity
from mdm_props.claims import c0_oracles as c0
from mdm_props.facts import masked_token_nll, mdm_objective_exact, mdm_objective_samples
from mdm_props.model import ATTENTIONS, POSITIONAL_ENCODINGS, ModelConfig
from mdm_props.params import init_params
from mdm_props.statistics import FALSE_ALARM

u = rounding.UNIT_ROUNDOFF


@pytest.mark.claim("C0.4")
@pytest.mark.parametrize("L", range(1, 7))
def test_beta_integral_weights(L):
    """∫₀¹ t^{k−1}(1−t)^{L−k} dt = (k−1)!(L−k)!/L! = 1/(k C(L,k)): exactly (fractions), by mpmath.quad
    (30 digits) and by scipy.integrate.quad (its own error estimate, ≤ 1e-13 here)."""
    for k in range(1, L + 1):
        target_w = Fraction(1, k * math.comb(L, k))
        assert c0.beta_weight(L, k) == target_w
        assert abs(float(c0.beta_weight_quad(L, k)) - float(target_w)) <= c0.QUAD_WEIGHT_TOL + 1e-16 * float(target_w)
        val, err = integrate.quad(lambda t, k=k: t ** (k - 1) * (1 - t) ** (L - k), 0, 1)
        assert err < 1e-13 and abs(val - float(target_w)) <= err + 4 * rounding.UNIT_ROUNDOFF


@st.composite
def objective_draws(draw):
    case = draw(
        strategies.cases(
            pos=st.sampled_from(POSITIONAL_ENCODINGS),
            orthonormal=False,
            attention=st.sampled_from(ATTENTIONS),
            n_heads=st.integers(1, 2),
        )
    )
    # real-token ids, each one INDEX choice reduced mod V (a fixed schema: strategies.pick)
    tokens = [i % case.cfg.vocab for i in draw(st.lists(strategies.INDEX, min_size=1, max_size=6))]
    return case, tokens


@pytest.mark.claim("C0.4")
@given(draw=objective_draws())
def test_exact_objective_matches_an_independent_enumeration(device, draw):
    """mdm_objective_exact vs c0.enumerate_objective (L ≤ 6), within twice the bound of
    c0.mdm_objective_error_bound (both are float64 evaluations of the same exact sum)."""
    case, tokens = draw
    params = case.params(device)
    tokens = torch.tensor(tokens, device=params["E"].device)
    exact = float(mdm_objective_exact(params, case.cfg, tokens))
    enum = c0.enumerate_objective(params, case.cfg, tokens)
    tol = 2 * c0.mdm_objective_error_bound(params, case.cfg, tokens)
    assert_holds([identity("C0.4", "mdm_objective_exact vs enumerate_objective", exact, enum, tol)])


@pytest.mark.claim("C0.4")
@pytest.mark.parametrize("pos", POSITIONAL_ENCODINGS)
def test_exact_objective_matches_the_oracle_enumeration(pos):
    """Against exact Beta weights and mpmath log-probs (one side rounds: one bound + u|exact|)."""
    cfg = ModelConfig(vocab=4, d_model=5, d_head=2, n_heads=2, pos=pos, attention="bidirectional", tied=False)
    params = init_params(cfg, 11, scale=2.0)
    tokens = torch.tensor([2, 0, 3, 1])
    exact = c0.enumerate_objective_oracle(params, cfg, tokens)
    computed = float(mdm_objective_exact(params, cfg, tokens))
    tol = c0.mdm_objective_error_bound(params, cfg, tokens) + rounding.UNIT_ROUNDOFF * abs(float(exact))
    assert abs(computed - float(exact)) <= tol


SAMPLER_CASES = [  # (pos, attention, L, model seed, sample seed): fixed, so the false-alarm rate is stated
    ("rope", "bidirectional", 3, 1, 101),
    ("alibi", "causal", 4, 2, 102),
    ("absolute", "bidirectional", 6, 3, 103),
]
N_SAMPLES = 20_000


def _model(pos, attention, L, seed):
    cfg = ModelConfig(vocab=5, d_model=6, d_head=4, pos=pos, attention=attention)
    tokens = torch.tensor([(3 * i + seed) % cfg.vocab for i in range(L)])
    return cfg, init_params(cfg, seed), tokens


@pytest.mark.claim("C0.4")
@pytest.mark.parametrize("pos,attention,L,seed,sample_seed", SAMPLER_CASES)
def test_sampler_law_and_mean(pos, attention, L, seed, sample_seed):
    """All of c0.objective_checks on a fixed draw with 20,000 samples: enumeration, weights, the
    KS test of the sampler's law (rejects at p < 1e-6: KS with the continuous null law is conservative
    for this F, which has an atom at 0, so each case's false-alarm probability is ≤ 1e-6) and the
    mean ∫(1 − F) = exact objective."""
    cfg, params, tokens = _model(pos, attention, L, seed)
    results = c0.objective_checks(params, cfg, tokens, N_SAMPLES, sample_seed)
    for r in results:
        assert r.holds, str(r)


def _wrong_samples(params, cfg, tokens, n, seed, *, weight_power=1, mask_power=1):
    """The 1/t estimator with a deliberate mistake: weight 1/t^weight_power, mask probability t^mask_power."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.rand(n, 1, generator=gen, dtype=torch.float64).clamp_min(1e-300)
    mask = torch.rand(n, tokens.shape[0], generator=gen, dtype=torch.float64) < t**mask_power
    nll = masked_token_nll(params, cfg, tokens.expand(n, -1), mask)
    return (nll / t.squeeze(-1) ** weight_power).numpy()


@pytest.mark.parametrize("mistake", [dict(weight_power=2), dict(mask_power=2)], ids=["weight 1/t^2", "mask prob t^2"])
def test_meta_ks_test_rejects_a_wrong_estimator(mistake):
    """The same KS test (same n, same threshold 1e-6) rejects an estimator with the wrong weight or
    the wrong masking probability; the right one, on the same draws, is not rejected."""
    cfg, params, tokens = _model("rope", "bidirectional", 4, 5)
    ells, ks = c0.mask_losses(params, cfg, tokens)
    cdf = lambda x: c0.sample_cdf(x, ells, ks, tokens.shape[0])  # noqa: E731
    _, p_wrong = c0.ks_test_with_atom_at_zero(_wrong_samples(params, cfg, tokens, N_SAMPLES, 9, **mistake), cdf)
    _, p_right = c0.ks_test_with_atom_at_zero(_wrong_samples(params, cfg, tokens, N_SAMPLES, 9), cdf)
    assert p_wrong < FALSE_ALARM and p_right >= FALSE_ALARM, (p_wrong, p_right)


def test_meta_the_sampler_is_the_one_described():
    """facts.mdm_objective_samples draws t then the mask from one generator, as _wrong_samples with no
    mistake does: identical samples from the same seed (so the meta-test above probes the real law)."""
    cfg, params, tokens = _model("t5", "bidirectional", 3, 4)
    ours = _wrong_samples(params, cfg, tokens, 500, 17)
    theirs = mdm_objective_samples(params, cfg, tokens, 500, torch.Generator().manual_seed(17)).numpy()
    np.testing.assert_array_equal(ours, theirs)


def _saturated_draw():
    """Draw 102 of `run_c04(200, seed=1)`: tied t5 model at scale 4, tokens (0, 0). p(x_i) = 1 in float64
    for every mask, so ℓ(S) = 0 and every sample is exactly 0."""
    cfg = ModelConfig(vocab=3, d_model=3, d_head=5, n_heads=2, pos="t5", rope_base=100.0, tied=True, merged_ov=False)
    return cfg, init_params(cfg, 3299242428, scale=4.0), torch.tensor([0, 0])


@pytest.mark.claim("C0.4")
def test_sampler_law_on_a_saturated_draw():
    """On a draw whose float64 losses ℓ(S) are all 0, the reference law puts its whole mass at 0
    (F(0) = P(∅) + Σ_{ℓ(S)=0} P(S)) and every C0.4 check holds; it was a KS p-value of 0 in verify at
    200 draws while the reference law put only P(∅) = 1/(L+1) at 0."""
    cfg, params, tokens = _saturated_draw()
    ells, ks = c0.mask_losses(params, cfg, tokens)
    assert (ells == 0).all()
    assert c0.sample_cdf(0.0, ells, ks, 2)[0] == pytest.approx(1.0, abs=1e-15)
    assert_holds(c0.objective_checks(params, cfg, tokens, 4000, 3681455700))


def test_meta_the_atom_at_zero_counts_the_zero_loss_masks():
    """F(0) on made-up losses with some zeros is P(∅) + the zero-loss masks' P(S), exactly, and F is
    still a CDF (non-decreasing to 1); the KS test rejects the law that forgets those masks."""
    L = 3
    ks = np.array([1, 1, 1, 2, 2, 2, 3])
    ells = np.array([0.0, 0.5, 0.0, 1.0, 0.0, 2.0, 3.0])
    P = c0.mask_probability(L, ks)
    assert c0.sample_cdf(0.0, ells, ks, L)[0] == pytest.approx(1 / (L + 1) + P[[0, 2, 4]].sum(), rel=1e-15)
    xs = np.linspace(0, 1e3, 2001)
    F = c0.sample_cdf(xs, ells, ks, L)
    assert (np.diff(F) >= 0).all() and F[-1] == pytest.approx(1.0, abs=1e-3)
    cfg, params, tokens = _saturated_draw()
    zeros = np.zeros(4000)
    forgetful = lambda x: np.where(np.asarray(x) >= 0, 1 / 3, 0.0)  # noqa: E731  the old atom, P(∅) only
    _, p_old = c0.ks_test_with_atom_at_zero(zeros, forgetful)
    assert p_old < FALSE_ALARM


# ---------------------------------------------------------------------------------------------
# meta-tests: the checkers and their bounds on their own (the registry audit looks for them in this file)


@pytest.mark.meta("C0.4")
def test_objective_bound_holds_and_rejects_a_perturbed_model():
    """The float64 objective is within the bound of the mpmath enumeration; the objective of a model
    whose W_OV is off by one part in 1e9 is not."""
    cfg = ModelConfig(vocab=4, d_model=5, d_head=2, pos="alibi")
    params = init_params(cfg, 3)
    tokens = torch.tensor([1, 3, 0])
    exact = float(c0.enumerate_objective_oracle(params, cfg, tokens))
    computed = float(mdm_objective_exact(params, cfg, tokens))
    bound = c0.mdm_objective_error_bound(params, cfg, tokens)
    assert abs(computed - exact) <= bound + u * abs(exact) and bound < 1e-12 * abs(exact)
    mutant = {**params, "W_OV": params["W_OV"] * (1 + 1e-9)}
    off = float(mdm_objective_exact(mutant, cfg, tokens))
    assert abs(off - exact) > c0.mdm_objective_error_bound(mutant, cfg, tokens) + u * abs(exact)
