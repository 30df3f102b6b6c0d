"""C0.1: RoPE rotation facts, through model.rope_rotate and model.rope_matrix, within the derived
float64 bounds of mdm_props.tolerances (per-entry worst case)."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mdm_props import rounding, strategies
from mdm_props.checks import assert_holds
from mdm_props.claims import c0_oracles as c0
from mdm_props.model import rope_matrix, rope_rotate

d_heads = st.integers(1, 8).map(lambda h: 2 * h)
bases = strategies.rope_bases | st.floats(1.5, 1e6)
positions = st.integers(0, 15)
offsets = st.integers(-15, 15)


@pytest.mark.claim("C0.1")
@given(d_head=d_heads, base=bases, m=positions, n=positions, a=offsets, b=offsets, seed=strategies.seeds)
def test_rope_facts_hold_to_rounding(device, d_head, base, m, n, a, b, seed):
    """R_δ orthogonal, R_δᵀ = R_{−δ}, R_a R_b = R_{a+b}, (R_m q)ᵀ(R_n k) = qᵀR_{n−m}k."""
    results = c0.rope_checks(d_head, base, m, n, a, b, seed, device)
    assert len(results) == 4
    assert_holds(results)


@pytest.mark.claim("C0.1")
def test_rope_matrix_is_the_block_rotation_by_delta_theta():
    """rope_matrix(δ) has cos(δθ_l), ∓sin(δθ_l) in block l, θ_l = base^(−2l/d): checked against
    math.cos/math.sin within the entry bound (angle error + 2 ulp)."""
    import math

    d, base, delta = 6, 1e4, 3
    R = rope_matrix(delta, d, base)
    angle, e_angle = rounding.rope_angle_error(torch.tensor([float(delta)]), d, base)
    for l in range(d // 2):
        th = delta * base ** (-2 * l / d)
        block = torch.tensor([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]], dtype=torch.float64)
        tol = 2 * (e_angle[0, l] + rounding.FUNCTION_REL + 2 * rounding.UNIT_ROUNDOFF)
        assert (R[2 * l : 2 * l + 2, 2 * l : 2 * l + 2] - block).abs().max() <= tol
    assert (R - torch.block_diag(*[R[2 * l : 2 * l + 2, 2 * l : 2 * l + 2] for l in range(d // 2)])).abs().max() == 0


@given(d_head=d_heads, base=bases, m=positions, n=positions, seed=strategies.seeds)
def test_meta_wrong_rotation_direction_is_rejected(d_head, base, m, n, seed):
    """qᵀR_{m−n}k (the wrong direction) is NOT within the relativity bound of (R_m q)ᵀ(R_n k) when
    m ≠ n: the bound is tight enough to tell the direction apart."""
    from hypothesis import assume

    assume(m != n)
    gen = torch.Generator().manual_seed(seed)
    q, k = (
        torch.randn(d_head, generator=gen, dtype=torch.float64),
        torch.randn(d_head, generator=gen, dtype=torch.float64),
    )
    pos = torch.tensor([m, n])
    lhs = float(rope_rotate(q[None], pos[:1], base)[0] @ rope_rotate(k[None], pos[1:], base)[0])
    wrong = float(q @ rope_matrix(m - n, d_head, base) @ k)
    tol = c0.rope_relativity_bound(q, k, m, n, base)
    assert abs(lhs - wrong) > 3 * tol, (lhs, wrong, tol)


# ---------------------------------------------------------------------------------------------
# meta-tests: the checkers and their bounds on their own (the registry audit looks for them in this file)


@pytest.mark.meta("C0.1")
def test_rope_bounds_reject_perturbed_rotations():
    """Input perturbations of one part in 1e12 (a few hundred bounds, so a bound 10³× too loose lets them
    pass): sines scaled by 1 + 1e-12 leave R not orthogonal within the bound; R_{−5} computed at
    −5 + 1e-13 is not R_5ᵀ; R_3 R_{−7} is not R_{−4 + 1e-12}."""
    d, base = 8, 1e4
    R, Rn = rope_matrix(5, d, base), rope_matrix(-5, d, base)
    eye = torch.eye(d, dtype=torch.float64)
    assert ((R.T @ R - eye).abs() <= c0.rope_orthogonality_bound(R)).all()
    sloppy = R.clone()
    for l in range(d // 2):  # the off-diagonal sines of each block scaled by 1 + 1e-12
        sloppy[2 * l + 1, 2 * l] = R[2 * l + 1, 2 * l] * (1 + 1e-12)
        sloppy[2 * l, 2 * l + 1] = -sloppy[2 * l + 1, 2 * l]
    assert ((sloppy.T @ sloppy - eye).abs() > c0.rope_orthogonality_bound(sloppy)).any()
    assert ((R.T - Rn).abs() <= c0.rope_transpose_bound(R, Rn)).all()
    Rn_off = rope_matrix(-5 + 1e-13, d, base)  # ≈ 190 bounds
    assert ((R.T - Rn_off).abs() > c0.rope_transpose_bound(R, Rn_off)).any()
    Ra, Rb, Rab = rope_matrix(3, d, base), rope_matrix(-7, d, base), rope_matrix(-4, d, base)
    assert ((Ra @ Rb - Rab).abs() <= c0.rope_composition_bound(3, -7, d, base, Ra, Rb, Rab)).all()
    Rab_off = rope_matrix(-4 + 1e-12, d, base)
    assert ((Ra @ Rb - Rab_off).abs() > c0.rope_composition_bound(3, -7, d, base, Ra, Rb, Rab_off)).any()


@pytest.mark.meta("C0.1")
def test_rope_relativity_bound_is_tight_enough_to_see_a_tiny_angle_change():
    """Rotating block 0 by 3 + 1e-12 rad instead of 3 rad is rejected (the bound is ~4e-14 here)."""
    gen = torch.Generator().manual_seed(4)
    q, k = torch.randn(4, generator=gen, dtype=torch.float64), torch.randn(4, generator=gen, dtype=torch.float64)
    tol = c0.rope_relativity_bound(q, k, 2, 5, 1e4)
    import math

    th = 3.0 + 1e-12  # block 0 (θ_0 = 1), offset n − m = 3, angle off by 1e-12 rad
    k2 = torch.tensor([k[0] * math.cos(th) - k[1] * math.sin(th), k[0] * math.sin(th) + k[1] * math.cos(th)])
    wrong = float(q[:2] @ k2) + float(q[2:] @ (rope_matrix(3, 4, 1e4)[2:, 2:] @ k[2:]))
    right = float(q @ rope_matrix(3, 4, 1e4) @ k)
    assert abs(wrong - right) > tol and tol < 1e-13
