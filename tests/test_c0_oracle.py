"""C0.2: the float64 model (scores, attention, logits, log-probs, query loss) against the mpmath
oracle (≥ 50 digits, confirmed at 100) within the running-error bound of
``rounding.forward_error_bounds``, over every positional encoding, both attentions, 1–2 heads,
tied/untied, residual on/off and merged/factored W_OV."""

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdm_props import strategies
from mdm_props.checks import assert_holds
from mdm_props.claims import c0_oracles as c0
from mdm_props.facts import forward_query, reverse_query
from mdm_props.model import ATTENTIONS, POSITIONAL_ENCODINGS
from mdm_props.params import init_params

small_cases = strategies.cases(
    pos=st.sampled_from(POSITIONAL_ENCODINGS),
    orthonormal=False,
    attention=st.sampled_from(ATTENTIONS),
    n_heads=st.integers(1, 2),
    d_head=st.integers(1, 4).map(lambda h: 2 * h),
    max_vocab=5,
    max_d_model=8,
)


@st.composite
def oracle_draws(draw):
    """A small case with the structural flags the strategies leave fixed (tied, residual, merged_ov)
    drawn too, and the forward or the reverse query of its fact."""
    case = draw(small_cases)
    cfg = dataclasses.replace(
        case.cfg, tied=draw(st.booleans()), residual=draw(st.booleans()), merged_ov=draw(st.booleans())
    )
    make = draw(st.sampled_from([forward_query, reverse_query]))
    return cfg, case.seed, case.scale, make(case.template, case.A, case.B, cfg.vocab)


@pytest.mark.claim("C0.2")
@given(draw=oracle_draws())
def test_forward_pass_matches_the_mpmath_oracle(device, draw):
    """Every entry within its derived bound; hypothesis.target hunts the smallest relative margin.

    Shapes are kept tiny (V ≤ 5, d ≤ 8, d_k ≤ 8, T ≤ 5) because the oracle evaluates everything
    twice in mpmath (50 and 100 digits); the ci profile's 100 examples fit the time budget.
    """
    cfg, seed, scale, query = draw
    results = c0.oracle_checks(init_params(cfg, seed, scale=scale, device=device), cfg, query)
    assert [r.quantity for r in results] == ["scores", "attn", "logits", "logprobs", "query loss"]
    assert_holds(results)
