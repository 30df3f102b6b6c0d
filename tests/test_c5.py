"""C5: the reverse query is the forward query at the reflected route Φθ, at any depth (THEORY §2b).
Kind: identity, checked per draw within the derived first-order error bounds of both float64
evaluations (:mod:`mdm_props.rounding_mode`: the adjoint bound for log p, the running radii for
gradients); C5b: Φ fixes the storage, so the storage gradients are equal."""

import dataclasses

import pytest
import torch
from hypothesis import given

from mdm_props import strategies
from mdm_props.checks import assert_holds, summarize
from mdm_props.claims import c5_reflected_route as c5
from mdm_props.facts import Template, forward_query, reverse_query
from mdm_props.model import ModelConfig, preset, storage_parameters
from mdm_props.params import init_params


@pytest.mark.claim("C5")
@pytest.mark.claim("C5b")
@given(case=strategies.chosen(c5.deep_case))
def test_c5_reverse_query_is_the_forward_query_at_the_reflected_route(device, case):
    """log p_r(·|θ) = log p_f(·|Φθ), ∇L_r(θ) = Φ∇L_f(Φθ) and ∇_S L_r(θ) = ∇_S L_f(Φθ), depth 1–4, every
    relative encoding and pairing, norms, SwiGLU, GQA, biases, mirror-symmetric templates of length 3–7."""
    assert_holds(c5.check_c5(*case.args(device)))


@pytest.mark.claim("C5")
@pytest.mark.parametrize("name", ["llada-like", "smdm-like"])
def test_c5_holds_for_the_presets(name):
    cfg = preset(name)
    template = c5.mirror_template(5, 1, (2, 3))  # "x A y B x" with fillers 2, 3, 2
    assert_holds(c5.check_c5(init_params(cfg, 7), cfg, template, 0, 1))


@pytest.mark.claim("C5")
@pytest.mark.claim("C5b")
def test_c5_runners_hold_and_are_deterministic():
    first = c5.run_c5(2, 3, "cpu")
    assert summarize(first)["holds"] and {r.claim for r in first} == {"C5"}
    assert [r.observed for r in first] == [r.observed for r in c5.run_c5(2, 3, "cpu")]
    assert summarize(c5.run_c5b(2, 3, "cpu"))["holds"]


@pytest.mark.meta("C5")
@pytest.mark.meta("C5b")
def test_the_tolerance_rejects_a_perturbed_storage_parameter():
    """Meta-test: scale the forward side's W_V by 1 + 1e-10 (an input moved, the pipeline recomputes): the
    log-probability identity is then rejected by its derived tolerance; unperturbed it is accepted. The
    tolerance of log p is the adjoint first-order bound (within 50–700× of the 50-digit oracle's error,
    tests/meta/test_rounding_mode.py), below 1e-11 of log p here; the running radii it replaced needed a
    move of 1e-4 (their resolution was 1e-5 of log p on these 2 RMSNorm + SwiGLU layers)."""
    cfg = preset("llada-like", n_layers=2)
    params = init_params(cfg, 5)
    template = c5.mirror_template(3, 0, (2,))
    fq, rq = forward_query(template, 0, 1, cfg.vocab), reverse_query(template, 0, 1, cfg.vocab)
    r = c5.query_state(params, cfg, rq.tokens, rq.slot, 0)
    phi = c5.reflect(params, cfg, 3)
    for delta, rejected in ((0.0, False), (1e-10, True)):
        f = c5.query_state({**phi, "W_V": phi["W_V"] * (1 + delta)}, cfg, fq.tokens, fq.slot, 0)
        error = float((r["logp"] - f["logp"]).abs().max())
        tolerance = r["e_logp"] + f["e_logp"]
        assert bool((tolerance < 1e-11 * r["logp"].abs()).all())
        assert (error > float(tolerance.max())) == rejected, (delta, error, float(tolerance.max()))


def test_reflection_is_an_orthogonal_involution_fixing_the_storage():
    for pos in ("rope", "t5", "alibi", "none", "absolute"):
        cfg = ModelConfig(
            vocab=5,
            d_model=8,
            d_head=4,
            n_heads=2,
            n_layers=2,
            pos=pos,
            qk_bias=True,
            rope_pairing="half-split",
            norm="rms",
            mlp="swiglu",
            merged_ov=False,
            v_bias=True,
        )
        p = init_params(cfg, 1)
        phi = c5.reflect(p, cfg, 4)
        assert all(torch.equal(c5.reflect(phi, cfg, 4)[k], p[k]) for k in p)
        assert all(torch.equal(phi[k].norm(), p[k].norm()) for k in p)
        assert all(torch.equal(phi[k], p[k]) for k in storage_parameters(cfg))
        moved = {k for k in p if not torch.equal(phi[k], p[k])}
        assert (
            moved
            == {
                "rope": {"W_Q", "W_K", "b_Q", "b_K"},
                "t5": {"t5_bias"},
                "alibi": set(),
                "none": set(),
                "absolute": {"P"},
            }[pos]
        )


def test_mirror_templates():
    assert c5.is_mirror_symmetric(Template(3, 0, 2, (4,)))
    t = c5.mirror_template(7, 1, (5, 6, 7))
    assert c5.is_mirror_symmetric(t) and (t.a, t.b) == (1, 5) and t.sequence(-1, -2) == [5, -1, 6, 7, 6, -2, 5]
    assert not c5.is_mirror_symmetric(Template(4, 0, 3, (4, 5)))
    assert not c5.is_mirror_symmetric(Template(4, 0, 2, (4, 5)))
    with pytest.raises(ValueError, match="half_fillers"):
        c5.mirror_template(5, 0, (1,))
    with pytest.raises(ValueError, match="a must satisfy"):
        c5.mirror_template(4, 2, ())


def test_bad_input_is_refused():
    cfg = ModelConfig(vocab=5, d_model=8, d_head=4, pos="absolute", absolute_kind="sinusoidal")
    with pytest.raises(ValueError, match="absolute_kind must be 'learned'"):
        c5.reflect(init_params(cfg, 0), cfg, 3)
    cfg = ModelConfig(vocab=5, d_model=8, d_head=4)
    with pytest.raises(ValueError, match="phi must be one of"):
        c5.check_c5(init_params(cfg, 0), cfg, Template(3, 0, 2, (2,)), 0, 1, phi="mirror")
    with pytest.raises(ValueError, match="forward_slot"):
        c5.check_c5(init_params(cfg, 0), cfg, Template(3, 0, 2, (2,)), 0, 1, forward_slot=3)
    with pytest.raises(ValueError, match="draws"):
        c5.run_c5(0, 0)


# ---------------------------------------------------------------------------------------------
# negative controls


@pytest.mark.negative_control("C5")
def test_causal_attention_breaks_the_identity(device):
    cx = c5.c5_causal(5, 0, device)
    assert cx.found and cx.observed > 1 and cx.example["attention"] == "causal", str(cx)


@pytest.mark.negative_control("C5")
def test_readout_offset_one_maps_the_reverse_query_to_another_forward_conditional(device):
    """Dream's offset: the reverse query is not the forward query at Φθ, but it is exactly the forward
    conditional at slot a + 2 (the read-out of h_{a+1}, the mirror of h_{b−1})."""
    cx = c5.c5_readout_offset(5, 0, device)
    assert cx.found and cx.observed > 1 and cx.example["readout_offset"] == 1, str(cx)
    assert cx.example["maps_holds"] and cx.example["maps_to_forward_slot"] == cx.example["template"][1] + 2


@pytest.mark.negative_control("C5")
def test_a_non_mirror_template_breaks_the_identity(device):
    cx = c5.c5_non_mirror(5, 0, device)
    length, a, b, fillers = cx.example["template"]
    assert cx.found and cx.observed > 1 and (length, a, b) == (4, 0, 3) and fillers[0] != fillers[1], str(cx)


@pytest.mark.negative_control("C5")
def test_absolute_positions_without_reflecting_p_break_the_identity(device):
    cx = c5.c5_absolute_identity(5, 0, device)
    assert cx.found and cx.observed > 1 and cx.example["pos"] == "absolute", str(cx)


@pytest.mark.negative_control("C5b")
def test_absolute_positions_keep_the_loss_identity_but_not_the_storage(device):
    """Φ_abs reverses P: log p_r(·|θ) = log p_f(·|Φ_abs θ) still holds, but P is read by the value path."""
    cx = c5.c5b_absolute(5, 0, device)
    assert cx.found and cx.example["loss_identity_holds"] and cx.observed > 1, str(cx)


def test_negative_controls_are_registered():
    assert {n.id for n in c5.NEGATIVE_CONTROLS} == {
        "C5~causal",
        "C5~readout-offset",
        "C5~non-mirror",
        "C5~absolute-id",
        "C5b~absolute",
    }


def test_deep_case_draws_satisfy_the_hypotheses():
    import random

    rng = random.Random(0)
    for _ in range(50):
        case = c5.sample_deep_case(rng)
        assert c5.is_mirror_symmetric(case.template) and case.cfg.relative and case.cfg.readout_offset == 0
        assert 1 <= case.cfg.n_layers <= 4 and 3 <= case.template.length <= 7
    case = dataclasses.replace(c5.sample_deep_case(rng, mirror=False))
    assert not c5.is_mirror_symmetric(case.template)
