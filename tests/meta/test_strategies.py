"""The strategies promise valid, non-degenerate examples, shrink to small ones, and a seed
determines the parameters."""

import functools

import torch
from hypothesis import find, given
from hypothesis import strategies as st

from mdm_props import strategies
from mdm_props.model import ATTENTIONS, POSITIONAL_ENCODINGS


@given(case=strategies.cases(pos=st.sampled_from(POSITIONAL_ENCODINGS),
                             attention=st.sampled_from(ATTENTIONS)))
def test_cases_are_valid_under_h_orth(case):
    cfg = case.cfg
    assert case.orthonormal and cfg.d_model >= cfg.vocab + 1
    _check_case(case)


@given(case=strategies.cases(pos=st.sampled_from(POSITIONAL_ENCODINGS), orthonormal=False))
def test_cases_are_valid_without_h_orth(case):
    _check_case(case)


def _check_case(case):
    cfg, t = case.cfg, case.template
    if cfg.pos == "rope":
        assert cfg.d_head % 2 == 0
    assert case.A != case.B and 0 <= case.A < cfg.vocab and 0 <= case.B < cfg.vocab
    assert case.A not in t.fillers and case.B not in t.fillers
    assert all(0 <= f < cfg.vocab for f in t.fillers) and len(t.fillers) == t.length - 2
    assert 0 <= t.a < t.b < t.length <= cfg.max_len
    t.check_tokens(cfg.vocab, case.A, case.B)  # the package's own validation agrees


@given(cfg=strategies.configs(orthonormal=True, max_d_model=6, max_vocab=8))
def test_max_d_model_caps_d_model_but_never_below_vocab_plus_one_under_h_orth(cfg):
    assert cfg.vocab + 1 <= cfg.d_model <= max(6, cfg.vocab + 1)


@given(cfg=strategies.configs(max_d_model=5))
def test_max_d_model_caps_d_model(cfg):
    assert 2 <= cfg.d_model <= 5


@functools.lru_cache(maxsize=None)
def _smallest_case_with_vocab_at_least(v: int):
    return find(strategies.cases(), lambda c: c.cfg.vocab >= v)


def test_shrinking_goes_to_the_smallest_case():
    """find() shrinks to the boundary of the condition (vocab 4, not more) and to the smallest
    everything else: d_model = vocab + 1 (H-orth), d_head 2, one head, RoPE, seed 0, scale 1, A=0, B=1."""
    case = _smallest_case_with_vocab_at_least(4)
    cfg = case.cfg
    assert (cfg.vocab, cfg.d_model, cfg.d_head, cfg.n_heads, cfg.pos) == (4, 5, 2, 1, "rope")
    assert (case.seed, case.scale, case.A, case.B) == (0, 1.0, 0, 1)
    assert case.template.length == 3  # canonical-sized template


def test_template_shrinks_to_the_canonical_a_r_b():
    case = _smallest_case_with_vocab_at_least(4)
    assert (case.template.a, case.template.b, case.template.fillers) == (0, 2, (2,))


@given(case=strategies.cases(pos=st.sampled_from(POSITIONAL_ENCODINGS), orthonormal=False))
def test_same_seed_same_params_and_another_seed_other_params(case):
    p, q = case.params(), case.params()
    assert p.keys() == q.keys() and all(torch.equal(p[k], q[k]) for k in p)
    other = strategies.Case(case.cfg, (case.seed + 1) % strategies.MAX_SEED, case.scale, case.orthonormal,
                            case.template, case.A, case.B).params()
    assert not torch.equal(p["W_Q"], other["W_Q"])
    assert all(v.dtype == torch.float64 for v in p.values())
