"""Save the project's LLaDA-like models as transformers checkpoints that ``mdm-props probe --hf-model`` reads.

Two formats, for a :class:`~mdm_props.model.ModelConfig` with the LLaDA-like structure (RMSNorm pre-norms
and final norm, SwiGLU, half-split RoPE, untied head, factored W_V/W_O, no biases, read-out at the slot,
``d_head · n_heads = d_model``):

* ``llada`` (a masked diffusion model): LLaDA's ``config.json`` (``model_type: "llada"``,
  ``architectures: ["LLaDAModelLM"]``, OLMo-style keys ``d_model``, ``n_heads``, ``n_layers``,
  ``mlp_hidden_size``, ``rope_theta``, ``weight_tying``, ``mask_token_id`` …) and its tensor names
  ``model.transformer.blocks.{l}.{q_proj,k_proj,v_proj,attn_out,ff_proj,up_proj,ff_out,attn_norm,ff_norm}``,
  ``model.transformer.{wte,ln_f,ff_out}`` (the names :func:`mdm_props.adapters.llada_to_llama_state_dict`
  maps);
* ``llama`` (an autoregressive model): a plain transformers ``LlamaForCausalLM`` config (no
  ``is_causal`` key: a Llama is causal) and Llama's tensor names.

The maps: ``E`` (V + 1, d) → the embedding (the mask id V is the last row); ``W_Q^ℓ`` (H, d_k, d) →
``q_proj`` (H·d_k, d) (likewise k, v); ``W_O^ℓ`` (H, d, d_k) → ``o_proj``/``attn_out`` (d, H·d_k) with
column block h = W_O^ℓ[h]; ``W_gate``/``W_up``/``W_down`` → ``gate``/``up``/``down`` (LLaDA:
``ff_proj``/``up_proj``/``ff_out``); norm gains → ``input_layernorm``/``post_attention_layernorm``/
``model.norm`` (LLaDA: ``attn_norm``/``ff_norm``/``ln_f``); ``U`` (V, d) → the head (V + 1, d) with a zero
row for the mask id (the project's logits cover the V real tokens only; the checkpoint's logit for M is
0). Tensors are saved in float64 (safetensors), so the weights round-trip exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .model import ModelConfig

FORMATS = ("llada", "llama")


def require_checkpointable(cfg: ModelConfig) -> None:
    """A ValueError saying why ``cfg`` has no place in LLaDA's or Llama's config and tensors, if so."""
    problems = []
    if cfg.pos != "rope":
        problems.append(f"pos={cfg.pos!r} (LLaDA and Llama checkpoints express RoPE only)")
    if cfg.rope_pairing != "half-split":
        problems.append(f"rope_pairing={cfg.rope_pairing!r} (transformers rotates half-split pairs)")
    for name, want in (("norm", "rms"), ("mlp", "swiglu"), ("final_norm", True), ("tied", False), ("merged_ov", False)):
        if getattr(cfg, name) != want:
            problems.append(f"{name}={getattr(cfg, name)!r} (needs {want!r})")
    for name in ("qk_bias", "v_bias"):
        if getattr(cfg, name):
            problems.append(f"{name}=True (the LLaDA/Llama maps here carry no biases)")
    if cfg.readout_offset != 0 or cfg.branch_scale != 1.0 or not cfg.residual:
        problems.append("read-out offset 0, branch scale 1 and residual connections are required")
    if cfg.d_head * cfg.n_heads != cfg.d_model:
        problems.append(f"d_head * n_heads = {cfg.d_head * cfg.n_heads} must equal d_model = {cfg.d_model}")
    if problems:
        raise ValueError("cfg cannot be saved as a transformers checkpoint: " + "; ".join(problems))


def llama_state_dict(params: dict, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """The project's parameters under transformers' Llama names (see the module docstring)."""
    require_checkpointable(cfg)
    V, d = cfg.vocab, cfg.d_model
    head = torch.cat([params["U"], torch.zeros(1, d, dtype=params["U"].dtype, device=params["U"].device)])
    out = {"model.embed_tokens.weight": params["E"], "model.norm.weight": params["norm_final"], "lm_head.weight": head}
    for layer in range(cfg.n_layers):
        p = f"model.layers.{layer}."
        out |= {
            p + "self_attn.q_proj.weight": params["W_Q"][layer].reshape(-1, d),
            p + "self_attn.k_proj.weight": params["W_K"][layer].reshape(-1, d),
            p + "self_attn.v_proj.weight": params["W_V"][layer].reshape(-1, d),
            p + "self_attn.o_proj.weight": params["W_O"][layer].permute(1, 0, 2).reshape(d, -1),
            p + "mlp.gate_proj.weight": params["W_gate"][layer],
            p + "mlp.up_proj.weight": params["W_up"][layer],
            p + "mlp.down_proj.weight": params["W_down"][layer],
            p + "input_layernorm.weight": params["norm_attn"][layer],
            p + "post_attention_layernorm.weight": params["norm_mlp"][layer],
        }
    assert out["lm_head.weight"].shape == (V + 1, d)
    return {k: v.detach().to("cpu", torch.float64).contiguous() for k, v in out.items()}


_LLAMA_TO_LLADA_BLOCK = {
    "self_attn.q_proj": "q_proj",
    "self_attn.k_proj": "k_proj",
    "self_attn.v_proj": "v_proj",
    "self_attn.o_proj": "attn_out",
    "mlp.gate_proj": "ff_proj",
    "mlp.up_proj": "up_proj",
    "mlp.down_proj": "ff_out",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ff_norm",
}
_LLAMA_TO_LLADA_TOP = {
    "model.embed_tokens.weight": "model.transformer.wte.weight",
    "model.norm.weight": "model.transformer.ln_f.weight",
    "lm_head.weight": "model.transformer.ff_out.weight",
}


def llada_state_dict(params: dict, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """The project's parameters under LLaDA's tensor names (``model.transformer.blocks.{l}.…``)."""
    out = {}
    for name, t in llama_state_dict(params, cfg).items():
        if name in _LLAMA_TO_LLADA_TOP:
            out[_LLAMA_TO_LLADA_TOP[name]] = t
            continue
        layer, rest = name.removeprefix("model.layers.").split(".", 1)
        module = rest.removesuffix(".weight")
        out[f"model.transformer.blocks.{layer}.{_LLAMA_TO_LLADA_BLOCK[module]}.weight"] = t
    return out


def llada_config(cfg: ModelConfig) -> dict:
    """LLaDA's config.json keys for ``cfg`` (vocabulary V + 1: the mask id V is a token of the checkpoint)."""
    require_checkpointable(cfg)
    return {
        "model_type": "llada",
        "architectures": ["LLaDAModelLM"],
        "d_model": cfg.d_model,
        "n_heads": cfg.n_heads,
        "n_kv_heads": cfg.kv_heads,
        "n_layers": cfg.n_layers,
        "mlp_hidden_size": cfg.mlp_width,
        "mlp_ratio": cfg.mlp_width / cfg.d_model,
        "vocab_size": cfg.vocab + 1,
        "embedding_size": cfg.vocab + 1,
        "mask_token_id": cfg.mask_id,
        "max_sequence_length": cfg.max_len,
        "rope": True,
        "rope_theta": float(cfg.rope_base),
        "rms_norm_eps": float(cfg.norm_eps),
        "layer_norm_type": "rms",
        "activation_type": "silu",
        "block_type": "llama",
        "weight_tying": False,
        "include_bias": False,
        "include_qkv_bias": False,
        "alibi": False,
        "torch_dtype": "float64",
    }


def llama_config(cfg: ModelConfig) -> dict:
    """A plain transformers Llama config.json for ``cfg`` (causal: no ``is_causal`` key). It names the
    mask id the model was built with (``mask_token_id``), which the probe needs to form its queries."""
    require_checkpointable(cfg)
    return {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": cfg.vocab + 1,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.mlp_width,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.d_head,
        "hidden_act": "silu",
        "rms_norm_eps": float(cfg.norm_eps),
        "rope_theta": float(cfg.rope_base),
        "max_position_embeddings": cfg.max_len,
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
        "mask_token_id": cfg.mask_id,
        "torch_dtype": "float64",
    }


def save_checkpoint(path, params: dict, cfg: ModelConfig, fmt: str) -> Path:
    """Write ``config.json`` and ``model.safetensors`` of ``fmt`` (``llada`` or ``llama``) into ``path``."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}; got {fmt!r}")
    try:
        from safetensors.torch import save_file
    except ImportError:
        raise ValueError("saving checkpoints needs safetensors: pip install -e '.[hf]'") from None
    config = llada_config(cfg) if fmt == "llada" else llama_config(cfg)
    state = llada_state_dict(params, cfg) if fmt == "llada" else llama_state_dict(params, cfg)
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


# float32 rounding of transformers' Llama, relative to float64: u32 / u64
FLOAT32_OVER_FLOAT64 = 2.0**29


def transformers_logit_tolerance(params: dict, cfg: ModelConfig, tokens: torch.Tensor) -> torch.Tensor:
    """Entrywise tolerance for the logits of a saved checkpoint evaluated by transformers (float64
    weights) against :func:`mdm_props.model.forward` on the same weights, shape (..., T, V).

    Derivation. transformers' Llama computes RMSNorm (``hidden_states.to(torch.float32)``), the RoPE
    angle table (``.float()``) and the eager softmax (``dtype=torch.float32``) in float32 and the rest in
    float64, so each of its operations rounds with unit roundoff at most u32 = 2⁻²⁴. The first-order
    adjoint bound of :func:`mdm_props.rounding_mode.adjoint_error_bounds` (Σ_k |∂z/∂v_k| own_k, own_k
    ∝ u64, × SAFETY 2) for the project's evaluation scales linearly in the unit roundoff, so × u32/u64 =
    2²⁹ it bounds, to first order, an evaluation of the same operations in which every one rounds at
    u32; the float64 evaluation itself is within the unscaled bound, which the scaled one dominates.
    Caveat (why this is a tolerance, not a theorem about transformers' code): transformers applies
    W_V, then W_O, where the project multiplies W_O W_V first; the sensitivities are the same, the
    own-rounding terms of that one product are not literally those the bound sums.
    Measured: the observed difference is ~10⁻³ of this tolerance (tests/test_entities_experiment.py)."""
    from .model import forward
    from .rounding_mode import adjoint_error_bounds

    _, bound = adjoint_error_bounds(lambda p: forward(p, cfg, tokens).logits, params)
    return FLOAT32_OVER_FLOAT64 * bound
