"""The strategies promise valid, non-degenerate examples, shrink to small ones, and a seed
determines the parameters."""

import torch
from hypothesis import find, given, settings
from hypothesis import strategies as st

from mdm_props import strategies
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
