"""The deep block of the reference model (THEORY §2b): the default options reproduce the one-layer model
bit for bit, every option is validated, the presets follow the real models' modelling code, and every
floating intermediate (forward and backward) is float64."""

import dataclasses
import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mdm_props import model
from mdm_props.model import ModelConfig, forward, parameter_shapes, preset
from mdm_props.params import init_params
from mdm_props.rounding_mode import floating_dtypes

_spec = importlib.util.spec_from_file_location("frozen_model_v1", Path(__file__).with_name("frozen_model_v1.py"))
frozen = importlib.util.module_from_spec(_spec)
sys.modules["frozen_model_v1"] = frozen
_spec.loader.exec_module(frozen)

OLD_FIELDS = [f.name for f in dataclasses.fields(frozen.ModelConfig)]


@st.composite
def old_configs(draw):
    pos = draw(st.sampled_from(model.POSITIONAL_ENCODINGS))
    return ModelConfig(
        vocab=draw(st.integers(2, 8)),
        d_model=draw(st.integers(1, 12)),
        d_head=2 * draw(st.integers(1, 4)),
        n_heads=draw(st.integers(1, 3)),
        n_layers=draw(st.integers(1, 3)),
        pos=pos,
        rope_base=draw(st.sampled_from([1e4, 100.0, 5e5])),
        absolute_kind=draw(st.sampled_from(model.ABSOLUTE_KINDS)),
        attention=draw(st.sampled_from(model.ATTENTIONS)),
        residual=draw(st.booleans()),
        tied=draw(st.booleans()),
        merged_ov=draw(st.booleans()),
        max_len=8,
    )


@given(cfg=old_configs(), seed=st.integers(0, 2**32 - 1), T=st.integers(1, 8))
def test_default_options_reproduce_the_one_layer_model_bit_for_bit(cfg, seed, T):
    """Every output of today's forward equals the frozen copy's exactly (==, not within a tolerance),
    and the parameter names, shapes and order (hence a seed's draws) are unchanged."""
    old_cfg = frozen.ModelConfig(**{f: getattr(cfg, f) for f in OLD_FIELDS})
    assert list(parameter_shapes(cfg).items()) == list(frozen.parameter_shapes(old_cfg).items())
    params = init_params(cfg, seed)
    tokens = torch.randint(0, cfg.vocab + 1, (T,), generator=torch.Generator().manual_seed(seed))
    new, old = forward(params, cfg, tokens), frozen.forward(params, old_cfg, tokens)
    for key, value in old.items():  # the frozen copy returns a dict; every one of its keys is a field now
        assert torch.equal(getattr(new, key), value), key


def test_deep_options_are_validated_with_named_errors():
    base = dict(vocab=5, d_model=8, d_head=4, n_heads=4)
    bad = [
        (dict(n_kv_heads=3), "n_kv_heads must divide"),
        (dict(n_kv_heads=0), "n_kv_heads"),
        (dict(norm="layer"), "norm must be one of"),
        (dict(mlp="gelu"), "mlp must be one of"),
        (dict(rope_pairing="halves"), "rope_pairing must be one of"),
        (dict(readout_offset=2), "readout_offset"),
        (dict(readout_offset=True), "readout_offset"),
        (dict(d_mlp=0), "d_mlp"),
        (dict(branch_scale=0.0), "branch_scale"),
        (dict(branch_scale=math.inf), "branch_scale"),
        (dict(norm_eps=-1.0), "norm_eps"),
        (dict(qk_bias=1), "qk_bias"),
        (dict(final_norm="yes"), "final_norm"),
        (dict(v_bias=True), "v_bias=True needs merged_ov=False"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ValueError, match=message):
            ModelConfig(**base, **kwargs)
    with pytest.raises(ValueError, match="name must be one of"):
        preset("gpt-like")
    with pytest.raises(ValueError, match="overrides must name ModelConfig fields"):
        preset("llada-like", n_layer=2)
    with pytest.raises(ValueError, match="pairing must be one of"):
        model.rope_rotate(torch.zeros(2, 4, dtype=torch.float64), torch.arange(2), 1e4, "halves")


def test_presets_follow_the_real_models():
    llada, dream, smdm = preset("llada-like"), preset("dream-like"), preset("smdm-like")
    for cfg in (llada, dream, smdm):
        assert (cfg.norm, cfg.final_norm, cfg.mlp, cfg.rope_pairing, cfg.tied) == (
            "rms",
            True,
            "swiglu",
            "half-split",
            False,
        )
        assert cfg.n_layers >= 2 and cfg.pos == "rope" and cfg.attention == "bidirectional"
    assert (llada.rope_base, llada.kv_heads, llada.qk_bias, llada.readout_offset) == (5e5, 4, False, 0)
    assert (dream.rope_base, dream.kv_heads, dream.qk_bias, dream.v_bias, dream.readout_offset) == (
        1e6,
        2,
        True,
        True,
        1,
    )
    assert (smdm.rope_base, smdm.readout_offset) == (1e4, 0)
    assert preset("dream-like", n_layers=2).n_layers == 2


def test_half_split_rope_is_relative_and_matches_rotate_half():
    """(R_m q)ᵀ(R_n k) depends on n − m only, and the half-split rotation is HF's q cos + rotate_half(q) sin."""
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 8, generator=g, dtype=torch.float64), torch.randn(1, 8, generator=g, dtype=torch.float64)
    rot = lambda v, p: model.rope_rotate(v, torch.tensor([p]), 1e4, "half-split")  # noqa: E731
    assert abs(float(rot(q, 3) @ rot(k, 5).T) - float(rot(q, 0) @ rot(k, 2).T)) < 1e-14
    theta = model.rope_frequencies(8, 1e4) * 3.0
    cos, sin = torch.cat((theta.cos(), theta.cos())), torch.cat((theta.sin(), theta.sin()))
    rotate_half = torch.cat((-q[:, 4:], q[:, :4]), dim=-1)
    assert torch.allclose(rot(q, 3), q * cos + rotate_half * sin, rtol=0, atol=1e-15)


@pytest.mark.parametrize("pairing", model.ROPE_PAIRINGS)
def test_reflection_conjugates_rope(pairing):
    """J R_δ J = R_{−δ} for the pairing's J."""
    J = torch.diag(model.rope_reflection(8, pairing))
    R, R_neg = model.rope_matrix(1.5, 8, 100.0, pairing=pairing), model.rope_matrix(-1.5, 8, 100.0, pairing=pairing)
    assert torch.allclose(J @ R @ J, R_neg, rtol=0, atol=1e-15)


def test_readout_offset_reads_one_position_to_the_left():
    cfg = preset("dream-like")
    params = init_params(cfg, 1)
    tokens = torch.tensor([1, 2, 8, 3])
    shifted = forward(params, cfg, tokens).logits
    plain = forward(params, dataclasses.replace(cfg, readout_offset=0), tokens).logits
    assert torch.equal(shifted[1:], plain[:-1]) and torch.equal(shifted[0], plain[0])


def test_gqa_equals_repeated_kv_heads():
    """GQA with K kv heads = the same model with n_heads kv heads whose W_K (and W_V, b_K, b_V) repeat each kv head."""
    cfg = preset("dream-like")
    params = init_params(cfg, 3)
    full_cfg = dataclasses.replace(cfg, n_kv_heads=None)
    full = dict(params)
    for name in ("W_K", "W_V", "b_K", "b_V"):
        full[name] = params[name].repeat_interleave(cfg.n_heads // cfg.kv_heads, dim=1)
    tokens = torch.tensor([0, 1, 8, 2, 3])
    a, b = forward(params, cfg, tokens).logits, forward(full, full_cfg, tokens).logits
    assert torch.allclose(a, b, rtol=0, atol=1e-13)


def test_small_branch_scale_makes_every_position_predict_from_its_own_token():
    """ε → 0: z_i → U N_f(x_i) (no attention or MLP contribution)."""
    cfg = preset("llada-like", branch_scale=1e-9)
    params = init_params(cfg, 2)
    tokens = torch.tensor([0, 1, 8])
    out = forward(params, cfg, tokens)
    x = model.rms_norm(params["E"][tokens], params["norm_final"], cfg.norm_eps)
    assert torch.allclose(out.logits, x @ params["U"].T, rtol=0, atol=1e-7)


def test_bidirectionality_a_later_token_moves_an_earlier_logit():
    cfg = preset("smdm-like")
    params = init_params(cfg, 4)
    a = forward(params, cfg, torch.tensor([8, 1, 2])).logits[0]
    b = forward(params, cfg, torch.tensor([8, 1, 3])).logits[0]
    assert float((a - b).abs().max()) > 1e-3


@pytest.mark.parametrize("name", model.PRESETS)
def test_every_intermediate_is_float64(name):
    """A dispatch mode records the dtype of every floating tensor produced by every aten op in the forward
    pass and in autograd's backward pass: only float64 appears (no hidden float32 cast)."""
    cfg = preset(name)
    params = {k: v.requires_grad_(True) for k, v in init_params(cfg, 0).items()}

    def run():
        out = forward(params, cfg, torch.tensor([0, 1, 8, 2]))
        loss = -torch.log_softmax(out.logits[2], dim=-1)[3]
        torch.autograd.grad(loss, list(params.values()))

    dtypes, n_ops = floating_dtypes(run)
    assert dtypes == {torch.float64} and n_ops > 100


def test_the_float64_probe_sees_a_float32_cast():
    def run():
        x = torch.ones(3, dtype=torch.float64)
        return (x.float() * 2).double()

    assert torch.float32 in floating_dtypes(run)[0]


def test_the_one_layer_bounds_and_oracle_refuse_deep_options():
    from mdm_props import oracles, rounding

    cfg = preset("smdm-like", n_layers=1)
    params, tokens = init_params(cfg, 0), torch.tensor([0, 8, 1])
    assert model.deep_options(ModelConfig(vocab=4, d_model=4, d_head=2, n_heads=2, n_kv_heads=2)) == []
    for fn in (rounding.forward_error_bounds, oracles.oracle_forward):
        with pytest.raises(ValueError, match="deep-block options"):
            fn(params, cfg, tokens)
