"""A checker used outside its hypotheses says so (status ``not-applicable``, with the reason), never
``holds``: H-orth (Gram defect of E beyond rounding), H-rel (absolute positions), H-bi (causal
attention), H-Oorth (C3v's W_O); the negative controls still reach the raw comparisons."""

import dataclasses
import math
import random

import pytest
import torch

from mdm_props import checks, rounding, strategies
from mdm_props.claims import c1_reusable_evidence as c1
from mdm_props.claims import c3_aligned_storage as c3
from mdm_props.claims import c3v_separate_value_path as c3v
from mdm_props.claims import c4_reverse_loss_decrease as c4
from mdm_props.facts import canonical_template
from mdm_props.model import ModelConfig
from mdm_props.params import init_params
from mdm_props.storage import unmet_hypotheses

T = canonical_template(2)
STORAGE = {
    "C1b": lambda *a: c1.check_c1b(*a, 0.1),
    "C1c": lambda *a: c1.check_c1c(*a, 0.1),
    "C3": c3.check_c3,
    "C4a": c4.check_c4a,
}


def _draw(orthonormal=True, **cfg):
    cfg = ModelConfig(**{"vocab": 5, "d_model": 8, "d_head": 4, **cfg})
    return init_params(cfg, 3, orthonormal=orthonormal), cfg


def _assert_not_applicable(results, hypothesis):
    assert len(results) == 1, [str(r) for r in results]
    (r,) = results
    assert r.status == "not-applicable" and not r.holds and hypothesis in r.reason, str(r)
    assert "not-applicable" in str(r)


@pytest.mark.parametrize("claim", sorted(STORAGE))
@pytest.mark.parametrize(
    "dropped, draw",
    [
        ("H-orth", dict(orthonormal=False)),
        ("H-rel", dict(pos="absolute")),
        ("H-bi", dict(attention="causal")),
    ],
)
def test_storage_checkers_refuse_draws_outside_their_hypotheses(claim, dropped, draw):
    """Before: check_c3 on Gaussian embeddings reported its identity as holding (the Gram defect folded
    into the tolerance, 9–114× the value)."""
    params, cfg = _draw(**draw)
    _assert_not_applicable(STORAGE[claim](params, cfg, T, 0, 1), dropped)


def test_c1a_refuses_absolute_positions_only():
    params, cfg = _draw(pos="absolute")
    _assert_not_applicable(c1.check_c1a(params, cfg, T, 0, 1), "H-rel")
    params, cfg = _draw(orthonormal=False)  # C1a needs H-rel only
    assert all(r.status == "holds" for r in c1.check_c1a(params, cfg, T, 0, 1))


@pytest.mark.parametrize("how", ["gaussian square W_O", "d_head < d_model"])
def test_c3v_refuses_a_non_orthogonal_output_matrix(how):
    case = strategies.sample_case(random.Random(2), n_heads=(1,))
    cfg = c3v.separate_value_config(case.cfg)
    if how == "d_head < d_model":
        cfg = dataclasses.replace(cfg, d_head=2)
        params = init_params(cfg, case.seed, orthonormal=True)
    else:
        params = init_params(cfg, case.seed, orthonormal=True)  # Gaussian W_O, square
    _assert_not_applicable(c3v.check_c3v(params, cfg, case.template, case.A, case.B), "H-Oorth")


def test_a_tiny_departure_from_orthonormality_is_still_applicable_and_a_large_one_is_not():
    """The limit 1e3·d·u (rounding.gram_defect_limit): E moved by 1e-14 relative stays applicable (and the
    claim holds, its tolerance carrying ω), E moved by 1e-9 is refused."""
    params, cfg = _draw()
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(params["E"].shape, generator=gen, dtype=torch.float64)
    small = {**params, "E": params["E"] + 1e-14 * noise}
    assert all(r.status == "holds" for r in c3.check_c3(small, cfg, T, 0, 1))
    large = {**params, "E": params["E"] + 1e-9 * noise}
    _assert_not_applicable(c3.check_c3(large, cfg, T, 0, 1), "H-orth")


def test_orthonormal_draws_are_far_inside_the_limit_and_gaussian_ones_far_outside():
    """Measured over 100 strategy draws: ω ≤ 10 d u for orthonormal rows (the limit allows 1000 d u), and
    ω > 1e-3 for Gaussian rows."""
    rng = random.Random(0)
    for _ in range(100):
        case = strategies.sample_case(rng)
        assert rounding.gram_defect(case.params()["E"]) <= 10 * case.cfg.d_model * rounding.UNIT_ROUNDOFF
        assert not unmet_hypotheses(case.params(), case.cfg)
        bad = dataclasses.replace(case, orthonormal=False)
        assert rounding.gram_defect(bad.params()["E"]) > 1e-3


def test_not_applicable_results_are_neither_holding_nor_violated():
    r = checks.not_applicable("meta-test", "q", "H-orth fails: test")
    assert r.status == "not-applicable" and not r.holds and math.isnan(r.error_ratio) and not r.applicable
    s = checks.summarize([r, checks.identity("meta-test", "a", 1.0, 1.0, 1e-15)])
    assert s["not_applicable"] == 1 and not s["holds"] and s["worst_margin"] == 1.0
    with pytest.raises(AssertionError, match="not-applicable"):
        checks.assert_holds([r])
    with pytest.raises(ValueError, match="status"):
        checks.CheckResult("C3", "q", 1.0, 1.0, "==", 0.0, 1.0, 1.0, True, {}, "maybe")
    with pytest.raises(ValueError, match="contradicts"):
        checks.CheckResult("C3", "q", 1.0, 1.0, "==", 0.0, 1.0, 1.0, True, {}, "violated")
    with pytest.raises(ValueError, match="reason"):
        checks.not_applicable("C3", "q", "")


def test_the_raw_comparisons_still_run_outside_the_hypotheses():
    """The negative controls read the comparisons whatever the hypotheses: C1a's forced-attention
    identity fails under absolute positions."""
    cx = c1.c1a_absolute(20, 0)
    assert cx.found, str(cx)
    case = dict(cx.example)
    from mdm_props.search import case_from_description

    c = case_from_description(case)
    assert c.cfg.pos == "absolute"
    assert not c1.c1a_comparisons(c.params(), c.cfg, c.template, c.A, c.B)[-1].holds
    _assert_not_applicable(c1.check_c1a(c.params(), c.cfg, c.template, c.A, c.B), "H-rel")
