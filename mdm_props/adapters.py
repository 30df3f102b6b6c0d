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
:class:`HFAdapter` (transformers' native ``LlamaForCausalLM`` / ``Qwen2ForCausalLM`` with
``is_causal=False``; LLaDA-style checkpoints through :func:`llada_to_llama_state_dict`, Dream-style
ones with read-out offset 1). ``transformers`` is optional (extra ``hf``): without it only the project
adapter is available, and :func:`require_transformers` says what to install.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from dataclasses import dataclass

import torch

from .model import PRESETS, ModelConfig, forward, preset, rms_norm, rope_reflection, rope_rotate
from .params import init_params

ROLES = ("query", "key", "value", "output", "mlp")
ROUTE_ROLES = ("query", "key")
HF_ARCHITECTURES = ("LlamaForCausalLM", "Qwen2ForCausalLM")


class ProbeError(ValueError):
    """A model the probe cannot read (bad path, unsupported architecture, missing extra, causal model)."""


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
    attention: str  # declared in the config: "bidirectional" or "causal" (the probe tests it)

    @property
    def real_tokens(self) -> list[int]:
        """Token ids a fact may use: every id the logits cover, except the mask id."""
        return [t for t in range(self.vocab) if t != self.mask_id]


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
    """The project's model (:func:`mdm_props.model.forward`) with a :class:`ModelConfig` and θ."""

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
        )
        self.score_scale = 1.0 / math.sqrt(cfg.d_head)

    @classmethod
    def from_preset(cls, name: str, seed: int = 0, **overrides) -> ProjectAdapter:
        if name not in PRESETS:
            raise ProbeError(f"model must be one of {', '.join(PRESETS)}; got {name!r}")
        return cls(preset(name, **overrides), seed=seed, name=name)

    def parameters(self) -> dict:
        return {k: v.detach() for k, v in self._params.items()}

    def logits(self, params: dict, tokens: torch.Tensor) -> torch.Tensor:
        return forward(params, self.cfg, tokens).logits

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

    def causal_twin(self) -> ProjectAdapter:
        import dataclasses

        return ProjectAdapter(
            dataclasses.replace(self.cfg, attention="causal"), self._params, name=f"{self.arch.name} (causal mask)"
        )

    def modules(self):
        return None  # a pure function: no module tree to attribute dtypes to


# ---------------------------------------------------------------------------------------------
# transformers' Llama and Qwen2 with bidirectional attention


def require_transformers():
    """Import transformers (≥ 5: ``is_causal=False`` for decoder models) or raise :class:`ProbeError`
    saying what to install."""
    try:
        import transformers
    except ImportError:
        raise ProbeError(
            "transformers is not installed: the probe needs the optional extra for Hugging Face "
            'models (pip install -e ".[hf]", i.e. transformers>=5); the project\'s presets work '
            "without it"
        ) from None
    if int(transformers.__version__.split(".")[0]) < 5:
        raise ProbeError(
            f"transformers>=5 is required (is_causal=False for decoder models); found {transformers.__version__}"
        )
    return transformers


class HFAdapter:
    """A transformers ``LlamaForCausalLM`` or ``Qwen2ForCausalLM`` in float64.

    ``mask_id``: the model's mask token; ``readout_offset``: 0 (LLaDA, SMDM) or 1 (Dream: logits at i come
    from h_{i−1}). The model's attention is what its config says (``is_causal``); the probe tests it.
    Evaluated functionally (``torch.func.functional_call``) so that θ, Φθ and gradients share one module.
    """

    def __init__(self, model, *, mask_id: int, readout_offset: int = 0, name: str | None = None):
        require_transformers()
        arch_name = type(model).__name__
        if arch_name not in HF_ARCHITECTURES:
            raise ProbeError(f"unsupported architecture {arch_name!r}; the probe reads {', '.join(HF_ARCHITECTURES)}")
        if readout_offset not in (0, 1):
            raise ProbeError(f"readout_offset must be one of 0, 1; got {readout_offset!r}")
        c = model.config
        self.model = model.to(torch.float64).eval()
        self.config = c
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        vocab = int(c.vocab_size)
        if not 0 <= mask_id < vocab:
            raise ProbeError(f"mask_id must lie in [0, {vocab - 1}] (inside the model's vocabulary); got {mask_id!r}")
        rope = getattr(c, "rope_parameters", None) or {}
        base = rope.get("rope_theta", getattr(c, "rope_theta", None))
        if rope.get("rope_type", "default") != "default":
            raise ProbeError(f"rope_type {rope.get('rope_type')!r} is not supported (plain RoPE only)")
        self.arch = Architecture(
            name=name or arch_name,
            vocab=vocab,
            mask_id=mask_id,
            readout_offset=readout_offset,
            n_layers=c.num_hidden_layers,
            n_heads=c.num_attention_heads,
            n_kv_heads=c.num_key_value_heads,
            d_head=head_dim,
            rope_pairing="half-split",
            rope_base=float(base) if base is not None else None,
            attention="causal" if getattr(c, "is_causal", True) else "bidirectional",
        )
        self.score_scale = self.model.model.layers[0].self_attn.scaling
        self._params = {k: v.detach() for k, v in self.model.named_parameters()}
        self._prefix = "model.layers"

    def parameters(self) -> dict:
        return dict(self._params)

    def _call(self, params, tokens):
        from torch.func import functional_call

        return functional_call(self.model, params, (tokens,), {"use_cache": False}).logits

    def logits(self, params: dict, tokens: torch.Tensor) -> torch.Tensor:
        z = self._call(params, tokens)
        if self.arch.readout_offset:
            read = (torch.arange(tokens.shape[-1], device=z.device) - self.arch.readout_offset).clamp_min(0)
            z = z[..., read, :]
        return z

    def query_keys(self, params: dict, tokens: torch.Tensor):
        """Post-RoPE q, k per layer by forward hooks: q_proj/k_proj outputs and the (cos, sin) the
        attention module receives, rotated by the model's own ``apply_rotary_pos_emb``."""
        captured: dict = {}
        hooks: list = []
        layers = self.model.model.layers
        for i, layer in enumerate(layers):
            attn = layer.self_attn
            hooks.append(attn.q_proj.register_forward_hook(lambda m, a, o, i=i: captured.__setitem__(("q", i), o)))
            hooks.append(attn.k_proj.register_forward_hook(lambda m, a, o, i=i: captured.__setitem__(("k", i), o)))
            hooks.append(
                attn.register_forward_pre_hook(
                    lambda m, a, kw, i=i: captured.__setitem__(("pe", i), kw.get("position_embeddings")),
                    with_kwargs=True,
                )
            )
        try:
            self._call(params, tokens)
        finally:
            for h in hooks:
                h.remove()
        out = []
        for i, layer in enumerate(layers):
            attn = layer.self_attn
            apply = sys.modules[type(attn).__module__].apply_rotary_pos_emb
            shape = (*tokens.shape, -1, self.arch.d_head)
            q = captured[("q", i)].view(shape).transpose(-2, -3)
            k = captured[("k", i)].view(shape).transpose(-2, -3)
            cos, sin = captured[("pe", i)]
            q, k = apply(q, k, cos, sin)
            group = self.arch.n_heads // self.arch.n_kv_heads
            out.append((q, k.repeat_interleave(group, dim=-3) if group > 1 else k))
        return out

    def handles(self, layer: int, head: int | None = None) -> dict[str, list[Handle]]:
        p, a = f"{self._prefix}.{layer}.", self.arch
        dk = a.d_head
        rows = () if head is None else (slice(head * dk, (head + 1) * dk),)
        kv = 0 if head is None else head // (a.n_heads // a.n_kv_heads)
        krows = () if head is None else (slice(kv * dk, (kv + 1) * dk),)
        cols = () if head is None else (slice(None), slice(head * dk, (head + 1) * dk))

        def some(names, index):
            return [Handle(p + n, index) for n in names if p + n in self._params]

        return {
            "query": some(("self_attn.q_proj.weight", "self_attn.q_proj.bias"), rows),
            "key": some(("self_attn.k_proj.weight", "self_attn.k_proj.bias"), krows),
            "value": some(("self_attn.v_proj.weight", "self_attn.v_proj.bias"), krows),
            "output": some(("self_attn.o_proj.weight",), cols),
            "mlp": []
            if head is not None
            else some(("mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"), ()),
        }

    def reflect(self, params: dict) -> dict:
        out = dict(params)
        a = self.arch
        J = rope_reflection(a.d_head, "half-split", dtype=torch.float64)
        for layer in range(a.n_layers):
            for role in ROUTE_ROLES:
                for h in self.handles(layer)[role]:
                    t = params[h.name]
                    heads = t.reshape(-1, a.d_head, *t.shape[1:])
                    Jb = J.view(1, -1, *([1] * (t.dim() - 1))).to(t.device, t.dtype)
                    out[h.name] = (heads * Jb).reshape(t.shape)
        return out

    def causal_twin(self) -> HFAdapter:
        import copy

        twin = copy.deepcopy(self.model)
        twin.config.is_causal = True
        return HFAdapter(
            twin,
            mask_id=self.arch.mask_id,
            readout_offset=self.arch.readout_offset,
            name=f"{self.arch.name} (causal mask)",
        )

    def modules(self):
        return self.model


def hf_model_from_config(config, *, seed: int = 0, bidirectional: bool | None = None):
    """A randomly initialised (seeded) float64 model of a transformers config; ``bidirectional`` sets
    ``config.is_causal = not bidirectional`` (None: keep what the config says)."""
    transformers = require_transformers()
    name = (getattr(config, "architectures", None) or [None])[0] or {
        "llama": "LlamaForCausalLM",
        "qwen2": "Qwen2ForCausalLM",
    }.get(getattr(config, "model_type", ""), None)
    if name not in HF_ARCHITECTURES:
        raise ProbeError(
            f"unsupported architecture {name!r} (model_type {getattr(config, 'model_type', None)!r}); "
            f"the probe reads {', '.join(HF_ARCHITECTURES)}"
        )
    if bidirectional is not None:
        config.is_causal = not bidirectional
    torch.manual_seed(seed)
    return getattr(transformers, name)(config).to(torch.float64)


def load_hf(
    path: str, *, weights: bool, mask_id: int | None = None, readout_offset: int | None = None, seed: int = 0
) -> HFAdapter:
    """An :class:`HFAdapter` from a local directory: ``weights=False`` reads ``config.json`` only (random
    seeded weights), ``weights=True`` loads the checkpoint too (LLaDA names are mapped onto Llama's).
    ``mask_id`` defaults to the config's ``mask_token_id`` (or LLaDA's 126336, Dream's 151666 from the
    config's hints); ``readout_offset`` to 1 for Qwen2 (Dream) and 0 otherwise."""
    transformers = require_transformers()
    if not os.path.isdir(path):
        raise ProbeError(
            f"path {path!r} is not a directory (expected a local transformers config or checkpoint "
            f"directory holding config.json)"
        )
    cfg_file = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_file):
        raise ProbeError(f"path {path!r} holds no config.json")
    with open(cfg_file) as f:
        raw = json.load(f)
    model_type = raw.get("model_type")
    if model_type == "llada":
        raw = llada_config_to_llama(raw)
    elif model_type == "Dream":
        raw = {**raw, "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]}
    if raw.get("model_type") not in ("llama", "qwen2"):
        raise ProbeError(
            f"unsupported architecture: model_type {raw.get('model_type')!r} in {cfg_file}; the probe "
            f"reads llama, qwen2 (Dream) and llada configs"
        )
    if mask_id is None:
        mask_id = raw.get("mask_token_id", {"llada": 126336, "Dream": 151666}.get(model_type))
        if mask_id is None:
            raise ProbeError(f"{cfg_file} names no mask_token_id: pass --mask-id")
    if readout_offset is None:
        readout_offset = 1 if raw["model_type"] == "qwen2" else 0
    raw.setdefault("is_causal", False)
    config_cls = transformers.AutoConfig.for_model(raw["model_type"]).__class__
    config = config_cls(**{k: v for k, v in raw.items() if k != "model_type"})
    model = hf_model_from_config(config, seed=seed)
    if weights:
        state = _read_state_dict(path)
        if any(k.startswith("model.transformer.") for k in state):
            state = llada_to_llama_state_dict(state)
        missing, unexpected = model.load_state_dict({k: v.to(torch.float64) for k, v in state.items()}, strict=False)
        missing = [m for m in missing if not (m == "lm_head.weight" and config.tie_word_embeddings)]
        if missing or unexpected:
            raise ProbeError(
                f"checkpoint in {path!r} does not match {type(model).__name__}: missing "
                f"{missing[:5]}, unexpected {unexpected[:5]}"
            )
    return HFAdapter(
        model,
        mask_id=int(mask_id),
        readout_offset=readout_offset,
        name=f"{type(model).__name__} ({os.path.basename(os.path.normpath(path))})",
    )


def _read_state_dict(path: str) -> dict:
    files = sorted(os.listdir(path))
    st = [f for f in files if f.endswith(".safetensors")]
    if st:
        from safetensors.torch import load_file

        state = {}
        for f in st:
            state.update(load_file(os.path.join(path, f)))
        return state
    pt = [f for f in files if f.endswith(".bin") or f.endswith(".pt")]
    if not pt:
        raise ProbeError(f"path {path!r} holds no weights (*.safetensors, *.bin); use --hf-config for a config only")
    state = {}
    for f in pt:
        state.update(torch.load(os.path.join(path, f), map_location="cpu", weights_only=True))
    return state


# ---------------------------------------------------------------------------------------------
# LLaDA (OLMo-style names, modeling_llada.py's LLaDALlamaBlock) onto transformers' Llama

_LLADA_BLOCK = {
    "q_proj": "self_attn.q_proj",
    "k_proj": "self_attn.k_proj",
    "v_proj": "self_attn.v_proj",
    "attn_out": "self_attn.o_proj",
    "ff_proj": "mlp.gate_proj",
    "up_proj": "mlp.up_proj",
    "ff_out": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ff_norm": "post_attention_layernorm",
}
_LLADA_TOP = {
    "model.transformer.wte.weight": "model.embed_tokens.weight",
    "model.transformer.ln_f.weight": "model.norm.weight",
    "model.transformer.ff_out.weight": "lm_head.weight",
}
_BLOCK_RE = re.compile(r"^model\.transformer\.blocks\.(\d+)\.(\w+)\.(weight|bias)$")


def llada_to_llama_state_dict(state: dict) -> dict:
    """Rename a LLaDA state dict onto transformers' Llama: ``model.transformer.blocks.{l}.{q,k,v}_proj`` →
    ``model.layers.{l}.self_attn.{q,k,v}_proj``, ``attn_out`` → ``o_proj``, ``ff_proj`` (the SiLU-gated
    branch) → ``mlp.gate_proj``, ``up_proj`` → ``mlp.up_proj``, ``ff_out`` → ``mlp.down_proj``,
    ``attn_norm``/``ff_norm`` → ``input_layernorm``/``post_attention_layernorm``, ``transformer.wte`` →
    ``embed_tokens``, ``ln_f`` → ``model.norm``, the untied ``transformer.ff_out`` → ``lm_head``. An
    unknown name raises :class:`ProbeError` (nothing is dropped silently)."""
    out = {}
    for k, v in state.items():
        m = _BLOCK_RE.match(k)
        if m and m.group(2) in _LLADA_BLOCK:
            out[f"model.layers.{m.group(1)}.{_LLADA_BLOCK[m.group(2)]}.{m.group(3)}"] = v
        elif k in _LLADA_TOP:
            out[_LLADA_TOP[k]] = v
        else:
            raise ProbeError(f"state dict name {k!r} is not a LLaDA name the map knows")
    return out


def llada_config_to_llama(raw: dict) -> dict:
    """LLaDA's config.json (OLMo-style keys) as a Llama config dict (bidirectional)."""
    d, H = raw["d_model"], raw["n_heads"]
    return {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": raw.get("embedding_size") or raw["vocab_size"],
        "hidden_size": d,
        "intermediate_size": raw.get("mlp_hidden_size") or raw.get("mlp_ratio", 4) * d,
        "num_hidden_layers": raw["n_layers"],
        "num_attention_heads": H,
        "num_key_value_heads": raw.get("n_kv_heads") or H,
        "rms_norm_eps": raw.get("rms_norm_eps", 1e-5),
        "rope_theta": raw.get("rope_theta", 10000.0),
        "max_position_embeddings": raw.get("max_sequence_length", 4096),
        "tie_word_embeddings": bool(raw.get("weight_tying", False)),
        "attention_bias": bool(raw.get("include_bias", False) or raw.get("include_qkv_bias", False)),
        "is_causal": False,
        "mask_token_id": raw.get("mask_token_id", 126336),
    }


def project_model_from_hf(adapter: HFAdapter):
    """The same weights in the project's model: ``(ModelConfig, params)`` with the llada-like structure
    (RMSNorm, SwiGLU, half-split RoPE, untied head, factored value path, q/k/v biases when present).
    Needs the mask id to be the last id (the project's convention: V real tokens, mask id V); the
    project's logits cover the V real tokens, the transformers model's also the mask id (column V)."""
    from .model import ModelConfig

    c, a, p = adapter.config, adapter.arch, adapter.parameters()
    if a.mask_id != a.vocab - 1:
        raise ProbeError(f"mask_id must be the last id {a.vocab - 1} to load into the project's model; got {a.mask_id}")
    L, H, K, dk, d = a.n_layers, a.n_heads, a.n_kv_heads, a.d_head, c.hidden_size
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
        d_mlp=c.intermediate_size,
        qk_bias=bias,
        v_bias=bias,
        rope_pairing="half-split",
        readout_offset=a.readout_offset,
        norm_eps=c.rms_norm_eps,
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
        "U": p.get("lm_head.weight", p["model.embed_tokens.weight"])[:V],
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
