"""C0.5: the float64 model on CUDA agrees with the CPU within the sum of the two devices' derived
bounds (both sides round; each bound is computed from that device's own intermediates).

Parameters come from the same seed: init_params draws on the CPU and moves them, so both devices
see bit-identical inputs. Skipped without a GPU (set MDM_PROPS_REQUIRE_CUDA=1 on GPU runners to
turn the skip into a failure)."""

import dataclasses

import pytest
import torch
from hypothesis import given, target
from hypothesis import strategies as st

from mdm_props import strategies
from mdm_props.checks import ClaimSkipped
from mdm_props.claims import c0
from mdm_props.facts import forward_query, reverse_query
from mdm_props.model import ATTENTIONS, POSITIONAL_ENCODINGS


@st.composite
def device_draws(draw):
    case = draw(strategies.cases(pos=st.sampled_from(POSITIONAL_ENCODINGS), orthonormal=False,
                                 attention=st.sampled_from(ATTENTIONS), n_heads=st.integers(1, 3)))
    cfg = dataclasses.replace(case.cfg, tied=draw(st.booleans()), residual=draw(st.booleans()),
                              merged_ov=draw(st.booleans()))
    query = draw(st.sampled_from([forward_query, reverse_query]))(case.template, case.A, case.B, cfg.vocab)
    return cfg, case.seed, case.scale, query


@pytest.mark.claim("C0.5")
@pytest.mark.parametrize("device", ["cuda"])
@given(draw=device_draws())
def test_cuda_matches_cpu(device, draw):
    cfg, seed, scale, query = draw
    results = c0.device_checks(cfg, seed, query, scale)
    assert [r.quantity for r in results] == [f"{k} cuda vs cpu" for k in ("scores", "attn", "logits", "logprobs", "loss")]
    for r in results:
        assert r.holds, str(r)
    target(min(r.margin for r in results), label="relative margin")


@pytest.mark.skipif(torch.cuda.is_available(), reason="only meaningful without CUDA")
def test_runner_says_why_it_is_skipped_without_cuda():
    """The registry convention: a runner that cannot run here raises ClaimSkipped with its reason
    (the CLI reports `skipped` and prints the reason)."""
    with pytest.raises(ClaimSkipped, match="no CUDA device"):
        c0.RUNNERS["C0.5"](3, 0, "cpu")
