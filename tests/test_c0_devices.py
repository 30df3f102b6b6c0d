"""C0.5: the float64 model on CUDA agrees with the CPU within the sum of the two devices' derived
bounds (both sides round; each bound is computed from that device's own intermediates).

Parameters come from the same seed: init_params draws on the CPU and moves them, so both devices
see bit-identical inputs. Skipped without a GPU (set MDM_PROPS_REQUIRE_CUDA=1 on GPU runners to
turn the skip into a failure)."""

import dataclasses
import random

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mdm_props import strategies
from mdm_props.checks import ClaimSkipped, assert_holds
from mdm_props.claims import c0_oracles as c0
from mdm_props.facts import forward_query, reverse_query
from mdm_props.model import ATTENTIONS, POSITIONAL_ENCODINGS


@st.composite
def device_draws(draw):
    case = draw(
        strategies.cases(
            pos=st.sampled_from(POSITIONAL_ENCODINGS),
            orthonormal=False,
            attention=st.sampled_from(ATTENTIONS),
            n_heads=st.integers(1, 3),
        )
    )
    cfg = dataclasses.replace(
        case.cfg, tied=draw(st.booleans()), residual=draw(st.booleans()), merged_ov=draw(st.booleans())
    )
    query = draw(st.sampled_from([forward_query, reverse_query]))(case.template, case.A, case.B, cfg.vocab)
    return cfg, case.seed, case.scale, query


@pytest.mark.claim("C0.5")
@pytest.mark.parametrize("device", ["cuda"])
@given(draw=device_draws())
def test_cuda_matches_cpu(device, draw):
    cfg, seed, scale, query = draw
    results = c0.device_checks(cfg, seed, query, scale)
    assert [r.quantity for r in results] == [
        f"{k} cuda vs cpu" for k in ("scores", "attn", "logits", "logprobs", "loss")
    ]
    assert_holds(results)


@pytest.mark.skipif(torch.cuda.is_available(), reason="only meaningful without CUDA")
def test_runner_says_why_it_is_skipped_without_cuda():
    """The registry convention: a runner that cannot run here raises ClaimSkipped with its reason
    (the CLI reports `skipped` and prints the reason)."""
    with pytest.raises(ClaimSkipped, match="no CUDA device"):
        c0.run_c05(3, 0, "cpu")


@pytest.mark.meta("C0.5")
def test_device_comparison_rejects_a_one_ulp_change_of_one_side(monkeypatch):
    """The comparison is not vacuous: cpu against cpu holds with error 0, and changing one side's
    W_Q by a relative 1e-9 (far below any meaningful difference, far above rounding) is rejected."""
    case = strategies.sample_case(random.Random(3))
    cfg, seed, scale, query = (
        case.cfg,
        case.seed,
        case.scale,
        forward_query(case.template, case.A, case.B, case.cfg.vocab),
    )
    same = c0.device_checks(cfg, seed, query, scale, devices=("cpu", "cpu"))
    assert same and all(r.holds and r.error == 0 for r in same)
    real = c0.init_params
    calls = []

    def second_side_perturbed(*args, **kwargs):
        p = real(*args, **kwargs)
        calls.append(1)
        return {**p, "W_Q": p["W_Q"] * (1 + 1e-9)} if len(calls) == 2 else p

    monkeypatch.setattr(c0, "init_params", second_side_perturbed)
    moved = c0.device_checks(cfg, seed, query, scale, devices=("cpu", "cpu"))
    assert not all(r.holds for r in moved), [str(r) for r in moved]
