"""k-token facts (THEORY §2c): templates "A r B" with k-token entities and an m-token relation, the
forward configuration, the reverse query, rev and the order-reversed forward configuration; the
Hypothesis strategy and the seeded sampler that draw k and m. The single-token API is the k = 1 case."""

import random

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mdm_props import strategies
from mdm_props.facts import (
    EntityTemplate,
    Template,
    arm_entity_forward_queries,
    arm_entity_reverse_queries,
    arm_forward_query,
    arm_reverse_query,
    configuration_logprobs,
    entity_forward_loss,
    entity_forward_queries,
    entity_reverse_loss,
    entity_reverse_queries,
    forward_loss,
    forward_query,
    query_logprobs,
    rev,
    reverse_loss,
    reverse_query,
    reversed_forward_queries,
)
from mdm_props.model import ModelConfig
from mdm_props.params import init_params


def test_slots_and_targets_follow_theory():
    t = EntityTemplate(3, (7, 8, 7))  # "a1 a2 a3 r1 r2 r1 b1 b2 b3", T = 9
    A, B, V = (1, 2, 3), (4, 5, 6), 9
    assert (t.length, t.m, t.palindromic, list(t.a_slots), list(t.b_slots)) == (9, 3, True, [0, 1, 2], [6, 7, 8])
    fwd = entity_forward_queries(t, A, B, V)
    assert all(q.tokens == (9, 9, 9, 7, 8, 7, 4, 5, 6) for q in fwd)
    assert [(q.slot, q.target) for q in fwd] == [(0, 1), (1, 2), (2, 3)]  # a_j at slot j − 1
    rq = entity_reverse_queries(t, A, B, V)
    assert all(q.tokens == (4, 5, 6, 7, 8, 7, 9, 9, 9) for q in rq)
    assert [(q.slot, q.target) for q in rq] == [(6, 1), (7, 2), (8, 3)]  # a_j at slot k + m + j − 1
    bar = reversed_forward_queries(t, A, B, V)
    assert all(q.tokens == (9, 9, 9, 7, 8, 7, 6, 5, 4) for q in bar)  # [M]^k r rev(B)
    assert [(q.slot, q.target) for q in bar] == [(2, 1), (1, 2), (0, 3)]  # a_j at slot k − j
    # the reverse sequence read backwards is the order-reversed forward sequence, slot k+m+j−1 ↦ k−j
    assert all(b.tokens == rev(r.tokens) and b.slot == t.length - 1 - r.slot for r, b in zip(rq, bar, strict=True))
    assert rev([1, 2, 3]) == (3, 2, 1) and not EntityTemplate(2, (7, 8)).palindromic


def test_arm_queries_predict_the_next_token_from_the_prefix():
    t, A, B, V = EntityTemplate(2, (7,)), (1, 2), (4, 5), 9
    assert [(q.tokens, q.slot, q.target) for q in arm_entity_forward_queries(t, A, B, V)] == [
        ((1, 2, 7, 4, 5), 2, 4),
        ((1, 2, 7, 4, 5), 3, 5),
    ]
    assert [(q.tokens, q.slot, q.target) for q in arm_entity_reverse_queries(t, A, B, V)] == [
        ((4, 5, 7, 1, 2), 2, 1),
        ((4, 5, 7, 1, 2), 3, 2),
    ]


@given(case=strategies.cases(), m=st.integers(1, 3))
def test_k_equal_one_is_the_single_token_api(case, m):
    """For k = 1 the queries, log-probabilities and losses are those of ``Template(m + 2, 0, m + 1, r)``
    (ARM: the single-token queries read the prefix only; a causal model gives the same log p)."""
    cfg, A, B = case.cfg, case.A, case.B
    r = tuple([case.template.fillers[0]] * m)
    t = EntityTemplate(1, r)
    single = t.template()
    assert single == Template(m + 2, 0, m + 1, r)
    (f,), (rq,) = entity_forward_queries(t, (A,), (B,), cfg.vocab), entity_reverse_queries(t, (A,), (B,), cfg.vocab)
    assert f == forward_query(single, A, B, cfg.vocab) and rq == reverse_query(single, A, B, cfg.vocab)
    params = case.params()
    assert torch.equal(entity_forward_loss(params, cfg, t, (A,), (B,)), forward_loss(params, cfg, single, A, B))
    assert torch.equal(entity_reverse_loss(params, cfg, t, (A,), (B,)), reverse_loss(params, cfg, single, A, B))
    import dataclasses

    causal = dataclasses.replace(cfg, attention="causal")
    for full, prefix in (
        (arm_entity_forward_queries(t, (A,), (B,), cfg.vocab)[0], arm_forward_query(single, A, B, cfg.vocab)),
        (arm_entity_reverse_queries(t, (A,), (B,), cfg.vocab)[0], arm_reverse_query(single, A, B, cfg.vocab)),
    ):
        assert (full.slot, full.target) == (prefix.slot, prefix.target)
        torch.testing.assert_close(
            query_logprobs(params, causal, full), query_logprobs(params, causal, prefix), rtol=0, atol=1e-13
        )


@given(case=strategies.cases(), data=st.data())
def test_configuration_logprobs_are_the_per_query_logprobs(case, data):
    t, A, B = data.draw(strategies.entity_facts(case.cfg.vocab))
    params = case.params()
    for queries in (
        entity_forward_queries(t, A, B, case.cfg.vocab),
        entity_reverse_queries(t, A, B, case.cfg.vocab),
        reversed_forward_queries(t, A, B, case.cfg.vocab),
    ):
        logp = configuration_logprobs(params, case.cfg, queries)
        assert logp.shape == (t.k, case.cfg.vocab)
        for row, q in zip(logp, queries, strict=True):
            assert torch.equal(row, query_logprobs(params, case.cfg, q))


@given(vocab=st.integers(3, 8), data=st.data())
def test_drawn_facts_satisfy_their_promises(vocab, data):
    t, A, B = data.draw(strategies.entity_facts(vocab))
    assert 1 <= t.k <= 4 and 1 <= t.m <= 3 and t.palindromic and len(A) == len(B) == t.k and A != B
    assert not set(A + B) & set(t.relation)
    t.check_tokens(vocab, A, B)
    if vocab == 3:
        with pytest.raises(ValueError, match="vocab must be an integer >= 4"):
            data.draw(strategies.entity_facts(vocab, palindromic=False))
        return
    t, A, B = data.draw(strategies.entity_facts(vocab, palindromic=False))
    assert t.m >= 2 and not t.palindromic
    t.check_tokens(vocab, A, B)


def test_the_seeded_sampler_draws_k_and_m_and_is_deterministic():
    def draws(seed):
        rng = random.Random(seed)
        return [strategies.sample_entity_fact(rng, 5) for _ in range(200)]

    first = draws(0)
    assert first == draws(0)
    assert {t.k for t, _, _ in first} == {1, 2, 3, 4} and {t.m for t, _, _ in first} == {1, 2, 3}
    assert all(t.palindromic for t, _, _ in first)
    rng = random.Random(1)
    assert {strategies.sample_entity_fact(rng, 5, k=(2,), m=(3,))[0].length for _ in range(20)} == {7}


def test_bad_input_is_refused():
    V = 6
    with pytest.raises(ValueError, match="k \\(tokens per entity\\)"):
        EntityTemplate(0, (1,))
    with pytest.raises(ValueError, match="relation must be a non-empty tuple"):
        EntityTemplate(1, ())
    t = EntityTemplate(2, (0,))
    with pytest.raises(ValueError, match="A must be a tuple of k = 2"):
        entity_forward_queries(t, (1,), (2, 3), V)
    with pytest.raises(ValueError, match="B\\[1\\] must be a real token id"):
        entity_reverse_queries(t, (1, 2), (2, V), V)
    with pytest.raises(ValueError, match="must differ from the relation"):
        entity_forward_queries(t, (0, 2), (2, 3), V)
    with pytest.raises(ValueError, match="distinct entities"):
        entity_forward_queries(t, (1, 2), (1, 2), V)
    with pytest.raises(ValueError, match="relation\\[0\\]"):
        entity_forward_queries(EntityTemplate(1, (V,)), (1,), (2,), V)
    with pytest.raises(ValueError, match="needs k = 1"):
        t.template()
    with pytest.raises(ValueError, match="vocab must be an integer >= 3"):
        strategies.sample_entity_fact(random.Random(0), 2)
    with pytest.raises(ValueError, match="k and m must offer sizes"):
        strategies.sample_entity_fact(random.Random(0), 5, m=(1,), palindromic=False)
    cfg = ModelConfig(vocab=V, d_model=8, d_head=4)
    q = entity_forward_queries(t, (1, 2), (3, 4), V)
    with pytest.raises(ValueError, match="share one token sequence"):
        configuration_logprobs(init_params(cfg, 0), cfg, q + entity_reverse_queries(t, (1, 2), (3, 4), V))
