"""C3: the shared-storage gradients of the forward and reverse losses are positively aligned
(THEORY.md §2 C3). Kind: per draw under H-rel + H-orth + H-bi, one to three heads; margins are
relative (the cosine, and (value − lower bound)/value), never absolute."""

import pytest
import torch
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from meta.storage_draws import DRAWS, A, B, _ten_bounds, draw, relative_scaling  # the meta-tests' fixed draws

from mdm_props import batched, rounding, search, storage, strategies
from mdm_props.checks import assert_holds
from mdm_props.claims import c3_aligned_storage as c3
from mdm_props.facts import canonical_template
from mdm_props.model import ModelConfig
from mdm_props.params import init_params

heads = st.sampled_from(strategies.N_HEADS)


@pytest.mark.claim("C3")
@given(case=strategies.cases(n_heads=heads))
def test_c3_identity_lower_bound_and_positivity(batch_draws, device, case):
    """⟨G_f, G_r⟩ = [(1−p_f(A))(1−p_r(A)) + Σ_{v≠A} p_f(v)p_r(v)] Σ_h Σ_t α^f_h(t)α^r_h(t) ≥ the lower
    bound > 0, for every relative encoding and 1–3 heads (multi-head: the sum over heads). Hypothesis draws
    the structure and a seed; a batch of ``batch_draws`` parameter draws of it is checked at once."""
    assert_holds(c3.check_c3_batch(batched.batch_from_case(case, batch_draws), device).selected())


@pytest.mark.claim("C3")
def test_c3_runner_holds_and_is_deterministic():
    first = c3.run_c3(6, 2, "cpu")
    assert_holds(first)
    assert [r.observed for r in first] == [r.observed for r in c3.run_c3(6, 2, "cpu")]


@pytest.mark.claim("C3")
def test_multi_head_inner_product_is_the_sum_over_heads():
    """With three heads, ⟨G_f, G_r⟩ is the sum of the per-head inner products (each positive)."""
    cfg = ModelConfig(vocab=5, d_model=8, d_head=4, n_heads=3)
    p = init_params(cfg, 11, orthonormal=True, scale=2.0)
    fq, rq = storage.pair_queries(canonical_template(2), 0, 1, 5)
    al = storage.storage_alignment(p, cfg, fq, rq)
    per_head = (al.G_f * al.G_r).sum((-1, -2))
    assert per_head.shape == (3,) and bool((per_head > 0).all())
    assert abs(float(per_head.sum()) - al.ip) <= 2 * al.ip_err


def test_first_factor_refuses_bad_input():
    p = torch.full((4,), 0.25, dtype=torch.float64)
    with pytest.raises(ValueError, match="y_r"):
        storage.first_factor(p, 0, p, 4)
    with pytest.raises(ValueError, match="p_f"):
        storage.first_factor(p[None], 0, p, 1)


# ---------------------------------------------------------------------------------------------
# negative controls


@pytest.mark.negative_control("C3")
@given(vocab=st.integers(2, 64))
def test_arm_first_factor_is_minus_one_over_v_at_uniform_outputs(vocab):
    """ARM targets differ (B forward, A reverse): at uniform p the first factor is exactly −1/V."""
    value, bound = c3.uniform_first_factor(vocab)
    assert abs(value + 1.0 / vocab) <= bound, (value, bound)
    assert value < -bound


@pytest.mark.negative_control("C3")
def test_arm_gives_a_negative_inner_product(device):
    cx = c3.c3_arm(10, 0, device)
    assert cx.found and cx.observed < 0 and cx.example["first_factor"] < 0, str(cx)


@pytest.mark.negative_control("C3")
def test_non_orthonormal_embeddings_give_a_negative_inner_product(device):
    """THEORY measured ~9% of draws at V = 20, d = 4 (we see ~4% under our strategies); the seeded
    search (each draw as drawn, then a targeted descent on the embeddings and weights) finds one."""
    cx = c3.c3_non_orth(10, 0, device)
    assert cx.found and cx.observed < 0 and not cx.example["orthonormal"], str(cx)


@pytest.mark.negative_control("C3")
def test_hypothesis_finds_a_non_orthonormal_counterexample():
    """Plain generation: Hypothesis finds a draw (d ≤ 4, RoPE or T5) with ⟨G_f, G_r⟩ < 0 beyond rounding."""

    def negative(case):
        fq, rq = storage.pair_queries(case.template, case.A, case.B, case.cfg.vocab)
        return search.negative_alignment(case.params(), case.cfg, fq, rq) is not None

    case = find(
        strategies.cases(pos=st.sampled_from(["rope", "t5"]), orthonormal=False, max_d_model=4, max_vocab=20),
        negative,
        settings=settings(
            max_examples=300,
            database=None,
            derandomize=True,
            phases=[Phase.generate],
            # a search for a rare draw: too_slow / filter_too_much would abort the very search this control
            # runs; the found case is asserted below
            suppress_health_check=list(HealthCheck),
        ),
    )  # a search for a rare draw:
    # the too_slow / filter_too_much checks would abort the very search this control runs; the found case is asserted
    assert not case.orthonormal and case.cfg.d_model <= 4


@pytest.mark.negative_control("C3")
def test_absolute_positions_flip_the_sign(device):
    """Learned absolute positions with orthonormal token embeddings: some draw has ⟨G_f, G_r⟩ < 0."""
    cx = c3.c3_absolute(10, 0, device)
    assert cx.found and cx.observed < 0 and cx.example["pos"] == "absolute" and cx.example["orthonormal"], str(cx)


def test_negative_controls_are_registered():
    assert {n.id for n in c3.NEGATIVE_CONTROLS} == {"C3~arm", "C3~non-orth", "C3~absolute"}


# ---------------------------------------------------------------------------------------------
# meta-tests: the checkers and their bounds on their own (the registry audit looks for them in this file)


@pytest.mark.parametrize("n", range(len(DRAWS)))
@pytest.mark.meta("C3")
def test_c3_rejects_a_reverse_gradient_off_by_ten_bounds(n, monkeypatch):
    params, cfg, template = draw(n)
    r = c3.check_c3(params, cfg, template, A, B)[0]
    relative_scaling(monkeypatch, lambda q: _ten_bounds(r) if q.slot == template.b else 0.0)
    bad = c3.check_c3(params, cfg, template, A, B)[0]
    assert not bad.holds and bad.error_ratio > 5, str(bad)


@pytest.mark.parametrize("n", range(len(DRAWS)))
@pytest.mark.meta("C3")
def test_c3_formula_with_position_aligned_attention_is_rejected(n):
    """Σ_j α^f_j α^r_j position by position (forward M meets reverse B) instead of token by token:
    the identity's bound rejects the wrong formula."""
    params, cfg, template = draw(n)
    V = cfg.vocab
    fq, rq = storage.pair_queries(template, A, B, V)
    al = storage.storage_alignment(params, cfg, fq, rq)
    f, r = al.f, al.r
    P = float(storage.first_factor(f.p, A, r.p, A))
    S_right = float((f.token_attention(V + 1) * r.token_attention(V + 1)).sum())
    S_wrong = float((f.attn * r.attn).sum())
    t_F, _ = c3.c3_tolerances(f, r, A, V, rounding.gram_defect(params["E"]), al.ip_err)
    assert abs(al.ip - P * S_right) <= t_F
    assert abs(al.ip - P * S_wrong) > 1e6 * t_F
