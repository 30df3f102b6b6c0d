"""C9: the reverse query of a k-token fact is the forward query of the order-reversed fact at the reflected
route Φθ, at any depth (THEORY §2c). Kind: identity, checked per draw within the derived first-order
error bounds of both float64 evaluations (C5's: the adjoint bound for log p, the running radii for
gradients); C9b: Φ fixes the storage, so the storage gradients of the reverse query and of the
order-reversed forward configuration are equal."""

import json
import random
import re

import pytest
import torch
from hypothesis import given, settings

from mdm_props import strategies
from mdm_props.checks import assert_holds, summarize
from mdm_props.claims import c5_reflected_route as c5
from mdm_props.claims import c9_entities as c9
from mdm_props.claims import deep_batches
from mdm_props.facts import EntityTemplate, entity_reverse_queries, reversed_forward_queries
from mdm_props.model import ModelConfig, forward, preset
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
    assert (r9.observed, r9.reference) == (r5.observed, r5.reference)
    # the bound: C9's batched adjoint engine (vmap) and C5's per-draw one evaluate one formula; their sums may
    # round apart in the last bits on some CPUs (seen on AVX-512), a bound's rounding, not the claim's
    assert r9.tolerance == pytest.approx(r5.tolerance, rel=1e-12)


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
    lhs, e_lhs = deep_batches.logprob_state(params, cfg, rq[0].tokens, [q.slot for q in rq])
    phi = c5.reflect(params, cfg, template.length)

    def error(delta):
        moved = {**phi, "W_V": phi["W_V"] * (1 + delta)}
        rhs, e_rhs = deep_batches.logprob_state(moved, cfg, fq[0].tokens, [q.slot for q in fq])
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
    g_r, e_r = deep_batches.storage_gradient_state(params, cfg, rq[0].tokens, [q.slot for q in rq], A, S)
    phi = c5.reflect(params, cfg, template.length)

    def error(delta):
        p = {**phi, "W_V": phi["W_V"] * (1 + delta)}
        targets = [q.target for q in fq]
        g_f, e_f = deep_batches.storage_gradient_state(p, cfg, fq[0].tokens, [q.slot for q in fq], targets, S)
        return float(((g_r - g_f).abs() / (e_r + e_f).clamp_min(deep_batches.TINY)).max())

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


# ---------------------------------------------------------------------------------------------
# batched runners: K parameter draws of one structure at once, the same bounds draw by draw


@pytest.mark.meta("C9")
def test_the_batched_adjoint_bound_is_the_per_draw_adjoint_bound():
    """rounding_mode.adjoint_error_bounds_batch on K stacked draws gives, draw by draw, the bound of
    adjoint_error_bounds (same operations, rules and adjoint: equal to 1e-12 relative), and values within it."""
    from mdm_props.rounding_mode import adjoint_error_bounds, adjoint_error_bounds_batch

    for batch in c9.entity_batches(12, 4, size=3):
        c = batch.case
        rq = entity_reverse_queries(c.template, c.A, c.B, c.cfg.vocab)
        tok, at = torch.tensor(rq[0].tokens), torch.tensor([q.slot for q in rq])

        def fn(p, cfg=c.cfg, tok=tok, at=at):
            return torch.log_softmax(forward(p, cfg, tok, checked=True).logits[at], dim=-1)

        P = batch.params()
        values, bounds = adjoint_error_bounds_batch(fn, P)
        for i in range(batch.size):
            p = {n: v[i] for n, v in P.items()}
            value, bound = adjoint_error_bounds(lambda p=p: fn(p))
            assert bool(((bounds[i] - bound).abs() <= 1e-12 * bound).all()), c.cfg
            assert bool(((values[i] - value).abs() <= bounds[i] + bound).all()), c.cfg


@pytest.mark.meta("C9b")
def test_a_batched_draw_agrees_with_its_batch_of_one():
    """The runner's numbers for a draw (a batch of 4) and the per-draw checker's (a batch of one, what
    ``verify --replay`` runs): the gradients within the summed tolerance, the running radii within 1.5x
    of each other (measured up to 1.21x: vmap runs other kernels for another K; each bound is the radius of
    the computation it bounds)."""
    for batch in c9.entity_batches(16, 3, size=4):
        c = batch.case
        P = batch.params()
        rq = entity_reverse_queries(c.template, c.A, c.B, c.cfg.vocab)
        args = (rq[0].tokens, [q.slot for q in rq], [q.target for q in rq], c5.value_read_parameters(c.cfg))
        g, e = deep_batches.storage_gradient_state_batch(P, c.cfg, *args)
        for i in range(batch.size):
            g1, e1 = deep_batches.storage_gradient_state({n: v[i] for n, v in P.items()}, c.cfg, *args)
            assert bool(((g[i] - g1).abs() <= e[i] + e1).all())
            assert bool(((e[i] <= 1.5 * e1) & (e1 <= 1.5 * e[i])).all())


@pytest.mark.parametrize("seed", [0, 1, 2, 7])
def test_the_runners_cover_every_value_of_every_factor(seed):
    """verify's defaults (C9: 200 draws at seed s, C9b: 100 at s + 1) examine every k, m, depth 1–4,
    relative encoding, RoPE pairing, block (drawn, llada-like, smdm-like), head count, GQA ratio, norm,
    SwiGLU, bias and tying option; every batch shares one structure; the draws add up."""
    for draws, s in ((200, seed), (100, seed + 1)):
        batches = c9.entity_batches(draws, s)
        seen = set().union(*(c9._factors(b.case) for b in batches))
        assert c9.COVERAGE <= seen, sorted(c9.COVERAGE - seen, key=str)
        assert sum(b.size for b in batches) == draws and all(b.size <= c9.PER_STRUCTURE for b in batches)
        assert all(b.case.cfg.n_layers <= c9.RUN_MAX_LAYERS and b.case.template.palindromic for b in batches)
        for b in batches[:3]:  # stacked parameters are each draw's own
            P = b.params()
            for i in range(b.size):
                p = b.draw(i).params()
                assert all(torch.equal(P[n][i], p[n]) for n in p)


def test_runner_results_carry_a_replayable_draw():
    """One result per draw; each carries its full description, which recorded_case reads back to the draw."""
    results = c9.run_c9(10, 5)
    assert len(results) == 10 and all(r.holds for r in results)
    for r in results:
        case = c9.recorded_case(json.loads(json.dumps(r.details["draw"])))
        assert c9.describe(case) == r.details["draw"]


def test_recorded_case_round_trips_every_drawn_structure():
    """Whatever the runners draw, its description reads back to the same case (json: tuples become lists),
    and deep_case's options are those DRAWN_OPTIONS allows (the two stay in step)."""
    rng = random.Random(3)
    for _ in range(300):
        case = c9.sample_entity_case(rng, max_layers=c9.RUN_MAX_LAYERS)
        assert c9.recorded_case(json.loads(json.dumps(c9.describe(case)))) == case
        if case.block == "drawn":
            d = c9.describe(case)
            assert all(d[name] in options for name, options in c5.DRAWN_OPTIONS.items()), d


def _c9_draw(**fields):
    case = c9.sample_entity_case(random.Random(11), max_layers=c9.RUN_MAX_LAYERS, blocks=("drawn",), pos=("rope",))
    draw = {**json.loads(json.dumps(c9.describe(case))), **fields}
    return {k: v for k, v in draw.items() if v is not _DROP}


_DROP = object()
C9_REPLAY_BATTERY = [
    (_c9_draw(seed=_DROP), "the draw lacks seed"),
    (_c9_draw(args="this:s"), "the draw has fields a C9 draw does not: args"),
    (_c9_draw(block="huge"), "draw['block'] must be one of"),
    (_c9_draw(pos="absolute"), "draw['pos'] must be one of"),
    (_c9_draw(attention="causal"), "draw['attention'] must be one of"),
    (_c9_draw(n_layers=10**6), "draw['n_layers'] must be one of"),
    (_c9_draw(d_model=10**9), "draw['d_model'] must be one of"),
    (_c9_draw(tied=1), "draw['tied'] must be True or False"),
    (_c9_draw(scale=4.0), "draw['scale'] must be one of"),
    (_c9_draw(seed=-1), "draw['seed'] must be a non-negative integer"),
    (_c9_draw(k=9), "draw['k'] must be an integer"),
    (_c9_draw(relation=[0, 1]), "draw['relation'] must read the same backwards"),
    (_c9_draw(relation=[99]), "draw['relation'] token must be an integer in"),
    (_c9_draw(A="ab"), "draw['A'] must be a list of"),
    (_c9_draw(block="llada-like", n_layers=2), "is not the llada-like preset's"),
    ("a string", "the draw must be a JSON object"),
]


@pytest.mark.parametrize("draw, message", C9_REPLAY_BATTERY, ids=[m for _, m in C9_REPLAY_BATTERY])
def test_a_malformed_c9_draw_is_refused_by_the_cli_and_the_library(draw, message, tmp_path, capsys):
    from mdm_props import cli, search

    with pytest.raises(ValueError, match=re.escape(message)):
        search.replay("C9", draw)
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"claims": [{"id": "C9b", "draw": draw}]}))
    with pytest.raises(SystemExit) as exc:
        cli.main(["verify", "--replay", str(path), "C9b"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and "Traceback" not in err, err


def test_c9_rows_replay_from_a_verify_report(tmp_path, capsys):
    """Before: C9's rows recorded a partial draw (no scale, no structure) that replay refused."""
    from mdm_props import cli

    path = tmp_path / "report.json"
    assert cli.main(["verify", "--claims", "C9,C9b", "--examples", "10", "--seed", "4", "--json", str(path)]) == 0
    rows = {r["id"]: r for r in json.loads(path.read_text())["claims"]}
    capsys.readouterr()
    for cid in ("C9", "C9b"):
        assert cli.main(["verify", "--replay", str(path), cid]) == 0
        out = capsys.readouterr().out
        assert "replaying draw" in out and f"{cid} " in out and "holds" in out
        assert rows[cid]["draw"]["scale"] in deep_batches.DRAWN_SCALES
