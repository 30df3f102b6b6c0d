"""C3v: C3 for a separate value path W_O W_V with orthogonal W_O — the worked example of
docs/index.md ("How to add a claim"). Kind: per draw under H-rel + H-orth + H-bi + H-Oorth."""

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdm_props import batched, storage, strategies
from mdm_props.checks import assert_holds
from mdm_props.claims import c3v_separate_value_path as c3v


def _factored(case, device):
    cfg = c3v.separate_value_config(case.cfg)
    return c3v.orthogonal_output(dataclasses.replace(case, cfg=cfg).params(device), cfg, case.seed), cfg


@pytest.mark.claim("C3v")
@given(case=strategies.cases(n_heads=st.sampled_from(strategies.N_HEADS)))
def test_value_gradients_align_exactly_as_in_c3(batch_draws, device, case):
    """⟨G^V_f, G^V_r⟩ equals C3's product within the derived bound and is > 0, for every relative
    encoding and 1–3 heads."""
    assert_holds(c3v.check_c3v_batch(batched.batch_from_case(case, batch_draws), device).selected())


@pytest.mark.claim("C3v")
def test_runner_holds_and_is_deterministic():
    first = c3v.run_c3v(5, 3)
    assert_holds(first)
    assert [r.observed for r in first] == [r.observed for r in c3v.run_c3v(5, 3)]


@pytest.mark.negative_control("C3v")
def test_a_gaussian_low_rank_output_matrix_gives_a_negative_inner_product():
    cx = c3v.c3v_gaussian_output(200, 0)
    assert cx.found and cx.observed < 0, str(cx)


@pytest.mark.meta("C3v")
def test_checker_rejects_a_value_gradient_moved_by_ten_bounds(monkeypatch):
    """Meta-test: scaling G^V_f by (1 + 10 t/⟨G^V_f, G^V_r⟩) moves the inner product by exactly ten
    tolerances t, which the identity must reject (error/tolerance ≈ 10)."""
    case = strategies.sample_case(__import__("random").Random(1), n_heads=(1,))
    params, cfg = _factored(case, "cpu")
    honest = c3v.check_c3v(params, cfg, case.template, case.A, case.B)
    assert all(r.holds for r in honest)
    real, calls = storage.parameter_gradient, []

    def corrupted(p, c, q, name):
        G = real(p, c, q, name)
        calls.append(q)
        if len(calls) % 2:  # the forward query's gradient
            return G * (1 + 10 * honest[0].tolerance / honest[0].observed)
        return G

    monkeypatch.setattr(storage, "parameter_gradient", corrupted)  # the per-draw backend's gradient
    bad = c3v.check_c3v(params, cfg, case.template, case.A, case.B)
    assert not bad[0].holds and 9 < bad[0].error_ratio < 11, str(bad[0])
