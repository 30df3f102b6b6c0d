"""C0.3: autograd (torch.func.grad over the params dict) against the closed forms of
mdm_props.gradients — storage block ∂L/∂W_OV = Uᵀ(p − y)cᵀ per head, route block
∂s_ij/∂W_Q = R_{j−i} k_j x_iᵀ/√d_k and ∂s_ij/∂W_K = R_{j−i}ᵀ q_i x_jᵀ/√d_k — within twice the derived
either-route bound; plus torch.autograd.gradcheck of the model itself."""

import dataclasses

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mdm_props import rounding, strategies
from mdm_props.checks import assert_holds
from mdm_props.claims import c0_oracles as c0
from mdm_props.facts import canonical_template, forward_query, query_loss, reverse_query
from mdm_props.model import ATTENTIONS, POSITIONAL_ENCODINGS, ModelConfig, forward
from mdm_props.params import init_params


@st.composite
def gradient_draws(draw):
    case = draw(
        strategies.cases(
            pos=st.sampled_from(POSITIONAL_ENCODINGS),
            orthonormal=False,
            attention=st.sampled_from(ATTENTIONS),
            n_heads=st.integers(1, 3),
        )
    )
    cfg = dataclasses.replace(case.cfg, tied=draw(st.booleans()), residual=draw(st.booleans()))
    query = draw(st.sampled_from([forward_query, reverse_query]))(case.template, case.A, case.B, cfg.vocab)
    T = len(query.tokens)  # ranges that depend on earlier draws are picked (a fixed schema, strategies.pick)
    i = strategies.pick(draw, range(T))
    j = strategies.pick(draw, range(i + 1 if cfg.attention == "causal" else T))
    return cfg, case, query, i, j, strategies.pick(draw, range(cfg.n_heads))


@pytest.mark.claim("C0.3")
@given(draw=gradient_draws())
def test_autograd_matches_the_closed_forms(device, draw):
    cfg, case, query, i, j, head = draw
    params = init_params(cfg, case.seed, scale=case.scale, device=device)
    results = c0.gradient_checks(params, cfg, query, i, j, head)
    assert len(results) == 3
    assert_holds(results)


@pytest.mark.claim("C0.3")
@pytest.mark.parametrize("pos", POSITIONAL_ENCODINGS)
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_gradcheck_of_the_query_loss(pos, attention):
    """torch.autograd.gradcheck (float64 central differences against the analytic Jacobian) of the
    query loss in every trainable parameter. gradcheck's own eps = 1e-6, atol = 1e-5, rtol = 1e-3 are
    appropriate here: they are the documented float64 finite-difference settings, whose truncation
    (≈ eps²|f'''|) and cancellation (≈ u|f|/eps) errors lie far below atol at these O(1) scales."""
    cfg = ModelConfig(
        vocab=4,
        d_model=5,
        d_head=4,
        n_heads=2,
        pos=pos,
        attention=attention,
        tied=False,
        merged_ov=False,
        absolute_kind="learned",
    )
    params = init_params(cfg, 7)
    names = sorted(params)
    query = forward_query(canonical_template(2), 0, 1, cfg.vocab)

    def loss(*tensors):
        return query_loss(dict(zip(names, tensors, strict=False)), cfg, query)

    inputs = tuple(params[n].clone().requires_grad_(True) for n in names)
    assert torch.autograd.gradcheck(loss, inputs)


def test_meta_gradient_bound_rejects_a_wrong_storage_gradient():
    """The storage-gradient bound is tight enough to reject Uᵀ(p − y)cᵀ scaled by 1 + 1e-10, or with
    the context of the wrong slot, on a fixed draw."""
    from mdm_props.gradients import storage_gradient_closed_form

    cfg = ModelConfig(vocab=5, d_model=6, d_head=4, pos="rope")
    params = init_params(cfg, 3)
    query = forward_query(canonical_template(2), 0, 1, cfg.vocab)
    auto = torch.func.grad(lambda p: query_loss(p, cfg, query))(params)["W_OV"][0]
    bound = 2 * rounding.storage_gradient_error_bound(params, cfg, query)
    good = storage_gradient_closed_form(params, cfg, query)
    assert ((auto - good).abs() <= bound).all()
    assert ((auto - good * (1 + 1e-10)).abs() > bound).any()
    wrong_slot = dataclasses.replace(query, slot=(query.slot + 1) % len(query.tokens))
    assert ((auto - storage_gradient_closed_form(params, cfg, wrong_slot)).abs() > bound).any()


# ---------------------------------------------------------------------------------------------
# meta-tests: the checkers and their bounds on their own (the registry audit looks for them in this file)


@pytest.mark.parametrize("pos", POSITIONAL_ENCODINGS)
@pytest.mark.meta("C0.3")
def test_gradient_bounds_hold_are_small_and_reject_perturbed_closed_forms(pos):
    from mdm_props.facts import query_loss
    from mdm_props.gradients import score_gradient_closed_form, storage_gradient_closed_form

    cfg = ModelConfig(vocab=5, d_model=7, d_head=4, n_heads=2, pos=pos, rope_base=5e5)
    params = init_params(cfg, 6, scale=2.0)
    query = reverse_query(canonical_template(2), 0, 1, cfg.vocab)
    auto = torch.func.grad(lambda p: query_loss(p, cfg, query))(params)["W_OV"][0]
    closed = storage_gradient_closed_form(params, cfg, query)
    b = 2 * rounding.storage_gradient_error_bound(params, cfg, query)
    assert ((auto - closed).abs() <= b).all()
    nudged = {**params, "E": params["E"] * (1 + 1e-9)}  # the closed form at embeddings off by 1e-9
    assert ((auto - storage_gradient_closed_form(nudged, cfg, query)).abs() > b).any()
    assert float(b.max()) < 1e-11 * float(closed.abs().max())  # measured up to ~2e-12 at scale 2
    tokens = query.tensor()
    g = torch.func.grad(lambda p: forward(p, cfg, tokens).scores[0, 1, 2, 0])(params)
    dQ, dK = score_gradient_closed_form(params, cfg, tokens, 2, 0, head=1)
    bQ, bK = rounding.score_gradient_error_bound(params, cfg, tokens, 2, 0, head=1)
    # the closed forms at W_K resp. W_Q off by 1e-9 (∂s/∂W_Q reads k, ∂s/∂W_K reads q)
    dQ_off, _ = score_gradient_closed_form({**params, "W_K": params["W_K"] * (1 + 1e-9)}, cfg, tokens, 2, 0, head=1)
    _, dK_off = score_gradient_closed_form({**params, "W_Q": params["W_Q"] * (1 + 1e-9)}, cfg, tokens, 2, 0, head=1)
    for a, c, off, bb in ((g["W_Q"][0, 1], dQ, dQ_off, 2 * bQ), (g["W_K"][0, 1], dK, dK_off, 2 * bK)):
        assert ((a - c).abs() <= bb).all() and ((a - off).abs() > bb).any()
        assert float(bb.max()) < 1e-11 * float(c.abs().max())
