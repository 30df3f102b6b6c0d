"""Checkpoint directories for ``mdm-props probe``: model identity, strict configs, weights, memory.

A directory holds ``config.json`` and (for ``--hf-model``) weights: ``*.safetensors`` shards (or
``*.bin``/``*.pt``). Four families are read, all one decoder (pre-norm blocks, half-split RoPE,
SiLU-gated MLP) with different names and options:

- **LLaDA** (``model_type`` ``llada``, ``architectures`` ``LLaDAModelLM``, or an ``auto_map`` naming
  ``modeling_llada``): an MDM; attention bidirectional (upstream hard-codes ``is_causal=False``);
  read-out offset 0; OLMo-style keys and tensor names (``model.transformer.blocks.{l}.q_proj``, …).
- **Dream** (``model_type`` ``Dream``, ``DreamModel``, ``modeling_dream``): an MDM; bidirectional;
  read-out offset 1 (logits of slot i from position i − 1); Qwen2 keys and tensor names.
- **Llama**, **Qwen2** (``model_type`` ``llama``/``qwen2``): autoregressive unless the config sets
  ``is_causal: false`` (no released autoregressive Llama/Qwen2 config sets the key: absence means
  causal), so they are probed as an ARM with their own causal attention and next-token queries.

Every config key is either used (:data:`LLADA_USED`, :data:`HF_USED`), inert for an inference forward
pass (listed with the reason in :data:`INERT`), or refused: :class:`ConfigError` names the key and the
values supported. Values that change the computation are checked against what is implemented.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field

import torch

FAMILIES = ("llada", "dream", "llama", "qwen2")
ATTENTIONS = ("bidirectional", "causal")
MAX_PROBE_LEN = 6  # the longest sequence the probe runs (the attention self-test; shorter models get shorter)
MIN_LEN = 3  # the template "A r B"

# keys that never change an inference forward pass (training, initialisation, generation, tokenizer ids,
# file metadata): accepted with any value; the reason is reported with the config
_INERT_TRAINING = "training only (dropout, initialisation, checkpointing, sharding, precision of training)"
_INERT_GENERATION = "generation or tokenizer only"
_INERT_META = "file metadata"
INERT = {
    **dict.fromkeys(
        (
            "attention_dropout",
            "residual_dropout",
            "embedding_dropout",
            "init_device",
            "init_fn",
            "init_std",
            "init_cutoff_factor",
            "initializer_range",
            "block_group_size",
            "precision",
            "flash_attention",
            "pretraining_tp",
            "max_window_layers",
        ),
        _INERT_TRAINING,
    ),
    **dict.fromkeys(
        (
            "bos_token_id",
            "eos_token_id",
            "pad_token_id",
            "use_cache",
            "output_attentions",
            "output_hidden_states",
            "return_dict",
            "id2label",
            "label2id",
            "tokenizer_class",
            "prefix",
            "sep_token_id",
            "decoder_start_token_id",
            "task_specific_params",
            "problem_type",
            "finetuning_task",
            "chunk_size_feed_forward",
            "torchscript",
            "tf_legacy_loss",
            "use_bfloat16",
            "keys_to_ignore_at_inference",
            "bad_words_ids",
            "begin_suppress_tokens",
            "suppress_tokens",
            "forced_bos_token_id",
            "forced_eos_token_id",
            "num_beams",
            "temperature",
            "top_k",
            "top_p",
        ),
        _INERT_GENERATION,
    ),
    **dict.fromkeys(
        (
            "architectures",
            "auto_map",
            "model_type",
            "_name_or_path",
            "name_or_path",
            "transformers_version",
            "torch_dtype",
            "dtype",
            "_attn_implementation_autoset",
            "_attn_implementation",
        ),
        _INERT_META,
    ),
}
# keys whose value changes the computation: a non-default value is refused
_MUST_BE = {
    "is_encoder_decoder": (False,),
    "add_cross_attention": (False,),
    "tie_encoder_decoder": (False,),
    "pruned_heads": ({},),
    "cross_attention_hidden_size": (None,),
    "is_decoder": (False, True),
}

LLADA_USED = (
    "d_model",
    "n_heads",
    "n_kv_heads",
    "n_layers",
    "mlp_ratio",
    "mlp_hidden_size",
    "activation_type",
    "block_type",
    "alibi",
    "alibi_bias_max",
    "rope",
    "rope_full_precision",
    "rope_theta",
    "attention_layer_norm",
    "attention_layer_norm_with_affine",
    "multi_query_attention",
    "input_emb_norm",
    "layer_norm_type",
    "layer_norm_with_affine",
    "rms_norm_eps",
    "bias_for_layer_norm",
    "include_bias",
    "include_qkv_bias",
    "max_sequence_length",
    "scale_logits",
    "vocab_size",
    "embedding_size",
    "weight_tying",
    "mask_token_id",
)
HF_USED = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "hidden_act",
    "rms_norm_eps",
    "rope_theta",
    "rope_scaling",
    "rope_parameters",
    "max_position_embeddings",
    "tie_word_embeddings",
    "attention_bias",
    "mlp_bias",
    "is_causal",
    "mask_token_id",
    "use_sliding_window",
    "sliding_window",
    "layer_types",
)
LLADA_NORMS = {"rms": "rms", "gemma_rms": "gemma_rms", "default": "layer", "low_precision": "layer"}
KNOWN_MASK_IDS = {"llada": 126336, "dream": 151666}


class ProbeError(ValueError):
    """A model the probe cannot read (bad path, unsupported architecture, missing extra, bad weights)."""


class ConfigError(ProbeError):
    """A config the probe refuses (the message names the file, the key and the values supported)."""


@dataclass(frozen=True)
class Spec:
    """The decoder a checkpoint defines (every field read from its config; see the module docstring)."""

    family: str
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_mlp: int
    vocab: int  # rows of the embedding = logit entries
    n_tokens: int  # token ids a fact may use: [0, n_tokens) minus the mask id
    norm: str  # "rms", "gemma_rms" (x̂ (1 + w)) or "layer" (mean-subtracting LayerNorm)
    norm_eps: float
    norm_affine: bool
    norm_bias: bool
    biases: frozenset  # linear maps with a bias: subset of q k v o gate up down head
    tied: bool
    emb_scale: float  # LLaDA input_emb_norm: x = E[t] · sqrt(d_model)
    logit_scale: float  # LLaDA scale_logits: z · 1/sqrt(d_model)
    rope_base: float
    rope_full_precision: bool
    max_len: int
    attention: str  # the attention the probe uses
    attention_source: str  # why
    readout_offset: int
    mask_id: int | None
    notes: dict = field(default_factory=dict, compare=False)  # key -> how it was read

    @property
    def is_mdm(self) -> bool:
        return self.attention == "bidirectional"

    def layer_names(self, layer: int) -> dict[str, tuple[int, ...]]:
        """Canonical (Llama) tensor names of layer ``layer`` with their shapes."""
        d, dq, dkv, dm = self.d_model, self.n_heads * self.d_head, self.n_kv_heads * self.d_head, self.d_mlp
        p = f"model.layers.{layer}."
        lin = {
            "q": ("self_attn.q_proj", (dq, d)),
            "k": ("self_attn.k_proj", (dkv, d)),
            "v": ("self_attn.v_proj", (dkv, d)),
            "o": ("self_attn.o_proj", (d, dq)),
            "gate": ("mlp.gate_proj", (dm, d)),
            "up": ("mlp.up_proj", (dm, d)),
            "down": ("mlp.down_proj", (d, dm)),
        }
        out: dict[str, tuple[int, ...]] = {}
        for role, (name, shape) in lin.items():
            out[p + name + ".weight"] = shape
            if role in self.biases:
                out[p + name + ".bias"] = (shape[0],)
        for n in ("input_layernorm", "post_attention_layernorm"):
            if self.norm_affine:
                out[p + n + ".weight"] = (d,)
            if self.norm_bias:
                out[p + n + ".bias"] = (d,)
        return out

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor the checkpoint must hold (canonical names) and its shape."""
        out: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (self.vocab, self.d_model)}
        for layer in range(self.n_layers):
            out.update(self.layer_names(layer))
        if self.norm_affine:
            out["model.norm.weight"] = (self.d_model,)
        if self.norm_bias:
            out["model.norm.bias"] = (self.d_model,)
        if not self.tied:
            out["lm_head.weight"] = (self.vocab, self.d_model)
        if "head" in self.biases:
            out["lm_head.bias"] = (self.vocab,)
        return out

    def n_parameters(self, layers=None) -> int:
        """Number of parameters (of ``layers`` only: their attention and MLP weights and biases)."""
        if layers is None:
            return sum(math.prod(s) for s in self.shapes().values())
        return sum(math.prod(s) for l in layers for n, s in self.layer_names(l).items() if "layernorm" not in n)


# ---------------------------------------------------------------------------------------------
# reading a config


def _fail(cfg_file: str, key: str, value, supported: str) -> ConfigError:
    return ConfigError(f"{cfg_file}: {key} = {value!r} is not supported; supported: {supported}")


def _int(cfg_file, raw, key, default=None, minimum=1):
    v = raw.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ConfigError(f"{cfg_file}: {key} must be an integer >= {minimum}; got {v!r}")
    return v


def _pos_float(cfg_file, raw, key, default=None):
    v = raw.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not v > 0:
        raise ConfigError(f"{cfg_file}: {key} must be a finite number > 0; got {v!r}")
    return float(v)


def _bool(cfg_file, raw, key, default):
    v = raw.get(key, default)
    if not isinstance(v, bool):
        raise ConfigError(f"{cfg_file}: {key} must be true or false; got {v!r}")
    return v


def _is(raw, family_hints) -> bool:
    mt = str(raw.get("model_type", "")).lower()
    archs = raw.get("architectures") or []
    amap = json.dumps(raw.get("auto_map") or {}).lower()
    model_types, arch_names, module = family_hints
    return mt in model_types or any(a in arch_names for a in archs if isinstance(a, str)) or module in amap


_LLADA_HINTS = (("llada",), ("LLaDAModelLM",), "modeling_llada")
_DREAM_HINTS = (("dream",), ("DreamModel",), "modeling_dream")


def family_of(raw: dict, cfg_file: str) -> str:
    """``llada``, ``dream``, ``llama`` or ``qwen2`` from ``model_type``, ``architectures``, ``auto_map``."""
    if _is(raw, _LLADA_HINTS):
        return "llada"
    if _is(raw, _DREAM_HINTS):
        return "dream"
    mt = raw.get("model_type")
    if mt in ("llama", "qwen2"):
        return mt
    archs = raw.get("architectures") or []
    if mt is None and archs in (["LlamaForCausalLM"], ["Qwen2ForCausalLM"]):
        return "llama" if archs[0].startswith("Llama") else "qwen2"
    raise ConfigError(
        f"{cfg_file}: model_type {mt!r} (architectures {archs!r}) is not supported; the probe reads "
        f"llada (LLaDAModelLM), Dream (DreamModel), llama and qwen2"
    )


def read_config(path: str) -> tuple[dict, str]:
    """The config dict of directory ``path`` and the file's path (a :class:`ProbeError` naming the file
    and what is wrong otherwise)."""
    if not os.path.isdir(path):
        raise ProbeError(f"{path!r} is not a directory (expected a local checkpoint or config directory)")
    cfg_file = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_file):
        raise ProbeError(f"{path!r} holds no config.json")
    try:
        with open(cfg_file) as f:
            raw = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{cfg_file}: not readable JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{cfg_file}: must hold a JSON object of config keys; got a JSON {type(raw).__name__}")
    return raw, cfg_file


def _check_keys(raw: dict, used, cfg_file: str, family: str) -> dict:
    notes = {}
    for k, v in raw.items():
        if k in used:
            notes[k] = "used"
        elif k in INERT:
            notes[k] = f"inert: {INERT[k]}"
        elif k in _MUST_BE:
            if v not in _MUST_BE[k]:
                raise _fail(cfg_file, k, v, " or ".join(repr(x) for x in _MUST_BE[k]))
            notes[k] = "checked (default)"
        else:
            raise ConfigError(
                f"{cfg_file}: config key {k!r} is not understood for a {family} model; the probe reads "
                f"{', '.join(used)} and ignores only keys that never change a forward pass "
                f"({', '.join(sorted(INERT))})"
            )
    return notes


def _attention(family: str, raw: dict, override: str | None, cfg_file: str) -> tuple[str, str]:
    if override is not None:
        if override not in ATTENTIONS:
            raise ProbeError(f"attention must be one of {', '.join(ATTENTIONS)}; got {override!r}")
        return override, f"--attention {override} (command line; overrides the config)"
    if family in ("llada", "dream"):
        return (
            "bidirectional",
            f"{family} model (config model_type/architectures/auto_map): upstream attention is non-causal",
        )
    v = raw.get("is_causal")
    if v is None:
        return "causal", (
            f"{family} config without is_causal: an autoregressive model (no released autoregressive "
            f"{family} sets the key), probed as an ARM"
        )
    if not isinstance(v, bool):
        raise ConfigError(f"{cfg_file}: is_causal must be true or false; got {v!r}")
    return ("causal", "config is_causal: true") if v else ("bidirectional", "config is_causal: false")


def spec_from_config(
    raw: dict,
    cfg_file: str,
    *,
    attention: str | None = None,
    mask_id: int | None = None,
    readout_offset: int | None = None,
) -> Spec:
    """The :class:`Spec` of a config dict, strictly: see the module docstring."""
    family = family_of(raw, cfg_file)
    att, source = _attention(family, raw, attention, cfg_file)
    if family == "llada":
        notes = _check_keys(raw, LLADA_USED, cfg_file, family)
        spec_kw = _llada(raw, cfg_file)
    else:
        notes = _check_keys(raw, HF_USED, cfg_file, family)
        if family == "dream" and "is_causal" in raw:
            raise ConfigError(f"{cfg_file}: is_causal is not a Dream config key (Dream's attention is non-causal)")
        spec_kw = _hf(raw, cfg_file, family)
    vocab = spec_kw["vocab"]
    cfg_mask = raw.get("mask_token_id", KNOWN_MASK_IDS.get(family))
    if mask_id is None:
        mask_id = cfg_mask
    if mask_id is not None and (isinstance(mask_id, bool) or not isinstance(mask_id, int) or not 0 <= mask_id < vocab):
        raise ProbeError(f"mask id must be a token id in [0, {vocab - 1}] (the model's vocabulary); got {mask_id!r}")
    if att == "bidirectional" and mask_id is None:
        raise ProbeError(f"{cfg_file} names no mask_token_id and the model is probed as an MDM: pass --mask-id")
    if att == "causal":
        if readout_offset not in (None, 0):
            raise ProbeError("--readout-offset applies to a bidirectional model only (an ARM reads next tokens)")
        offset = 0
    else:
        offset = readout_offset if readout_offset is not None else (1 if family == "dream" else 0)
        if offset not in (0, 1):
            raise ProbeError(f"readout offset must be one of 0, 1; got {offset!r}")
    return Spec(
        family=family,
        attention=att,
        attention_source=source,
        readout_offset=offset,
        mask_id=mask_id,  # an ARM's queries need none; kept to exclude it from facts and to map weights back
        notes=notes,
        **spec_kw,
    )


def _llada(raw, f) -> dict:
    d = _int(f, raw, "d_model", 768)
    H = _int(f, raw, "n_heads", 12)
    L = _int(f, raw, "n_layers", 12)
    if d % H:
        raise ConfigError(f"{f}: d_model = {d} must be a multiple of n_heads = {H}")
    mq = raw.get("multi_query_attention")
    if mq not in (None, False, True):
        raise _fail(f, "multi_query_attention", mq, "null, false, true")
    K = 1 if mq else (raw.get("n_kv_heads") or H)
    if isinstance(K, bool) or not isinstance(K, int) or K < 1 or H % K:
        raise ConfigError(f"{f}: n_kv_heads must be an integer >= 1 dividing n_heads = {H}; got {K!r}")
    dm = raw.get("mlp_hidden_size")
    dm = _int(f, raw, "mlp_hidden_size") if dm is not None else _int(f, raw, "mlp_ratio", 4) * d
    for key, ok, supported in (
        ("block_type", ("llama",), "'llama' (LLaDALlamaBlock: separate q/k/v, SiLU-gated MLP)"),
        ("activation_type", ("silu",), "'silu' (the llama block's gate)"),
        ("layer_norm_type", tuple(LLADA_NORMS), ", ".join(LLADA_NORMS)),
    ):
        v = raw.get(key, {"block_type": "sequential", "activation_type": "swiglu", "layer_norm_type": "default"}[key])
        if v not in ok:
            raise _fail(f, key, v, supported)
    for key, must in (("alibi", False), ("rope", True), ("attention_layer_norm", False)):
        v = _bool(f, raw, key, {"alibi": False, "rope": False, "attention_layer_norm": False}[key])
        if v != must:
            raise _fail(f, key, v, f"{str(must).lower()} (the probe's reflection needs plain RoPE attention)")
    norm = LLADA_NORMS[raw.get("layer_norm_type", "default")]
    include_bias = _bool(f, raw, "include_bias", False)
    qkv_bias = _bool(f, raw, "include_qkv_bias", False) or include_bias
    bias_ln = raw.get("bias_for_layer_norm")
    if bias_ln is None:
        bias_ln = include_bias
    elif not isinstance(bias_ln, bool):
        raise ConfigError(f"{f}: bias_for_layer_norm must be true, false or null; got {bias_ln!r}")
    affine = _bool(f, raw, "layer_norm_with_affine", True)
    biases = set()
    if qkv_bias:
        biases |= {"q", "k", "v"}
    if include_bias:
        biases |= {"o", "gate", "up", "down", "head"}
    tied = _bool(f, raw, "weight_tying", True)
    if tied and include_bias:
        raise _fail(f, "include_bias", True, "false with weight_tying (a tied head has no bias)")
    vocab = raw.get("embedding_size") or raw.get("vocab_size", 50257)
    vocab = _int(f, {"embedding_size": vocab}, "embedding_size")
    n_tokens = _int(f, raw, "vocab_size", 50257)
    if n_tokens > vocab:
        raise ConfigError(f"{f}: vocab_size = {n_tokens} exceeds embedding_size = {vocab}")
    return dict(
        d_model=d,
        n_layers=L,
        n_heads=H,
        n_kv_heads=K,
        d_head=d // H,
        d_mlp=dm,
        vocab=vocab,
        n_tokens=n_tokens,
        norm=norm,
        # LLaDA's LayerNorm (default, low_precision) uses eps 1e-5 whatever rms_norm_eps says
        norm_eps=_pos_float(f, raw, "rms_norm_eps", 1e-5) if norm != "layer" else 1e-5,
        norm_affine=affine,
        norm_bias=affine and bias_ln,
        biases=frozenset(biases),
        tied=tied,
        emb_scale=math.sqrt(d) if _bool(f, raw, "input_emb_norm", False) else 1.0,
        logit_scale=1.0 / math.sqrt(d) if _bool(f, raw, "scale_logits", False) else 1.0,
        rope_base=_pos_float(f, raw, "rope_theta", 10000.0),
        rope_full_precision=_bool(f, raw, "rope_full_precision", True),
        max_len=_int(f, raw, "max_sequence_length", 1024, minimum=MIN_LEN),
    )


def _hf(raw, f, family) -> dict:
    d = _int(f, raw, "hidden_size")
    H = _int(f, raw, "num_attention_heads")
    K = _int(f, raw, "num_key_value_heads", H)
    if H % K:
        raise ConfigError(f"{f}: num_key_value_heads = {K} must divide num_attention_heads = {H}")
    dk = raw.get("head_dim")
    if dk is None:
        if d % H:
            raise ConfigError(f"{f}: hidden_size = {d} must be a multiple of num_attention_heads = {H}")
        dk = d // H
    dk = _int(f, {"head_dim": dk}, "head_dim")
    if dk % 2:
        raise ConfigError(f"{f}: head_dim = {dk} must be even (half-split RoPE)")
    act = raw.get("hidden_act", "silu")
    if act != "silu":
        raise _fail(f, "hidden_act", act, "'silu'")
    rope = raw.get("rope_parameters") or {}
    if not isinstance(rope, dict):
        raise ConfigError(f"{f}: rope_parameters must be an object; got {rope!r}")
    extra = set(rope) - {"rope_type", "rope_theta"}
    if rope.get("rope_type", "default") != "default" or extra:
        raise _fail(f, "rope_parameters", rope, "{'rope_type': 'default', 'rope_theta': …} (plain RoPE)")
    if raw.get("rope_scaling") is not None:
        raise _fail(f, "rope_scaling", raw["rope_scaling"], "null (plain RoPE)")
    base = rope.get("rope_theta", raw.get("rope_theta", 10000.0))
    base = _pos_float(f, {"rope_theta": base}, "rope_theta")
    window = raw.get("sliding_window")
    if _bool(f, raw, "use_sliding_window", False) and not (isinstance(window, int) and window >= MAX_PROBE_LEN):
        raise _fail(f, "sliding_window", window, f"an integer >= {MAX_PROBE_LEN} when use_sliding_window is true")
    lt = raw.get("layer_types")
    if lt is not None and (
        not isinstance(lt, list) or any(t not in ("full_attention", "sliding_attention") for t in lt)
    ):
        raise _fail(f, "layer_types", lt, "a list of 'full_attention' / 'sliding_attention'")
    if lt and "sliding_attention" in lt and not (isinstance(window, int) and window >= MAX_PROBE_LEN):
        raise _fail(f, "sliding_window", window, f"an integer >= {MAX_PROBE_LEN} for sliding_attention layers")
    biases = {"q", "k", "v"} if family in ("qwen2", "dream") else set()
    if family == "llama" and _bool(f, raw, "attention_bias", False):
        biases |= {"q", "k", "v", "o"}
    elif family != "llama" and "attention_bias" in raw:
        raise ConfigError(f"{f}: attention_bias is not a {family} key ({family} has q/k/v biases, none on o)")
    if family == "llama" and _bool(f, raw, "mlp_bias", False):
        biases |= {"gate", "up", "down"}
    elif family != "llama" and "mlp_bias" in raw:
        raise ConfigError(f"{f}: mlp_bias is not a {family} key")
    vocab = _int(f, raw, "vocab_size", 32000)
    return dict(
        d_model=d,
        n_layers=_int(f, raw, "num_hidden_layers"),
        n_heads=H,
        n_kv_heads=K,
        d_head=dk,
        d_mlp=_int(f, raw, "intermediate_size"),
        vocab=vocab,
        n_tokens=vocab,
        norm="rms",
        norm_eps=_pos_float(f, raw, "rms_norm_eps", 1e-6),
        norm_affine=True,
        norm_bias=False,
        biases=frozenset(biases),
        tied=_bool(f, raw, "tie_word_embeddings", family == "qwen2"),
        emb_scale=1.0,
        logit_scale=1.0,
        rope_base=base,
        rope_full_precision=True,
        max_len=_int(f, raw, "max_position_embeddings", 2048, minimum=MIN_LEN),
    )


# ---------------------------------------------------------------------------------------------
# weights

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
    "model.transformer.ln_f.bias": "model.norm.bias",
    "model.transformer.ff_out.weight": "lm_head.weight",
    "model.transformer.ff_out.bias": "lm_head.bias",
}
_BLOCK_RE = re.compile(r"^model\.transformer\.blocks\.(\d+)\.(\w+)\.(weight|bias)$")


def llada_name(name: str) -> str:
    """LLaDA's tensor name → the canonical (Llama) name: ``blocks.{l}.{q,k,v}_proj`` → ``layers.{l}.self_attn``,
    ``attn_out`` → ``o_proj``, ``ff_proj`` (the SiLU-gated branch) → ``gate_proj``, ``up_proj`` → ``up_proj``,
    ``ff_out`` → ``down_proj``, ``attn_norm``/``ff_norm`` → ``input_layernorm``/``post_attention_layernorm``,
    ``wte`` → ``embed_tokens``, ``ln_f`` → ``model.norm``, the untied ``transformer.ff_out`` → ``lm_head``.
    An unknown name raises :class:`ProbeError` (nothing is dropped silently)."""
    m = _BLOCK_RE.match(name)
    if m and m.group(2) in _LLADA_BLOCK:
        return f"model.layers.{m.group(1)}.{_LLADA_BLOCK[m.group(2)]}.{m.group(3)}"
    if name in _LLADA_TOP:
        return _LLADA_TOP[name]
    raise ProbeError(f"state dict name {name!r} is not a LLaDA name the map knows")


def weight_files(path: str) -> list[str]:
    files = sorted(os.listdir(path))
    st = [os.path.join(path, f) for f in files if f.endswith(".safetensors")]
    if st:
        return st
    pt = [os.path.join(path, f) for f in files if f.endswith((".bin", ".pt"))]
    if not pt:
        raise ProbeError(f"{path!r} holds no weights (*.safetensors, *.bin); use --hf-config for a config only")
    return pt


def _iter_file(file: str):
    """(name, tensor) of one weight file, one tensor at a time for safetensors (memory-mapped)."""
    if file.endswith(".safetensors"):
        try:
            from safetensors import safe_open
        except ImportError:
            raise ProbeError('reading *.safetensors needs safetensors (pip install -e ".[hf]")') from None
        try:
            handle = safe_open(file, framework="pt", device="cpu")
            names = list(handle.keys())
        except Exception as exc:  # safetensors raises its own SafetensorError for a corrupt header
            raise ProbeError(f"{file}: not a readable safetensors file ({exc})") from None
        for n in names:
            try:
                t = handle.get_tensor(n)
            except Exception as exc:
                raise ProbeError(f"{file}: tensor {n!r} cannot be read ({exc})") from None
            yield n, t
        del handle
        return
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ProbeError(f"{file}: not a readable torch state dict ({exc})") from None
    if not isinstance(state, dict):
        raise ProbeError(f"{file}: must hold a dict of tensors; got {type(state).__name__}")
    yield from state.items()


def load_weights(path: str, spec: Spec, dtype: torch.dtype, device: str) -> dict:
    """Every tensor of the checkpoint, renamed to canonical names and converted to ``dtype`` on ``device``
    one tensor at a time (the peak is the converted weights plus one tensor). Checks names, shapes and
    finiteness against ``spec``; a :class:`ProbeError` names the file and the tensor."""
    want = spec.shapes()
    out: dict = {}
    for file in weight_files(path):
        for name, t in _iter_file(file):
            if not isinstance(t, torch.Tensor) or not t.is_floating_point():
                raise ProbeError(f"{file}: {name!r} is not a floating-point tensor")
            canon = llada_name(name) if spec.family == "llada" else name
            if canon not in want:
                raise ProbeError(
                    f"{file}: tensor {name!r} is not part of the {spec.family} model the config describes "
                    f"(expected names like {next(iter(want))!r})"
                )
            if canon in out:
                raise ProbeError(f"{file}: tensor {name!r} appears in more than one weight file")
            if tuple(t.shape) != want[canon]:
                raise ProbeError(
                    f"{file}: tensor {name!r} has shape {tuple(t.shape)}; the config implies {want[canon]} "
                    f"(weights of another width or depth?)"
                )
            v = t.to(device=device, dtype=dtype)
            if not bool(torch.isfinite(v).all()):
                raise ProbeError(f"{file}: tensor {name!r} holds NaN or infinite values")
            out[canon] = v
            del t
    missing = [n for n in want if n not in out]
    if missing:
        raise ProbeError(f"{path!r} lacks {len(missing)} tensor(s) the config implies, e.g. {missing[:3]}")
    return out


def random_weights(spec: Spec, dtype: torch.dtype, device: str, seed: int, std: float = 0.02) -> dict:
    """Seeded random weights: N(0, std²) matrices and biases 0.1·N(0, std²), norm weights 1 + 0.1·N(0, 1)
    (so that an affine norm is not the identity), drawn on the CPU one tensor at a time."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in spec.shapes().items():
        if "norm" in name and name.endswith(".weight"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
        elif name.endswith(".bias"):
            t = 0.1 * std * torch.randn(shape, generator=g, dtype=torch.float64)
        else:
            t = std * torch.randn(shape, generator=g, dtype=torch.float64)
        out[name] = t.to(device=device, dtype=dtype)
    return out


# ---------------------------------------------------------------------------------------------
# memory


def memory_estimate(spec: Spec, dtype: torch.dtype, layers) -> dict:
    """Bytes the probe holds: the weights in the compute dtype, one gradient of the selected layers (the
    forward query's, kept while the reverse query's streams through per-tensor hooks), the largest tensor
    twice (a gradient in flight in the compute dtype; a cast in the tolerance's rerun, float64 at most) and
    1 GiB for activations, the interpreter and the allocator. ``target``: 1.5 × the weights plus the
    selected layers' storage (issue 23)."""
    b = torch.finfo(dtype).bits // 8
    weights = spec.n_parameters() * b
    selected = spec.n_parameters(layers) * b
    largest = max(math.prod(s) for s in spec.shapes().values())
    estimate = weights + selected + largest * (b + 8) + (1 << 30)
    return {"weights": weights, "selected": selected, "estimate": estimate, "target": int(1.5 * weights + selected)}


def available_memory(device: str) -> int:
    """Free bytes on ``device``: ``MemAvailable`` of /proc/meminfo (CPU) or ``torch.cuda.mem_get_info``."""
    if device == "cuda":
        return int(torch.cuda.mem_get_info()[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


# ---------------------------------------------------------------------------------------------
# writing (random checkpoints for tests and benchmarks)

_LLADA_BLOCK_INV = {v: k for k, v in _LLADA_BLOCK.items()}
_LLADA_TOP_INV = {v: k for k, v in _LLADA_TOP.items()}


def family_name(spec: Spec, canon: str) -> str:
    """The checkpoint's own name of canonical tensor ``canon`` (the inverse of :func:`llada_name` for LLaDA;
    Dream, Llama and Qwen2 use the canonical names)."""
    if spec.family != "llada":
        return canon
    if canon in _LLADA_TOP_INV:
        return _LLADA_TOP_INV[canon]
    _, _, layer, *rest = canon.split(".")
    return f"model.transformer.blocks.{layer}.{_LLADA_BLOCK_INV['.'.join(rest[:-1])]}.{rest[-1]}"


def write_random_checkpoint(
    path: str, raw: dict, *, seed: int = 0, dtype=torch.bfloat16, shard_bytes: int = 1 << 30, std: float = 0.02
) -> Spec:
    """Write ``config.json`` (``raw``) and seeded random weights (:func:`random_weights`' law) in ``dtype``
    under the family's own tensor names, as safetensors shards of at most ``shard_bytes`` each with a
    ``model.safetensors.index.json``; tensors are drawn one at a time (memory: one shard)."""
    from safetensors.torch import save_file

    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(raw, f, indent=2)
    spec = spec_from_config(raw, os.path.join(path, "config.json"), mask_id=raw.get("mask_token_id", 0))
    g = torch.Generator().manual_seed(seed)
    current: dict = {}
    count, size, index = 1, 0, {}

    def flush():
        save_file(current, os.path.join(path, f"model-{count:05d}.safetensors"), metadata={"format": "pt"})

    for canon, shape in spec.shapes().items():
        n = family_name(spec, canon)
        if "norm" in canon and canon.endswith(".weight"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=g, dtype=torch.float32)
        elif canon.endswith(".bias"):
            t = 0.1 * std * torch.randn(shape, generator=g, dtype=torch.float32)
        else:
            t = std * torch.randn(shape, generator=g, dtype=torch.float32)
        t = t.to(dtype)
        nbytes = t.numel() * t.element_size()
        if current and size + nbytes > shard_bytes:
            flush()
            current, count, size = {}, count + 1, 0
        current[n] = t
        index[n] = count
        size += nbytes
    flush()
    total = count
    old = [f"model-{i:05d}.safetensors" for i in range(1, total + 1)]
    new = [f"model-{i:05d}-of-{total:05d}.safetensors" for i in range(1, total + 1)]
    for a, b in zip(old, new, strict=True):
        os.replace(os.path.join(path, a), os.path.join(path, b))
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": {k: new[v - 1] for k, v in index.items()}}, f, indent=1)
    return spec
