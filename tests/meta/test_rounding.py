"""The derived float64 bounds hold (observed errors below them), are not vacuous (observed
error/bound ratios are reported and are not astronomically small; bounds are ~1e-15–1e-12 relative),
and reject values a few bounds off."""

from fractions import Fraction

import pytest
import torch

from mdm_props import rounding
from mdm_props.claims import c0_oracles as c0
from mdm_props.model import ModelConfig, forward
from mdm_props.params import init_params

u = rounding.UNIT_ROUNDOFF


def test_gamma():
    assert rounding.gamma(0) == 0 and rounding.gamma(1) > u and rounding.gamma(10) < 10 * u * (1 + 1e-14)
    with pytest.raises(ValueError, match="n must satisfy"):
        rounding.gamma(2**53)


def test_dot_error_bound_against_exact_rational_arithmetic():
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for n in (2, 7, 64, 1000):
        x, y = torch.randn(n, generator=gen, dtype=torch.float64), torch.randn(n, generator=gen, dtype=torch.float64)
        exact = sum(Fraction(a) * Fraction(b) for a, b in zip(x.tolist(), y.tolist(), strict=False))
        err = abs(Fraction(float(x @ y)) - exact)
        bound = float(rounding.dot_error_bound(x, y))
        assert err <= bound
        worst = max(worst, float(err) / bound)
        # perturbed pipelines (fixed seed): the same dot in float32, and x scaled by 1 + 1e-9
        assert abs(Fraction(float(x.float() @ y.float())) - exact) > bound, n
        assert abs(Fraction(float((x * (1 + 1e-9)) @ y)) - exact) > bound, n
    assert worst > 1e-4, worst  # not vacuous


def test_gamma_is_tight_for_recursive_summation():
    """γ_n on c0.gamma_witness: the error (n − 1)u exactly, within the bound, and (n − 1)/n of it (a γ_n half
    as large, the mutant `gamma-nu/2`, is refuted; one 10× looser fails the tightness share)."""
    for n in c0.GAMMA_WITNESS_LENGTHS:
        err, bound = c0.gamma_witness(n)
        assert err == (n - 1) * Fraction(u) and err <= bound, n
        assert float(err) / bound > (n - 1) / n * (1 - 2 * n * u), n
    assert all(r.holds for r in c0.gamma_checks())
    assert max(float(e) / (10 * b) for e, b in map(c0.gamma_witness, c0.GAMMA_WITNESS_LENGTHS)) < c0.GAMMA_TIGHT_SHARE


# ---- RoPE bounds (C0.1) ---------------------------------------------------------------------------


# ---- gradient and objective bounds (C0.3, C0.4) ---------------------------------------------------


def test_forward_error_bounds_are_batched_like_forward():
    cfg = ModelConfig(vocab=4, d_model=5, d_head=2, n_heads=2, pos="t5", attention="causal")
    params = init_params(cfg, 0)
    batch = torch.tensor([[4, 0, 1], [2, 4, 3]])
    b = rounding.forward_error_bounds(params, cfg, batch)
    out = forward(params, cfg, batch)
    assert b["scores"].shape == out.scores.shape and b["logits"].shape == out.logits.shape
    for row in range(2):
        single = rounding.forward_error_bounds(params, cfg, batch[row])
        assert all(torch.allclose(b[k][row], single[k], rtol=1e-12, atol=0) for k in single)
