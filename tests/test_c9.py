"""C9: the reverse query of a k-token fact is the forward query of the order-reversed fact at the reflected
route Φθ, at any depth (THEORY §2c). Kind: identity, checked per draw within the derived first-order
error bounds of both float64 evaluations (C5's: the adjoint bound for log p, the running radii for
gradients); C9b: Φ fixes the storage, so the storage gradients of the reverse query and of the
order-reversed forward configuration are equal."""

import random

import pytest
import torch
from hypothesis import given, settings

from mdm_props import strategies
from mdm_props.checks import assert_holds, summarize
from mdm_props.claims import c5_reflected_route as c5
from mdm_props.claims import c9_entities as c9
from mdm_props.facts import EntityTemplate, entity_reverse_queries, reversed_forward_queries
from mdm_props.model import ModelConfig, preset
from mdm_props.params import init_params


@pytest.mark.claim("C9")
@pytest.mark.claim("C9b")
@settings(max_examples=min(settings().max_examples, 30))  # ~0.3 s a draw (k·V adjoint passes a side)
@given(case=strategies.chosen(c9.entity_case))
def test_c9_reverse_query_is_the_order_reversed_forward_query_at_the_reflected_route(device, case):
    """For every j, log p(·|B r [M]^k; k+m+j−1; θ) = log p(·|[M]^k r rev(B); k−j; Φθ), and
    ∇_S L_r(θ) = ∇_S L_f̄(Φθ): k = 1…4, palindromic relations of m = 1…3 tokens, depth 1–3, every relative
    encoding and pairing, norms, SwiGLU, GQA, biases, and the llada-/smdm-like presets."""
    args = case.args(device)
    assert_holds(c9.check_c9(*args) + c9.check_c9b(*args))


@pytest.mark.claim("C9")
@pytest.mark.claim("C9b")
@pytest.mark.parametrize("name", ["llada-like", "smdm-like"])
@pytest.mark.parametrize("k, relation", [(2, (2,)), (3, (2, 3, 2))])
def test_c9_holds_for_the_presets(name, k, relation):
    cfg = preset(name)  # 3 layers
    A, B = (0, 1, 4)[:k], (5, 6, 7)[:k]
    args = (init_params(cfg, 7), cfg, EntityTemplate(k, relation), A, B)
    assert_holds(c9.check_c9(*args) + c9.check_c9b(*args))


@pytest.mark.claim("C9")
def test_for_one_token_c9_is_c5():
    """k = 1: the same two log-probability vectors as C5 on "A r1 r2 r1 B" (C5's mirror template)."""
    cfg = preset("llada-like", n_layers=2)
    params = init_params(cfg, 3)
    (r9,) = c9.check_c9(params, cfg, EntityTemplate(1, (2, 3, 2)), (0,), (1,))
    r5 = c5.check_c5(params, cfg, c5.mirror_template(5, 0, (2, 3)), 0, 1)[0]
    assert r9.holds and r5.holds
    assert (r9.observed, r9.reference, r9.tolerance) == (r5.observed, r5.reference, r5.tolerance)


@pytest.mark.claim("C9")
@pytest.mark.claim("C9b")
def test_c9_runners_hold_and_are_deterministic():
    first = c9.run_c9(3, 2, "cpu")
    assert summarize(first)["holds"] and {r.claim for r in first} == {"C9"} and len(first) == 3
    assert [r.observed for r in first] == [r.observed for r in c9.run_c9(3, 2, "cpu")]
    assert all("draw" in r.details for r in first)
    second = c9.run_c9b(2, 2, "cpu")
    assert summarize(second)["holds"] and {r.claim for r in second} == {"C9b"}


def test_unreversed_map_is_exact_without_positions():
    """Under ``none`` the unreversed map holds too (attention is permutation-equivariant and the masks are
    alike), which is why its negative control draws rope and t5 only."""
    cfg = ModelConfig(vocab=6, d_model=8, d_head=4, n_heads=2, n_layers=2, pos="none", norm="rms", mlp="swiglu")
    args = (init_params(cfg, 1), cfg, EntityTemplate(3, (5,)), (0, 1, 2), (2, 3, 4))
    assert c9.check_c9(*args, forward_map="unreversed")[0].holds
    rope = ModelConfig(vocab=6, d_model=8, d_head=4, n_heads=2, n_layers=2, pos="rope")
    args = (init_params(rope, 1), rope, EntityTemplate(3, (5,)), (0, 1, 2), (2, 3, 4))
    assert c9.check_c9(*args)[0].holds and not c9.check_c9(*args, forward_map="unreversed")[0].holds


# ---------------------------------------------------------------------------------------------
# meta-tests: the derived tolerances resolve a few bounds


def _first_rejected(side_error, tolerance):
    """The first perturbation δ = 2^−60 … 2^−1 whose error exceeds the tolerance: (δ, error/tolerance)."""
    for e in range(60, 0, -1):
        delta = 2.0**-e
        error = side_error(delta)
        if error > tolerance:
            return delta, error / tolerance
    raise AssertionError("no perturbation up to 1/2 was rejected")


@pytest.mark.meta("C9")
def test_the_log_p_tolerance_rejects_a_value_a_few_bounds_off():
    """Scale the forward side's W_V by 1 + δ (an input moved, the pipeline recomputes both the value and its
    adjoint bound): unperturbed the identity holds; doubling δ from 2^−60, the first δ rejected puts the
    error within 4 tolerances (a value a few bounds off is rejected), and the tolerance is below 1e-11 of
    log p (it resolves 1e-11 relative changes)."""
    cfg = preset("llada-like", n_layers=2)
    params, template, A, B = init_params(cfg, 5), EntityTemplate(3, (2, 3, 2)), (0, 1, 4), (5, 6, 7)
    rq = entity_reverse_queries(template, A, B, cfg.vocab)
    fq = reversed_forward_queries(template, A, B, cfg.vocab)
    lhs, e_lhs = c9.logprob_state(params, cfg, rq[0].tokens, [q.slot for q in rq])
    phi = c5.reflect(params, cfg, template.length)

    def error(delta):
        rhs, e_rhs = c9.logprob_state({**phi, "W_V": phi["W_V"] * (1 + delta)}, cfg, fq[0].tokens, [q.slot for q in fq])
        return float(((lhs - rhs).abs() / (e_lhs + e_rhs)).max())

    assert error(0.0) <= 1
    delta, ratio = _first_rejected(error, 1.0)
    assert 1 < ratio <= 4, (delta, ratio)
    assert bool((e_lhs < 1e-11 * lhs.abs()).all())


@pytest.mark.meta("C9b")
def test_the_storage_gradient_tolerance_rejects_a_value_a_few_bounds_off():
    """The same for C9b's running radii: the forward side's W_V scaled by 1 + δ moves ∇_S L_f̄; the first δ
    rejected is within 4 tolerances of the identity."""
    cfg = ModelConfig(
        vocab=6, d_model=8, d_head=4, n_heads=2, n_layers=2, pos="t5", norm="rms", mlp="swiglu", merged_ov=False
    )
    params, template, A, B = init_params(cfg, 2), EntityTemplate(2, (5, 5)), (0, 1), (2, 3)
    S = c5.value_read_parameters(cfg)
    rq = entity_reverse_queries(template, A, B, cfg.vocab)
    fq = reversed_forward_queries(template, A, B, cfg.vocab)
    g_r, e_r = c9.storage_gradient_state(params, cfg, rq[0].tokens, [q.slot for q in rq], A, S)
    phi = c5.reflect(params, cfg, template.length)

    def error(delta):
        p = {**phi, "W_V": phi["W_V"] * (1 + delta)}
        g_f, e_f = c9.storage_gradient_state(p, cfg, fq[0].tokens, [q.slot for q in fq], [q.target for q in fq], S)
        return float(((g_r - g_f).abs() / (e_r + e_f).clamp_min(c9.TINY)).max())

    assert error(0.0) <= 1
    delta, ratio = _first_rejected(error, 1.0)
    assert 1 < ratio <= 4, (delta, ratio)


# ---------------------------------------------------------------------------------------------
# negative controls: each an O(1) defect (c9.O1_DEFECT) found by search


@pytest.mark.negative_control("C9")
def test_the_unreversed_map_fails_under_rope_and_t5(device):
    """The reverse query is not the forward query of the configuration forward training sees."""
    cx = c9.c9_unreversed(10, 0, device)
    assert cx.found and cx.observed >= c9.O1_DEFECT and cx.example["ratio"] > 1, str(cx)
    assert cx.example["pos"] in ("rope", "t5") and cx.example["k"] >= 2


@pytest.mark.negative_control("C9b")
def test_the_storage_read_is_not_the_storage_forward_training_writes(device):
    cx = c9.c9b_unreversed(10, 0, device)
    assert cx.found and cx.observed >= c9.O1_DEFECT and cx.example["ratio"] > 1, str(cx)
    assert cx.example["pos"] in ("rope", "t5") and cx.example["k"] >= 2


@pytest.mark.negative_control("C9")
def test_a_non_palindromic_relation_breaks_the_identity(device):
    cx = c9.c9_non_palindromic(10, 0, device)
    r = cx.example["relation"]
    assert cx.found and cx.observed >= c9.O1_DEFECT and r != tuple(reversed(r)), str(cx)


@pytest.mark.negative_control("C9")
def test_readout_offset_one_maps_the_reverse_query_to_another_forward_slot(device):
    """Dream's offset: the offset-0 map (slot k − j) fails; the map to slot k − j + 2 holds on the same draw."""
    cx = c9.c9_readout_offset(10, 0, device)
    assert cx.found and cx.observed >= c9.O1_DEFECT and cx.example["readout_offset"] == 1, str(cx)
    k = cx.example["k"]
    assert cx.example["maps_holds"] and cx.example["maps_to_forward_slots"] == tuple(k - j + 2 for j in range(1, k + 1))


@pytest.mark.negative_control("C9")
def test_causal_attention_breaks_the_identity(device):
    cx = c9.c9_causal(10, 0, device)
    assert cx.found and cx.observed >= c9.O1_DEFECT and cx.example["attention"] == "causal", str(cx)


def test_negative_controls_are_registered():
    assert {n.id for n in c9.NEGATIVE_CONTROLS} == {
        "C9~unreversed",
        "C9b~unreversed",
        "C9~non-palindromic",
        "C9~readout-offset",
        "C9~causal",
    }


def test_entity_case_draws_satisfy_the_hypotheses():
    rng = random.Random(0)
    cases = [c9.sample_entity_case(rng) for _ in range(60)]
    assert all(c.template.palindromic and c.cfg.relative and c.cfg.readout_offset == 0 for c in cases)
    assert all(1 <= c.cfg.n_layers <= 3 and 1 <= c.template.k <= 4 and 1 <= c.template.m <= 3 for c in cases)
    assert {c.block for c in cases} == set(c9.BLOCKS) and {c.template.k for c in cases} == {1, 2, 3, 4}
    assert not c9.sample_entity_case(rng, palindromic=False).template.palindromic


def test_entity_case_fits_the_fixed_schema():
    """At most strategies.CHOICES choices whatever is drawn (strategies.chosen refuses more)."""
    rng = random.Random(1)
    counts = []

    def choose(options):
        counts[-1] += 1
        return rng.choice(tuple(options))

    for _ in range(300):
        counts.append(0)
        c9.entity_case(choose, 0)
    assert max(counts) <= strategies.CHOICES


def test_verify_selects_c9_alone():
    from mdm_props import registry

    assert [c.id for c in registry.select(["C9"])] == ["C9"]
    assert [c.id for c in registry.select(["C9b"])] == ["C9b"]
    assert {n.claim for n in registry.get("C9").negative_controls()} == {"C9"}


def test_bad_input_is_refused():
    cfg = ModelConfig(vocab=5, d_model=8, d_head=4)
    args = (init_params(cfg, 0), cfg, EntityTemplate(2, (4,)), (0, 1), (1, 2))
    with pytest.raises(ValueError, match="forward_map must be one of"):
        c9.check_c9(*args, forward_map="mirror")
    with pytest.raises(ValueError, match="forward_slots must hold 2 positions"):
        c9.check_c9(*args, forward_slots=(0, 5))
    with pytest.raises(ValueError, match="A must be a tuple of k = 2"):
        c9.check_c9b(*args[:3], (0,), (1, 2))
    with pytest.raises(ValueError, match="draws"):
        c9.run_c9(0, 0)
    with pytest.raises(ValueError, match="seed"):
        c9.run_c9b(1, -1)
    assert torch.equal(torch.tensor(c9.dream_forward_slots(EntityTemplate(3, (4,)))), torch.tensor([4, 3, 2]))
