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
from mdm_props.claims import deep_batches
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
    lhs, e_lhs = deep_batches.logprob_state(params, cfg, rq.tokens, [rq.slot])  # what check_c5 evaluates
    phi = c5.reflect(params, cfg, 3)
    for delta, rejected in ((0.0, False), (1e-10, True)):
        rhs, e_rhs = deep_batches.logprob_state({**phi, "W_V": phi["W_V"] * (1 + delta)}, cfg, fq.tokens, [fq.slot])
        error = float((lhs - rhs).abs().max())
        tolerance = e_lhs + e_rhs
        assert bool((tolerance < 1e-11 * lhs.abs()).all())
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


# ---------------------------------------------------------------------------------------------
# the batched runners (mdm_props.claims.deep_batches): the same quantities and bounds as the per-draw
# checker, every factor value covered, each row replayable


VALUES = (("lhs", "rhs", "tol"), ("g_r", "g_f", "tol_g"), ("s_r", "s_f", "tol_s"))


@pytest.mark.claim("C5")
@pytest.mark.claim("C5b")
def test_batched_quantities_are_the_per_draw_ones():
    """On the same draws, the batched quantities equal the per-draw checker's (a batch of one, what
    ``verify --replay`` runs) within the tolerance. log p's adjoint bound agrees to 1e-12 relative (draw by
    draw one formula; vmap's kernels for K draws and for one may sum in another order, so bitwise equality
    is not guaranteed, e.g. on AVX-512). The gradients' running radii are those of the kernels that run,
    which differ with K (as C9b's, tests/test_c9.py): within 1.5x of each other (measured up to 1.13x)."""
    batches = c5.c5_batches(24, 5, size=4)
    for batch in batches:
        c = batch.case
        values = c5.c5_quantities_batch(batch.params(), c.cfg, c.template, c.A, c.B)
        for i in range(batch.size):
            one = c5.c5_quantities(batch.draw(i).params(), c.cfg, c.template, c.A, c.B)
            for lhs, rhs, tol in VALUES:
                for key in (lhs, rhs):
                    assert ((values[key][i] - one[key][0]).abs() <= values[tol][i]).all(), (key, c.cfg)
                if tol == "tol":
                    torch.testing.assert_close(values[tol][i], one[tol][0], rtol=1e-12, atol=0.0)
                else:
                    e, e1 = values[tol][i], one[tol][0]
                    assert bool(((e <= 1.5 * e1) & (e1 <= 1.5 * e)).all()), (tol, c.cfg)
        # and the checker's verdicts on draw 0 are those of the batch
        per_draw = c5.check_c5(*batch.draw(0).args())
        batched = [ch.result(0) for ch in c5.evaluate_checks("C5", c5.C5_CHECKS, values)]
        assert [r.holds for r in per_draw[:2]] == [r.holds for r in batched]


@pytest.mark.claim("C5")
@pytest.mark.claim("C5b")
@pytest.mark.parametrize("claim", ["C5", "C5b"])
def test_default_draws_cover_every_factor_value(claim):
    """verify's default draws (at least 100) examine every relative encoding, both RoPE pairings, every
    head count and GQA ratio, each preset, depth 1–4, every template length and every on/off option."""
    from mdm_props import registry

    row = registry.get(claim)
    assert row.default_draws >= 100
    seed = 0 if claim == "C5" else 1  # run_c5b draws from seed + 1
    batches = c5.c5_batches(row.default_draws, seed)
    seen = set().union(*(c5._factors(b.case) for b in batches))
    assert c5.COVERAGE <= seen, sorted(c5.COVERAGE - seen)
    assert {b.case.block for b in batches} == set(c5.BLOCKS)
    assert all(c5.is_mirror_symmetric(b.case.template) for b in batches)


@pytest.mark.claim("C5")
def test_the_default_c5_row_catches_a_phi_that_reflects_only_the_queries(monkeypatch):
    """Mutation check (the mutant phi-queries-only, tests/mutation/mutants.py): Φ with J on W_Q but not
    on W_K no longer gives the scores at −δ; the C5 row at verify's default draws fails."""
    from mdm_props import registry

    original = c5.reflect

    def queries_only(params, cfg, length=None, *, absolute=True):
        out = original(params, cfg, length, absolute=absolute)
        return {**out, "W_K": params["W_K"]} if cfg.pos == "rope" else out

    monkeypatch.setattr(c5, "reflect", queries_only)
    rows = c5.run_c5(registry.get("C5").default_draws, 0)
    assert not summarize(rows)["holds"]
    assert any(not r.holds and r.details["draw"]["pos"] == "rope" for r in rows)


@pytest.mark.claim("C5")
@pytest.mark.claim("C5b")
def test_runner_rows_replay_their_draw():
    """Each runner row records its draw in full; the draw reads back as the same case (verify --replay)."""
    from mdm_props import search

    rows = c5.run_c5(8, 2) + c5.run_c5b(8, 2)
    worst = min(rows, key=lambda r: r.margin)
    case = c5.recorded_case(worst.details["draw"])
    assert c5.describe(case) == worst.details["draw"]
    replayed = search.replay(worst.claim, worst.details["draw"])
    match = [r for r in replayed if r.quantity == worst.quantity]
    assert match and match[0].observed == pytest.approx(worst.observed, abs=worst.tolerance)
    assert match[0].tolerance == pytest.approx(worst.tolerance, rel=1e-12)
    for batch in c5.c5_batches(16, 3):
        assert c5.recorded_case(c5.describe(batch.draw(1))) == batch.draw(1)


def test_recorded_draws_are_checked():
    case = c5.c5_batches(8, 4)[0].draw(0)
    good = c5.describe(case)
    bad_template = {**good, "template": [4, 0, 3, [2, 3]]}  # "A 2 3 B": not mirror-symmetric
    with pytest.raises(ValueError, match="template"):
        c5.recorded_case(bad_template)
    with pytest.raises(ValueError, match="lacks"):
        c5.recorded_case({k: v for k, v in good.items() if k != "A"})
    with pytest.raises(ValueError, match="scale"):
        c5.recorded_case({**good, "scale": 3.0})
    with pytest.raises(ValueError, match="phi and forward_slot"):
        c5.check_c5(*case.args(), parts=("logp",))
