"""Adapters: one small protocol through which ``mdm-props probe`` reads any bidirectional model.

An adapter exposes, for a model with parameters θ (a dict of float tensors, the autograd leaves):

- ``arch``: :class:`Architecture` (vocabulary size of the logits, mask id, read-out offset ``s``, layers,
  heads, kv heads, head width, RoPE pairing and base, the declared attention);
- ``parameters()``: θ, detached float64 tensors;
- ``logits(θ, tokens)``: ``(N, T, vocab)`` prediction logits for slot i (the read-out offset applied:
  slot i reads position ``max(i − s, 0)``);
- ``query_keys(θ, tokens)``: per layer, the post-RoPE queries and keys ``(N, H, T, d_head)`` (kv heads
  repeated to query heads), so that the pre-softmax scores are ``q kᵀ · scale`` (``score_scale``);
  captured by forward hooks where the model returns no attention weights (SDPA, LLaDA);
- ``handles(layer, head=None)``: role → list of :class:`Handle` (``query``, ``key``: the route; ``value``,
  ``output``, ``mlp``: the storage), the entries of θ that belong to that layer (and query head);
- ``reflect(θ)``: Φθ of THEORY C5 (``J`` on the rows of every head's W_Q, W_K and on q/k biases; ``J``
  negates the second coordinate of every RoPE pair: odd entries for interleaved pairs, the second half
  of each head for half-split pairs);
- ``causal_twin()``: the same weights behind a causal mask (the ARM contrast of the figure), or None.

Implementations: :class:`ProjectAdapter` (the project's model and presets, :mod:`mdm_props.model`) and
:class:`DecoderAdapter` (checkpoints and configs of the LLaDA, Dream, Llama and Qwen2 families, read by
:mod:`mdm_props.checkpoint_reader` and evaluated by one functional decoder, :func:`decoder_forward`, in the
compute dtype). Both give ``logits(θ, tokens, reflected=..., dtype=...)``: Φθ is applied inside the
forward pass (no copy of W_Q, W_K), and ``dtype`` reruns the same weights in another precision (the
tolerance's yardstick; each weight is cast at its use).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .checkpoint_reader import ProbeError, Spec, llada_name, load_weights, random_weights, read_config, spec_from_config
from .model import PRESETS, ModelConfig, forward, preset, rms_norm, rope_reflection, rope_rotate
from .params import init_params

ROLES = ("query", "key", "value", "output", "mlp")
ROUTE_ROLES = ("query", "key")

__all__ = ["DecoderAdapter", "Handle", "ProbeError", "ProjectAdapter", "decoder_forward", "load_checkpoint"]


@dataclass(frozen=True)
class Architecture:
    """What the probe needs to know about a model's structure (all read from its config)."""

    name: str
    vocab: int  # number of logit entries (real tokens, and the mask id when it lies inside the vocabulary)
    mask_id: int
    readout_offset: int  # logits of slot i read from position max(i − s, 0)
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    rope_pairing: str | None  # "interleaved", "half-split", or None without RoPE
    rope_base: float | None
    attention: str  # the attention the model is evaluated with: "bidirectional" or "causal" (the probe tests it)
    n_tokens: int | None = None  # token ids a fact may use are below this (default: vocab)
    max_len: int | None = None  # the longest sequence the model takes (None: no limit the probe needs to know)

    @property
    def real_tokens(self) -> list[int]:
        """Token ids a fact may use: every id below ``n_tokens`` (default: the logits'), except the mask id."""
        return [t for t in range(self.n_tokens or self.vocab) if t != self.mask_id]


@dataclass(frozen=True)
class Handle:
    """The part ``tensor[index]`` of parameter ``name`` (``index`` selects one layer / head's rows)."""

    name: str
    index: tuple = ()

    def of(self, tensors: dict) -> torch.Tensor:
        return tensors[self.name][self.index] if self.index else tensors[self.name]


def flat(tensors: dict, handles) -> torch.Tensor:
    """The entries of ``tensors`` that ``handles`` select, as one vector."""
    return torch.cat([h.of(tensors).reshape(-1) for h in handles])


# ---------------------------------------------------------------------------------------------
# the project's own model


class ProjectAdapter:
    """The project's model (:func:`mdm_props.model.forward`) with a :class:`ModelConfig` and θ (float64)."""

    error_bounds = True  # float64 throughout: the running-error bound of rounding_mode applies
    dtype = torch.float64

    def __init__(self, cfg: ModelConfig, params: dict | None = None, *, seed: int = 0, name: str | None = None):
        if cfg.pos not in ("rope", "none"):
            raise ProbeError(f"cfg.pos must be one of 'rope', 'none' for the probe; got {cfg.pos!r}")
        self.cfg = cfg
        self._params = init_params(cfg, seed) if params is None else params
        self.arch = Architecture(
            name=name or "project",
            vocab=cfg.vocab,
            mask_id=cfg.mask_id,
            readout_offset=cfg.readout_offset,
            n_layers=cfg.n_layers,
            n_heads=cfg.n_heads,
            n_kv_heads=cfg.kv_heads,
            d_head=cfg.d_head,
            rope_pairing=cfg.rope_pairing if cfg.pos == "rope" else None,
            rope_base=cfg.rope_base if cfg.pos == "rope" else None,
            attention=cfg.attention,
            max_len=cfg.max_len,
        )
        self.score_scale = 1.0 / math.sqrt(cfg.d_head)

    @classmethod
    def from_preset(cls, name: str, seed: int = 0, **overrides) -> ProjectAdapter:
        if name not in PRESETS:
            raise ProbeError(f"model must be one of {', '.join(PRESETS)}; got {name!r}")
        return cls(preset(name, **overrides), seed=seed, name=name)

    def parameters(self) -> dict:
        return {k: v.detach() for k, v in self._params.items()}

    def logits(self, params: dict, tokens: torch.Tensor, *, reflected: bool = False, dtype=None) -> torch.Tensor:
        if dtype is not None and dtype != torch.float64:
            params = {k: v.to(dtype) for k, v in params.items()}
        return forward(self.reflect(params) if reflected else params, self.cfg, tokens).logits

    def query_keys(self, params: dict, tokens: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Post-RoPE q, k per layer, recomputed from every layer's input as :func:`forward` does
        (pre-norm, W_Q/W_K, biases, RoPE, kv heads repeated); ``q kᵀ · score_scale`` equals
        ``forward(...).scores`` (checked in tests/test_probe.py)."""
        cfg = self.cfg
        xs = forward(params, cfg, tokens).layer_inputs  # (..., L, T, d)
        pos = torch.arange(tokens.shape[-1], device=tokens.device)
        group = cfg.n_heads // cfg.kv_heads
        out = []
        for layer in range(cfg.n_layers):
            x = xs[..., layer, :, :]
            xn = rms_norm(x, params["norm_attn"][layer], cfg.norm_eps) if cfg.norm == "rms" else x
            q = torch.einsum("hkd,...td->...htk", params["W_Q"][layer], xn)
            k = torch.einsum("hkd,...td->...htk", params["W_K"][layer], xn)
            if cfg.qk_bias:
                q = q + params["b_Q"][layer][:, None, :]
                k = k + params["b_K"][layer][:, None, :]
            if cfg.pos == "rope":
                q = rope_rotate(q, pos, cfg.rope_base, cfg.rope_pairing)
                k = rope_rotate(k, pos, cfg.rope_base, cfg.rope_pairing)
            out.append((q, k.repeat_interleave(group, dim=-3) if group > 1 else k))
        return out

    def handles(self, layer: int, head: int | None = None) -> dict[str, list[Handle]]:
        cfg, names = self.cfg, set(self._params)
        kv = None if head is None else head // (cfg.n_heads // cfg.kv_heads)
        h = (layer,) if head is None else (layer, head)
        hk = (layer,) if head is None else (layer, kv)
        out = {
            "query": [Handle("W_Q", h)] + ([Handle("b_Q", h)] if "b_Q" in names else []),
            "key": [Handle("W_K", hk)] + ([Handle("b_K", hk)] if "b_K" in names else []),
        }
        if cfg.merged_ov:
            out["value"], out["output"] = [Handle("W_OV", h)], []
        else:
            out["value"] = [Handle("W_V", hk)] + ([Handle("b_V", hk)] if "b_V" in names else [])
            out["output"] = [Handle("W_O", h)]
        out["mlp"] = [Handle(n, (layer,)) for n in ("W_gate", "W_up", "W_down") if n in names] if head is None else []
        return out

    def reflect(self, params: dict) -> dict:
        out = dict(params)
        if self.cfg.pos == "rope":
            J = rope_reflection(
                self.cfg.d_head, self.cfg.rope_pairing, dtype=params["W_Q"].dtype, device=params["W_Q"].device
            )
            for n in ("W_Q", "W_K"):
                out[n] = params[n] * J[:, None]
            for n in ("b_Q", "b_K"):
                if n in params:
                    out[n] = params[n] * J
        return out

    def with_attention(self, attention: str) -> ProjectAdapter:
        return ProjectAdapter(
            dataclasses.replace(self.cfg, attention=attention),
            self._params,
            name=f"{self.arch.name} ({attention} mask)",
        )

    def causal_twin(self) -> ProjectAdapter:
        return self.with_attention("causal")

    def modules(self):
        return None  # a pure function: no module tree to attribute dtypes to


# ---------------------------------------------------------------------------------------------
# checkpoints: LLaDA, Dream, Llama, Qwen2 as one functional decoder (mdm_props.checkpoint_reader.Spec)


def _norm(spec: Spec, params: dict, prefix: str, x: torch.Tensor) -> torch.Tensor:
    """The spec's norm of ``x`` over its last axis in x's dtype: RMS ``x̂ = x / sqrt(mean x² + eps)`` times
    ``w`` (``rms``) or ``1 + w`` (``gemma_rms``), or LayerNorm ``(x − mean) / sqrt(var + eps) · w``
    (``layer``); plus ``b`` when the norm has a bias."""
    w = params.get(prefix + ".weight")
    b = params.get(prefix + ".bias")
    w = None if w is None else w.to(x.dtype)
    b = None if b is None else b.to(x.dtype)
    if spec.norm == "layer":
        return F.layer_norm(x, (x.shape[-1],), w, b, spec.norm_eps)
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + spec.norm_eps)
    if w is not None:
        y = y * (1 + w) if spec.norm == "gemma_rms" else y * w
    return y if b is None else y + b


def _lin(params: dict, prefix: str, x: torch.Tensor) -> torch.Tensor:
    b = params.get(prefix + ".bias")
    return F.linear(x, params[prefix + ".weight"].to(x.dtype), None if b is None else b.to(x.dtype))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def decoder_forward(
    spec: Spec,
    params: dict,
    tokens: torch.Tensor,
    *,
    attention: str,
    dtype: torch.dtype,
    reflected: bool = False,
    capture: list | None = None,
) -> torch.Tensor:
    """Logits ``(N, T, vocab)`` of the decoder ``spec`` at every position (no read-out offset), computed
    in ``dtype`` (each weight cast at its use: a no-op when it is held in ``dtype``):

    ``x_0 = s_e E[t]``; per layer ``x += W_O attn(RoPE(J W_Q n(x)), RoPE(J W_K n(x)), W_V n(x))``,
    ``x += W_down (SiLU(W_gate n'(x)) ⊙ W_up n'(x))``; ``z = s_z U n_f(x)`` (biases where the spec has them;
    ``attention`` causal or bidirectional; ``J`` = the C5 reflection, half-split: −1 on the second half of
    each head, applied when ``reflected`` — the same as reflecting the rows of W_Q, W_K and their biases).
    The RoPE tables are computed in float64 and cast to ``dtype``. ``capture`` receives the post-RoPE
    ``(q, k)`` of every layer (kv heads repeated)."""
    N, T = tokens.shape
    dev = tokens.device
    H, K, dk = spec.n_heads, spec.n_kv_heads, spec.d_head
    x = params["model.embed_tokens.weight"][tokens].to(dtype)
    if spec.emb_scale != 1.0:
        x = x * spec.emb_scale
    inv = spec.rope_base ** (-torch.arange(0, dk, 2, device=dev, dtype=torch.float64) / dk)
    ang = torch.arange(T, device=dev, dtype=torch.float64)[:, None] * inv[None, :]
    ang = torch.cat((ang, ang), dim=-1)
    cos, sin = ang.cos().to(dtype), ang.sin().to(dtype)
    J = None
    if reflected:
        J = torch.ones(dk, dtype=dtype, device=dev)
        J[dk // 2 :] = -1.0
    mask = torch.ones(T, T, dtype=torch.bool, device=dev).triu(1) if attention == "causal" else None
    scale = 1.0 / math.sqrt(dk)
    group = H // K
    for layer in range(spec.n_layers):
        p = f"model.layers.{layer}."
        h = _norm(spec, params, p + "input_layernorm", x)
        q = _lin(params, p + "self_attn.q_proj", h).view(N, T, H, dk).transpose(1, 2)
        k = _lin(params, p + "self_attn.k_proj", h).view(N, T, K, dk).transpose(1, 2)
        v = _lin(params, p + "self_attn.v_proj", h).view(N, T, K, dk).transpose(1, 2)
        if J is not None:
            q, k = q * J, k * J
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if group > 1:
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        if capture is not None:
            capture.append((q, k))
        s = (q @ k.transpose(-1, -2)) * scale
        if mask is not None:
            s = s.masked_fill(mask, float("-inf"))
        a = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(N, T, H * dk)
        x = x + _lin(params, p + "self_attn.o_proj", a)
        h = _norm(spec, params, p + "post_attention_layernorm", x)
        gate = F.silu(_lin(params, p + "mlp.gate_proj", h))
        x = x + _lin(params, p + "mlp.down_proj", gate * _lin(params, p + "mlp.up_proj", h))
    x = _norm(spec, params, "model.norm", x)
    head = "model.embed_tokens" if spec.tied else "lm_head"
    b = params.get("lm_head.bias")
    z = F.linear(x, params[head + ".weight"].to(dtype), None if b is None else b.to(dtype))
    return z * spec.logit_scale if spec.logit_scale != 1.0 else z


class DecoderAdapter:
    """A checkpoint (or config) of the LLaDA, Dream, Llama or Qwen2 family (:class:`Spec`), evaluated by
    :func:`decoder_forward` in ``dtype`` on ``device``. ``params``: the canonical-named weights, held in
    ``dtype`` (converted one tensor at a time by :func:`mdm_props.checkpoint_reader.load_weights`)."""

    error_bounds = False  # the running-error rules are not run on checkpoints (2× the weights in radii)

    def __init__(self, spec: Spec, params: dict, *, dtype=torch.float64, name: str | None = None):
        self.spec, self._params, self.dtype = spec, params, dtype
        self.arch = Architecture(
            name=name or spec.family,
            vocab=spec.vocab,
            mask_id=spec.mask_id if spec.mask_id is not None else -1,
            readout_offset=spec.readout_offset,
            n_layers=spec.n_layers,
            n_heads=spec.n_heads,
            n_kv_heads=spec.n_kv_heads,
            d_head=spec.d_head,
            rope_pairing="half-split",
            rope_base=spec.rope_base,
            attention=spec.attention,
            n_tokens=spec.n_tokens,
            max_len=spec.max_len,
        )
        self.score_scale = 1.0 / math.sqrt(spec.d_head)

    def parameters(self) -> dict:
        return dict(self._params)

    def logits(self, params: dict, tokens: torch.Tensor, *, reflected: bool = False, dtype=None) -> torch.Tensor:
        z = decoder_forward(
            self.spec, params, tokens, attention=self.spec.attention, dtype=dtype or self.dtype, reflected=reflected
        )
        return _shift(z, self.arch.readout_offset)

    def query_keys(self, params: dict, tokens: torch.Tensor):
        cap: list = []
        decoder_forward(self.spec, params, tokens, attention=self.spec.attention, dtype=self.dtype, capture=cap)
        return cap

    def handles(self, layer: int, head: int | None = None) -> dict[str, list[Handle]]:
        p, a = f"model.layers.{layer}.", self.arch
        dk = a.d_head
        rows = () if head is None else (slice(head * dk, (head + 1) * dk),)
        kv = 0 if head is None else head // (a.n_heads // a.n_kv_heads)
        krows = () if head is None else (slice(kv * dk, (kv + 1) * dk),)
        cols = () if head is None else (slice(None), slice(head * dk, (head + 1) * dk))

        def some(names, index, bias_index=None):
            out = [Handle(p + n + ".weight", index) for n in names if p + n + ".weight" in self._params]
            bi = index[:1] if bias_index is None else bias_index
            return out + [Handle(p + n + ".bias", bi) for n in names if p + n + ".bias" in self._params]

        return {
            "query": some(("self_attn.q_proj",), rows),
            "key": some(("self_attn.k_proj",), krows),
            "value": some(("self_attn.v_proj",), krows),
            # o_proj's bias is no one head's: it belongs to the layer's output, not to a head's
            "output": some(("self_attn.o_proj",), cols)
            if head is None
            else [Handle(p + "self_attn.o_proj.weight", cols)],
            "mlp": [] if head is not None else some(("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"), ()),
        }

    def with_attention(self, attention: str) -> DecoderAdapter:
        spec = dataclasses.replace(self.spec, attention=attention, attention_source="the probe's contrast")
        return DecoderAdapter(spec, self._params, dtype=self.dtype, name=f"{self.arch.name} ({attention} mask)")

    def causal_twin(self) -> DecoderAdapter:
        return self.with_attention("causal")

    def modules(self):
        return None


def _shift(z: torch.Tensor, offset: int) -> torch.Tensor:
    """Read-out offset ``s``: slot i reads position ``max(i − s, 0)``."""
    if not offset:
        return z
    read = (torch.arange(z.shape[-2], device=z.device) - offset).clamp_min(0)
    return z[..., read, :]


def load_checkpoint(
    path: str,
    *,
    weights: bool,
    attention: str | None = None,
    mask_id: int | None = None,
    readout_offset: int | None = None,
    seed: int = 0,
    dtype=torch.float64,
    device: str = "cpu",
) -> DecoderAdapter:
    """A :class:`DecoderAdapter` from a local directory: ``weights=False`` reads ``config.json`` only
    (seeded random weights), ``weights=True`` the checkpoint's weights too (see
    :mod:`mdm_props.checkpoint_reader`)."""
    raw, cfg_file = read_config(path)
    spec = spec_from_config(raw, cfg_file, attention=attention, mask_id=mask_id, readout_offset=readout_offset)
    params = load_weights(path, spec, dtype, device) if weights else random_weights(spec, dtype, device, seed)
    return DecoderAdapter(spec, params, dtype=dtype, name=f"{spec.family} ({os.path.basename(os.path.normpath(path))})")


def load_hf(path: str, *, weights: bool, mask_id=None, readout_offset=None, seed: int = 0) -> DecoderAdapter:
    """:func:`load_checkpoint` in float64 on the CPU (the name the experiments' round-trip tests use)."""
    return load_checkpoint(path, weights=weights, mask_id=mask_id, readout_offset=readout_offset, seed=seed)


def llada_to_llama_state_dict(state: dict) -> dict:
    """A LLaDA state dict under canonical (Llama) names (:func:`mdm_props.checkpoint_reader.llada_name`)."""
    return {llada_name(k): v for k, v in state.items()}


def project_model_from_checkpoint(adapter: DecoderAdapter):
    """The same weights in the project's model: ``(ModelConfig, params)`` with the llada-like structure
    (RMSNorm, SwiGLU, half-split RoPE, untied head, factored value path, q/k/v biases when present).
    Needs the mask id to be the last id (the project's convention: V real tokens, mask id V), an RMS
    norm with weights and no bias, no o/MLP biases, no embedding or logit scale; the project's logits
    cover the V real tokens, the checkpoint's also the mask id (column V)."""
    from .model import ModelConfig

    s, a, p = adapter.spec, adapter.arch, {k: v.to(torch.float64) for k, v in adapter.parameters().items()}
    if a.mask_id != a.vocab - 1:
        raise ProbeError(f"mask_id must be the last id {a.vocab - 1} to load into the project's model; got {a.mask_id}")
    if s.norm != "rms" or s.norm_bias or not s.norm_affine or s.biases - {"q", "k", "v"} or s.emb_scale != 1.0:
        raise ProbeError("the project's model has affine RMS norms without bias and biases on q, k, v only")
    if s.logit_scale != 1.0 or s.tied:
        raise ProbeError("the project's model has an untied, unscaled head")
    L, H, K, dk, d = a.n_layers, a.n_heads, a.n_kv_heads, a.d_head, s.d_model
    V = a.vocab - 1
    bias = "model.layers.0.self_attn.q_proj.bias" in p
    cfg = ModelConfig(
        vocab=V,
        d_model=d,
        d_head=dk,
        n_heads=H,
        n_kv_heads=K,
        n_layers=L,
        pos="rope",
        rope_base=a.rope_base if a.rope_base is not None else 1e4,
        tied=False,
        merged_ov=False,
        norm="rms",
        final_norm=True,
        mlp="swiglu",
        d_mlp=s.d_mlp,
        qk_bias=bias,
        v_bias=bias,
        rope_pairing="half-split",
        readout_offset=a.readout_offset,
        norm_eps=s.norm_eps,
        max_len=64,
    )

    def stack(fmt, f):
        return torch.stack([f(p[fmt.format(l)]) for l in range(L)])

    lay = "model.layers.{}."
    out = {
        "E": p["model.embed_tokens.weight"],
        "W_Q": stack(lay + "self_attn.q_proj.weight", lambda w: w.view(H, dk, d)),
        "W_K": stack(lay + "self_attn.k_proj.weight", lambda w: w.view(K, dk, d)),
        "W_V": stack(lay + "self_attn.v_proj.weight", lambda w: w.view(K, dk, d)),
        "W_O": stack(lay + "self_attn.o_proj.weight", lambda w: w.view(d, H, dk).permute(1, 0, 2)),
        "U": p["lm_head.weight"][:V],
        "norm_attn": stack(lay + "input_layernorm.weight", lambda w: w),
        "norm_mlp": stack(lay + "post_attention_layernorm.weight", lambda w: w),
        "norm_final": p["model.norm.weight"],
        "W_gate": stack(lay + "mlp.gate_proj.weight", lambda w: w),
        "W_up": stack(lay + "mlp.up_proj.weight", lambda w: w),
        "W_down": stack(lay + "mlp.down_proj.weight", lambda w: w),
    }
    if bias:
        out["b_Q"] = stack(lay + "self_attn.q_proj.bias", lambda w: w.view(H, dk))
        out["b_K"] = stack(lay + "self_attn.k_proj.bias", lambda w: w.view(K, dk))
        out["b_V"] = stack(lay + "self_attn.v_proj.bias", lambda w: w.view(K, dk))
    return cfg, {k: v.detach().clone().contiguous() for k, v in out.items()}


project_model_from_hf = project_model_from_checkpoint  # the name the experiments' round-trip tests use
