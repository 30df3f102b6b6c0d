"""The strategies promise valid, non-degenerate examples, shrink to small ones, and a seed
determines the parameters."""

from random import Random

import pytest
import torch
from hypothesis import find, given, settings
from hypothesis import strategies as st

from mdm_props import layer_storage as deep
from mdm_props import strategies
from mdm_props.claims import c5_reflected_route as c5
from mdm_props.model import ATTENTIONS, POSITIONAL_ENCODINGS


@given(case=strategies.cases(pos=st.sampled_from(POSITIONAL_ENCODINGS), attention=st.sampled_from(ATTENTIONS)))
def test_cases_are_valid_under_h_orth(case):
    cfg = case.cfg
    assert case.orthonormal and cfg.d_model >= cfg.vocab + 1
    _check_case(case)


@given(case=strategies.cases(pos=st.sampled_from(POSITIONAL_ENCODINGS), orthonormal=False))
def test_cases_are_valid_without_h_orth(case):
    _check_case(case)


def _check_case(case):
    """What no constructor enforces (ModelConfig and Template check their own fields): the template
    fits the model and its tokens are valid for this vocabulary; the draw builds parameters."""
    cfg, t = case.cfg, case.template
    assert t.length <= cfg.max_len
    t.check_tokens(cfg.vocab, case.A, case.B)  # A ≠ B, real ids, neither a filler


@given(cfg=strategies.configs(orthonormal=True, max_d_model=6, max_vocab=8))
def test_max_d_model_caps_d_model_but_never_below_vocab_plus_one_under_h_orth(cfg):
    assert cfg.vocab + 1 <= cfg.d_model <= max(6, cfg.vocab + 1)


@given(cfg=strategies.configs(max_d_model=5))
def test_max_d_model_caps_d_model(cfg):
    assert 2 <= cfg.d_model <= 5


def test_find_returns_a_valid_case_that_meets_the_condition():
    """Shrinking is not guaranteed minimal (Hypothesis issue #1857): only what holds for every example
    is asserted of find()'s result — it meets the condition and is a valid case. (Before: the exact
    shrink result, fillers == (2,), was asserted and failed on some random seeds.)"""
    case = find(strategies.cases(), lambda c: c.cfg.vocab >= 4, settings=settings(database=None))
    assert case.cfg.vocab >= 4
    _check_case(case)


@given(case=strategies.cases(canonical=True, pos=st.sampled_from(POSITIONAL_ENCODINGS)))
def test_canonical_cases_use_the_a_r_b_template(case):
    """Every canonical draw is "A r B": length 3, slots 0 and 2, one filler distinct from A and B."""
    t = case.template
    assert (t.length, t.a, t.b, len(t.fillers)) == (3, 0, 2, 1)
    assert t.fillers[0] not in (case.A, case.B)


@given(case=strategies.cases(pos=st.sampled_from(POSITIONAL_ENCODINGS), orthonormal=False))
def test_same_seed_same_params_and_another_seed_other_params(case):
    p, q = case.params(), case.params()
    assert p.keys() == q.keys() and all(torch.equal(p[k], q[k]) for k in p)
    other = strategies.Case(
        case.cfg, (case.seed + 1) % strategies.MAX_SEED, case.scale, case.orthonormal, case.template, case.A, case.B
    ).params()
    assert not torch.equal(p["W_Q"], other["W_Q"])
    assert all(v.dtype == torch.float64 for v in p.values())


# ---------------------------------------------------------------------------------------------
# fixed schema (mdm_props.strategies module docstring; issue 15: Hypothesis's target phase spun on a
# misaligned splice). Read through Hypothesis's choice sequence (hypothesis.internal: the one place the
# choices of a draw are visible); the strategy of the C4b property test, the widest one in the suite.

FIXED_SCHEMA_STRATEGIES = {
    "C4b": st.booleans().flatmap(
        lambda o: strategies.cases(
            pos=st.sampled_from(POSITIONAL_ENCODINGS), orthonormal=o, n_heads=st.sampled_from(strategies.N_HEADS)
        )
    ),
    "small vocab, capped d_model": strategies.cases(
        pos=st.sampled_from(["rope", "t5"]), orthonormal=False, max_d_model=4, max_vocab=20
    ),
    "canonical": strategies.cases(canonical=True, pos=st.sampled_from(POSITIONAL_ENCODINGS)),
    "C5 deep": strategies.chosen(c5.deep_case),  # before (sampled_from each): v_bias and the filler count varied
    "C5 not mirrored": strategies.chosen(c5.deep_case, mirror=False),
    "C6/C8 storage": strategies.chosen(deep.storage_case, max_layers=3, orthonormal=False),
}


def _draw(strategy, *, seed=None, choices=None):
    """(status, misaligned, choices, schema) of one draw: from a random source or replaying ``choices``."""
    from hypothesis.errors import StopTest
    from hypothesis.internal.conjecture.data import ConjectureData

    data = ConjectureData(random=Random(seed)) if choices is None else ConjectureData.for_choices(choices)
    try:
        value = data.draw(strategy)
    except StopTest:
        value = None
    data.freeze()
    schema = [(n.type, sorted(n.constraints.items(), key=str)) for n in data.nodes]
    return data.status.name, data.misaligned_at is not None, data.choices, schema, value


@pytest.mark.parametrize("name", sorted(FIXED_SCHEMA_STRATEGIES))
def test_every_draw_makes_the_same_choices_and_any_splice_is_a_valid_draw(name):
    """Over 100 seeded draws the choice types and constraints are the same, and every splice of two
    draws' choices (a prefix of one, the rest of the other: what the target phase tries) replays as a
    valid draw without misalignment. The old strategy fails both (d_model ∈ [V + 1, V + 9], B ≠ A by a
    filter, a template-length-dependent number of fillers)."""
    strategy = FIXED_SCHEMA_STRATEGIES[name]
    draws = [_draw(strategy, seed=s) for s in range(100)]
    assert all(d[0] == "VALID" and not d[1] for d in draws)
    assert all(d[3] == draws[0][3] for d in draws), name
    rng = Random(0)
    for _ in range(100):
        (_, _, x, _, _), (_, _, y, _, _) = rng.sample(draws, 2)
        i = rng.randrange(len(x) + 1)
        status, misaligned, _, _, _ = _draw(strategy, choices=x[:i] + y[i:])
        assert status == "VALID" and not misaligned, (name, i, x, y)


def test_pick_is_uniform_for_small_option_counts_and_refuses_no_options():
    assert all(strategies.INDEX_MODULUS % n == 0 for n in range(1, strategies.INDEX_UNIFORM + 1))
    assert _draw(st.composite(lambda draw: strategies.pick(draw, "abc"))(), choices=(5,))[4] == "c"
    with pytest.raises(ValueError, match="options"):
        _draw(st.composite(lambda draw: strategies.pick(draw, []))(), choices=(0,))


def test_chosen_refuses_a_builder_that_makes_more_choices_than_it_drew():
    def greedy(choose, seed):
        return [choose((0, 1)) for _ in range(strategies.CHOICES + 1)]

    with pytest.raises(ValueError, match="more than CHOICES"):
        find(strategies.chosen(greedy), lambda _: True)
    with pytest.raises(ValueError, match="non-empty"):
        find(strategies.chosen(lambda choose, seed: choose(())), lambda _: True)
