"""The reference masked diffusion model: one readable file.

A stack of ``n_layers`` blocks, as in THEORY.md §1 and §2b. With the default options (no norm, no
MLP, no biases, interleaved RoPE, read-out offset 0, branch scale 1) it is the one-layer model of §1::

    x_i   = E[token_i]                      (+ p_i under ``pos="absolute"``)
    s_ij  = q_iᵀ R_{j−i} k_j / √d_k  (+ bias(j − i))      q = W_Q x, k = W_K x
    α_i   = softmax_j(s_ij)                 (j ≤ i only under ``attention="causal"``)
    h_i   = x_i + Σ_heads W_OV Σ_j α_ij x_j (no ``x_i`` when ``residual=False``)
    z_i   = U h_i                           (logits over the V real tokens)

The deep block (§2b) adds, per layer ℓ: a pre-norm ``x̃ = N(x)`` (``norm="rms"``: RMSNorm
``x / √(mean(x²) + norm_eps) ⊙ g``, or the identity) read by queries, keys and values;
``q = W_Q x̃ + b_Q``, ``k = W_K x̃ + b_K`` (``qk_bias``) with ``n_kv_heads`` key/value heads (grouped-query
attention: query head h reads kv head ``h // (n_heads / n_kv_heads)``); RoPE on ``interleaved`` pairs
``(2l, 2l+1)`` or ``half-split`` pairs ``(l, l + d_k/2)``; the branch ``ε Σ_h W_OV^h c^h`` (``branch_scale``
ε; with ``merged_ov=False``: ``W_O^h (W_V^{kv(h)} c^h + b_V)``); an optional SwiGLU MLP branch
``x ← x + ε W_down(silu(W_gate N'(x)) ⊙ W_up N'(x))``; after the last layer an optional final norm;
and a read-out offset ``s``: the logits of slot i are ``U h_{max(i − s, 0)}`` (Dream reads one to the left).

Token ids ``0 .. V−1`` are real tokens; id ``V`` is the mask token ``M``. ``U`` is tied to the
first ``V`` rows of ``E`` unless ``tied=False``. ``W_OV = W_O W_V`` is one merged parameter unless
``merged_ov=False``.

:func:`forward` is a pure function of an explicit parameter dict, so ``torch.func.grad``,
``jvp``/``hessian`` and ``vmap`` apply to it. Parameters are stacked over layers and heads (L layers,
H query heads, K kv heads): ``W_Q``: ``(L, H, d_head, d_model)``; ``W_K``: ``(L, K, d_head, d_model)``;
``W_OV``: ``(L, H, d_model, d_model)`` (or ``W_V``: ``(L, K, d_head, d_model)`` and ``W_O``: ``(L, H,
d_model, d_head)``); ``E``: ``(V + 1, d_model)``; ``U`` (untied only): ``(V, d_model)``; ``t5_bias``:
``(L, H, 2 max_len − 1)``; ``P`` (learned absolute only): ``(max_len, d_model)``; then the deep
options' parameters: ``norm_attn``, ``norm_mlp``: ``(L, d_model)`` gains; ``norm_final``: ``(d_model,)``;
``W_gate``, ``W_up``: ``(L, d_mlp, d_model)``; ``W_down``: ``(L, d_model, d_mlp)``; ``b_Q``: ``(L, H,
d_head)``; ``b_K``, ``b_V``: ``(L, K, d_head)``.

:func:`preset` builds toy-width look-alikes of LLaDA, Dream and SMDM (THEORY §2b "Real architectures").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

POSITIONAL_ENCODINGS = ("rope", "alibi", "t5", "none", "absolute")
RELATIVE_ENCODINGS = ("rope", "alibi", "t5", "none")  # hypothesis H-rel
ATTENTIONS = ("bidirectional", "causal")
ABSOLUTE_KINDS = ("learned", "sinusoidal")
NORMS = ("none", "rms")
MLPS = ("none", "swiglu")
ROPE_PAIRINGS = ("interleaved", "half-split")
READOUT_OFFSETS = (0, 1)


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def _positive_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Structure of the model; every field is validated on construction."""

    vocab: int  # V real tokens; the mask token has id V
    d_model: int
    d_head: int
    n_heads: int = 1
    n_layers: int = 1
    pos: str = "rope"
    rope_base: float = 1e4
    absolute_kind: str = "learned"
    attention: str = "bidirectional"
    residual: bool = True
    tied: bool = True
    merged_ov: bool = True
    max_len: int = 16
    # the deep block (THEORY §2b); these defaults keep the one-layer model of §1 bit for bit
    n_kv_heads: int | None = None  # None: n_heads (no grouped-query attention)
    norm: str = "none"  # pre-norm of every branch: "rms" (RMSNorm with a gain) or "none"
    final_norm: bool = False  # RMSNorm after the last layer
    norm_eps: float = 1e-6
    mlp: str = "none"  # "swiglu": an MLP branch after attention in every layer
    d_mlp: int | None = None  # SwiGLU hidden width (None: 2 d_model)
    qk_bias: bool = False
    v_bias: bool = False  # needs merged_ov=False (the bias is added to W_V x̃)
    rope_pairing: str = "interleaved"
    readout_offset: int = 0  # logits of slot i read from position max(i − s, 0)
    branch_scale: float = 1.0  # ε: every residual branch output is multiplied by it

    def __post_init__(self):
        _positive_int("vocab", self.vocab, 2)
        _positive_int("d_model", self.d_model)
        _positive_int("d_head", self.d_head)
        _positive_int("n_heads", self.n_heads)
        _positive_int("n_layers", self.n_layers)
        _positive_int("max_len", self.max_len)
        _choice("pos", self.pos, POSITIONAL_ENCODINGS)
        _choice("attention", self.attention, ATTENTIONS)
        _choice("absolute_kind", self.absolute_kind, ABSOLUTE_KINDS)
        if self.pos == "rope" and self.d_head % 2:
            raise ValueError(f"d_head must be even with pos='rope' (RoPE rotates pairs); got {self.d_head}")
        base = self.rope_base
        if isinstance(base, bool) or not isinstance(base, (int, float)) or not math.isfinite(base) or base <= 1:
            raise ValueError(f"rope_base must be a finite number > 1; got {base!r}")
        for name in ("residual", "tied", "merged_ov", "final_norm", "qk_bias", "v_bias"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False; got {getattr(self, name)!r}")
        if self.n_kv_heads is not None:
            _positive_int("n_kv_heads", self.n_kv_heads)
            if self.n_heads % self.n_kv_heads:
                raise ValueError(
                    f"n_kv_heads must divide n_heads={self.n_heads} (grouped-query attention); got {self.n_kv_heads}"
                )
        _choice("norm", self.norm, NORMS)
        _choice("mlp", self.mlp, MLPS)
        _choice("rope_pairing", self.rope_pairing, ROPE_PAIRINGS)
        if isinstance(self.readout_offset, bool) or self.readout_offset not in READOUT_OFFSETS:
            raise ValueError(f"readout_offset must be one of 0, 1; got {self.readout_offset!r}")
        if self.d_mlp is not None:
            _positive_int("d_mlp", self.d_mlp)
        for name in ("norm_eps", "branch_scale"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a finite number > 0; got {v!r}")
        if self.v_bias and self.merged_ov:
            raise ValueError("v_bias=True needs merged_ov=False (the value bias is added to W_V x̃)")

    @property
    def mask_id(self) -> int:
        return self.vocab

    @property
    def kv_heads(self) -> int:
        """K, the number of key/value heads (n_kv_heads, or n_heads without GQA)."""
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def mlp_width(self) -> int:
        return 2 * self.d_model if self.d_mlp is None else self.d_mlp

    @property
    def relative(self) -> bool:
        """Hypothesis H-rel: positions enter only the attention scores."""
        return self.pos in RELATIVE_ENCODINGS


# ---------------------------------------------------------------------------------------------
# positional encodings


def require_rope(d_head, base) -> None:
    """RoPE rotates pairs: ``d_head`` an even integer >= 2; ``base`` a finite number > 1."""
    if isinstance(d_head, bool) or not isinstance(d_head, int) or d_head < 2 or d_head % 2:
        raise ValueError(f"d_head must be an even integer >= 2 (RoPE rotates pairs); got {d_head!r}")
    if isinstance(base, bool) or not isinstance(base, (int, float)) or not math.isfinite(base) or not base > 1:
        raise ValueError(f"base must be a finite number > 1; got {base!r}")


def require_token_ids(tokens: torch.Tensor, cfg: ModelConfig) -> None:
    """Token ids must be integers in [0, V] (real tokens and the mask id V): E[−1] would silently read
    the mask row. Inside ``torch.func.vmap`` over the tokens the values cannot be read (data-dependent
    control flow), so the check is skipped there; :func:`mdm_props.facts.check_query` and the loss
    functions validate the tokens before any transform."""
    if not isinstance(tokens, torch.Tensor) or tokens.dtype not in (
        torch.int64,
        torch.int32,
        torch.int16,
        torch.int8,
        torch.uint8,
    ):
        raise ValueError(
            f"tokens must be an integer tensor of ids in [0, {cfg.vocab}]; got "
            f"{getattr(tokens, 'dtype', type(tokens).__name__)}"
        )
    if not tokens.numel():
        return
    try:
        lo, hi = int(tokens.min()), int(tokens.max())
    except RuntimeError:  # a batched (vmap) tensor: no data-dependent check possible
        return
    if lo < 0 or hi > cfg.vocab:
        raise ValueError(
            f"tokens must be ids in [0, {cfg.vocab}] (real tokens and the mask id {cfg.vocab}); "
            f"got values in [{lo}, {hi}]"
        )


def rope_frequencies(d_head: int, base: float, *, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """θ_l = base^(−2l/d_head), l = 0 .. d_head/2 − 1."""
    require_rope(d_head, base)
    l = torch.arange(d_head // 2, dtype=dtype, device=device)
    return base ** (-2.0 * l / d_head)


def rope_rotate(v: torch.Tensor, positions: torch.Tensor, base: float, pairing: str = "interleaved") -> torch.Tensor:
    """Apply R_{position} to the last axis of ``v`` (shape ``(..., T, d_head)``).

    Block l rotates the pair (v_{2l}, v_{2l+1}) (``interleaved``) or (v_l, v_{l+d/2}) (``half-split``,
    HF Llama's ``rotate_half``) by the angle ``position · θ_l`` (counterclockwise), so that
    ``(R_m q)ᵀ(R_n k) = qᵀ R_{n−m} k``.
    """
    _choice("pairing", pairing, ROPE_PAIRINGS)
    if v.dim() < 2 or positions.shape != (v.shape[-2],):
        raise ValueError(
            f"positions must have shape (T,) = ({v.shape[-2] if v.dim() >= 2 else '?'},) for v of "
            f"shape (..., T, d_head) = {tuple(v.shape)}; got {tuple(positions.shape)}"
        )
    theta = rope_frequencies(v.shape[-1], base, dtype=v.dtype, device=v.device)
    angle = positions.to(v.dtype)[:, None] * theta[None, :]  # (T, d_head/2)
    cos, sin = torch.cos(angle), torch.sin(angle)
    if pairing == "half-split":
        half = v.shape[-1] // 2
        first, second = v[..., :half], v[..., half:]
        return torch.cat((first * cos - second * sin, first * sin + second * cos), dim=-1)
    even, odd = v[..., 0::2], v[..., 1::2]
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)


def rope_matrix(
    delta: float, d_head: int, base: float, *, dtype=torch.float64, device="cpu", pairing: str = "interleaved"
) -> torch.Tensor:
    """The explicit rotation R_δ (d_head × d_head), block-diagonal for interleaved pairs."""
    require_rope(d_head, base)
    if isinstance(delta, bool) or not math.isfinite(float(delta)):
        raise ValueError(f"delta must be a finite number; got {delta!r}")
    # the positions in ``dtype`` too: a float32 δ (torch's default) would round δ = −5 + 1e-9 to −5
    positions = torch.full((d_head,), float(delta), dtype=dtype, device=device)
    return rope_rotate(torch.eye(d_head, dtype=dtype, device=device), positions, base, pairing).T


def rope_reflection(d_head: int, pairing: str = "interleaved", *, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """J (d_head,) as a diagonal of ±1 with J R_δ J = R_{−δ}: −1 on the second coordinate of every pair
    (odd entries for interleaved pairs, the second half for half-split pairs)."""
    _choice("pairing", pairing, ROPE_PAIRINGS)
    j = torch.ones(d_head, dtype=dtype, device=device)
    if pairing == "half-split":
        j[d_head // 2 :] = -1.0
    else:
        j[1::2] = -1.0
    return j


def alibi_slopes(n_heads: int, *, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """ALiBi slopes m_h = 2^(−8(h+1)/H) (Press et al.); the bias is −m_h |j − i| (symmetric)."""
    h = torch.arange(1, n_heads + 1, dtype=dtype, device=device)
    return 2.0 ** (-8.0 * h / n_heads)


def sinusoidal_positions(max_len: int, d_model: int, *, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """Fixed sinusoidal p_i (Vaswani et al.), scaled by √(2/d) so that ‖p_i‖ ≈ 1 like an embedding row."""
    pos = torch.arange(max_len, dtype=dtype, device=device)[:, None]
    freq = 1e4 ** (-torch.arange(0, d_model, 2, dtype=dtype, device=device) / d_model)
    p = torch.zeros(max_len, d_model, dtype=dtype, device=device)
    p[:, 0::2] = torch.sin(pos * freq)
    p[:, 1::2] = torch.cos(pos * freq[: d_model // 2])
    return p * math.sqrt(2.0 / d_model)


def score_bias(params: dict, cfg: ModelConfig, layer: int, T: int, like: torch.Tensor) -> torch.Tensor | None:
    """Additive score bias (n_heads, T, T) for ``alibi`` and ``t5``; ``None`` otherwise."""
    pos = torch.arange(T, device=like.device)
    offset = pos[None, :] - pos[:, None]  # j − i
    if cfg.pos == "alibi":
        return -alibi_slopes(cfg.n_heads, dtype=like.dtype, device=like.device)[:, None, None] * offset.abs().to(
            like.dtype
        )
    if cfg.pos == "t5":
        return params["t5_bias"][layer][:, offset + cfg.max_len - 1]
    return None


# ---------------------------------------------------------------------------------------------
# the model


def embed(params: dict, cfg: ModelConfig, tokens: torch.Tensor) -> torch.Tensor:
    """Input vectors x_i (..., T, d): token embeddings, plus p_i under absolute positions."""
    x = params["E"][tokens]
    if cfg.pos == "absolute":
        T = tokens.shape[-1]
        if cfg.absolute_kind == "learned":
            p = params["P"][:T]
        else:
            p = sinusoidal_positions(T, cfg.d_model, dtype=x.dtype, device=x.device)
        x = x + p
    return x


def unembedding(params: dict, cfg: ModelConfig) -> torch.Tensor:
    """U (V × d): tied to the real-token rows of E, or its own parameter."""
    return params["E"][: cfg.vocab] if cfg.tied else params["U"]


def value_matrix(params: dict, cfg: ModelConfig, layer: int) -> torch.Tensor:
    """Per-query-head W_OV (n_heads, d, d) of one layer (W_O^h W_V^{kv(h)} when not merged)."""
    if cfg.merged_ov:
        return params["W_OV"][layer]
    W_V = params["W_V"][layer]
    if cfg.kv_heads != cfg.n_heads:
        W_V = W_V.repeat_interleave(cfg.n_heads // cfg.kv_heads, dim=0)
    return params["W_O"][layer] @ W_V  # (H, d, d) = (H, d, dh) @ (H, dh, d)


def rms_norm(x: torch.Tensor, gain: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm over the last axis: x / √(mean(x²) + eps) ⊙ gain (float64 throughout, no cast)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * gain


def _heads(W: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # (..., H, T, dh) = (H, dh, d) @ (..., T, d), H the heads of W (K kv heads for W_K), dh = d_head
    return torch.einsum("hkd,...td->...htk", W, x)


class ForwardOutput(NamedTuple):
    """What :func:`forward` returns, every tensor with the leading axes ``...`` of ``tokens`` (..., T);
    L = n_layers, H = n_heads (query heads), d = d_model. A named tuple, so ``torch.func`` (``vmap``,
    ``grad(has_aux=True)``) maps over it as over any tuple; ``_asdict()`` gives a dict keyed by field."""

    logits: torch.Tensor
    """(..., T, V): z_i = U h_{max(i − readout_offset, 0)}, the logits of slot i over the V real tokens."""
    scores: torch.Tensor
    """(..., L, H, T, T): s_ij = q_iᵀ k_j / √dh (+ bias), query i then key j; −inf where causal attention masks."""
    attn: torch.Tensor
    """(..., L, H, T, T): α_ij = softmax_j(s_ij), the attention of query i to key j."""
    context: torch.Tensor
    """(..., L, H, T, d): c_i = Σ_j α_ij x̃_j, the attention-weighted normalised layer input (before W_OV)."""
    inputs: torch.Tensor
    """(..., T, d): x_i, the first layer's input (embeddings, plus p_i under absolute positions)."""
    layer_inputs: torch.Tensor
    """(..., L, T, d): every layer's input x (before its norm); ``layer_inputs[..., 0, :, :]`` = ``inputs``."""
    hidden: torch.Tensor
    """(..., T, d): h_i, the last layer's output (after the final norm, if any), read by the unembedding."""


def require_params(params, cfg: ModelConfig) -> None:
    """``params`` holds every parameter of ``cfg`` (:func:`parameter_shapes`) at its shape, all of one
    floating dtype, every entry finite: a ValueError names the parameter and what is allowed. Extra
    keys are ignored. Inside ``torch.func.vmap`` the shapes are the per-draw ones and the finiteness of
    the values cannot be read (data-dependent), so that part is skipped there, as for the tokens."""
    if not isinstance(params, dict):
        raise ValueError(f"params must be a dict of tensors; got {type(params).__name__}")
    shapes = parameter_shapes(cfg)
    missing = [n for n in shapes if n not in params]
    if missing:
        raise ValueError(f"params lacks {', '.join(missing)}; this ModelConfig reads {', '.join(shapes)}")
    dtype = None
    for name, shape in shapes.items():
        t = params[name]
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            what = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"params[{name!r}] must be a floating-point tensor (torch.float64 for claims); got {what}")
        if t.shape != shape:
            raise ValueError(f"params[{name!r}] must have shape {shape} for this ModelConfig; got {tuple(t.shape)}")
        if dtype is None:
            dtype = t.dtype
        elif t.dtype != dtype:
            raise ValueError(f"params[{name!r}] must have the dtype of params['E'], {dtype}; got {t.dtype}")
    try:  # one number per tensor: a NaN or ±inf entry makes its sum non-finite (finite entries rarely do)
        if math.isfinite(sum(float(params[n].detach().sum()) for n in shapes)):
            return
    except RuntimeError:  # a batched (vmap) tensor: no data-dependent check possible
        return
    for name in shapes:  # a sum beyond the float range is not a bad entry: look entry by entry
        if not bool(torch.isfinite(params[name]).all()):
            raise ValueError(f"params[{name!r}] must be finite; it holds NaN or ±inf")


def forward(params: dict, cfg: ModelConfig, tokens: torch.Tensor, *, checked: bool = False) -> ForwardOutput:
    """Run the model on ``tokens`` (..., T); the fields and shapes of the result are in :class:`ForwardOutput`.

    The inputs are validated first (:func:`require_params`, :func:`require_token_ids`, at least one
    token, at most ``max_len``); a caller that has validated them already (e.g. once for many calls
    on the same parameters) may pass ``checked=True`` to skip the parameter checks."""
    if not isinstance(cfg, ModelConfig):
        raise ValueError(f"cfg must be a ModelConfig; got {type(cfg).__name__}")
    if not checked:
        require_params(params, cfg)
    require_token_ids(tokens, cfg)
    if tokens.dim() == 0 or tokens.numel() == 0:
        raise ValueError(
            f"tokens must hold at least one token id, shape (..., T) with T >= 1; got shape {tuple(tokens.shape)}"
        )
    T = tokens.shape[-1]
    if T > cfg.max_len:
        raise ValueError(f"tokens: sequence length {T} exceeds max_len={cfg.max_len}")
    x = embed(params, cfg, tokens)
    inputs = x
    positions = torch.arange(T, device=x.device)
    causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
    group = cfg.n_heads // cfg.kv_heads
    eps = cfg.branch_scale
    scores, attns, contexts, layer_inputs = [], [], [], []
    for layer in range(cfg.n_layers):
        layer_inputs.append(x)
        xn = rms_norm(x, params["norm_attn"][layer], cfg.norm_eps) if cfg.norm == "rms" else x
        q = _heads(params["W_Q"][layer], xn)
        k = _heads(params["W_K"][layer], xn)
        if cfg.qk_bias:
            q = q + params["b_Q"][layer][:, None, :]
            k = k + params["b_K"][layer][:, None, :]
        if cfg.pos == "rope":
            q = rope_rotate(q, positions, cfg.rope_base, cfg.rope_pairing)
            k = rope_rotate(k, positions, cfg.rope_base, cfg.rope_pairing)
        if group > 1:
            k = k.repeat_interleave(group, dim=-3)
        s = q @ k.transpose(-1, -2) / math.sqrt(cfg.d_head)  # (..., H, T, T) = (..., H, T, dh) @ (..., H, dh, T)
        bias = score_bias(params, cfg, layer, T, x)
        if bias is not None:
            s = s + bias
        if cfg.attention == "causal":
            s = s.masked_fill(~causal, float("-inf"))
        a = torch.softmax(s, dim=-1)
        ctx = a @ xn.unsqueeze(-3)  # (..., H, T, d) = (..., H, T, T) @ (..., 1, T, d)
        # (..., T, d) = Σ_h (H, d, d) @ (..., H, T, d): the value path W_OV^h applied to c^h, summed over heads
        out = torch.einsum("hed,...htd->...te", value_matrix(params, cfg, layer), ctx)
        if cfg.v_bias:
            b_V = params["b_V"][layer].repeat_interleave(group, dim=0) if group > 1 else params["b_V"][layer]
            out = out + torch.einsum("hek,hk->e", params["W_O"][layer], b_V)  # (d,) = Σ_h (H, d, dh) @ (H, dh)
        if eps != 1.0:
            out = eps * out
        x = x + out if cfg.residual else out
        if cfg.mlp == "swiglu":
            xm = rms_norm(x, params["norm_mlp"][layer], cfg.norm_eps) if cfg.norm == "rms" else x
            # (..., T, m) = (..., T, d) @ (d, m), twice (gate and up), m = d_mlp
            hidden = torch.nn.functional.silu(xm @ params["W_gate"][layer].T) * (xm @ params["W_up"][layer].T)
            mlp = hidden @ params["W_down"][layer].T  # (..., T, d) = (..., T, m) @ (m, d)
            x = x + (eps * mlp if eps != 1.0 else mlp)
        scores.append(s)
        attns.append(a)
        contexts.append(ctx)
    if cfg.final_norm:
        x = rms_norm(x, params["norm_final"], cfg.norm_eps)
    logits = x @ unembedding(params, cfg).T  # (..., T, V) = (..., T, d) @ (d, V)
    if cfg.readout_offset:
        read = (positions - cfg.readout_offset).clamp_min(0)
        logits = logits[..., read, :]
    stack = lambda xs: torch.stack(xs, dim=-4)  # noqa: E731
    return ForwardOutput(
        logits=logits,
        scores=stack(scores),
        attn=stack(attns),
        context=stack(contexts),
        inputs=inputs,
        layer_inputs=torch.stack(layer_inputs, dim=-3),
        hidden=x,
    )


def parameter_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the parameters :func:`forward` reads for this configuration."""
    L, H, K, d, k, V = cfg.n_layers, cfg.n_heads, cfg.kv_heads, cfg.d_model, cfg.d_head, cfg.vocab
    shapes = {"E": (V + 1, d), "W_Q": (L, H, k, d), "W_K": (L, K, k, d)}
    if cfg.merged_ov:
        shapes["W_OV"] = (L, H, d, d)
    else:
        shapes["W_V"] = (L, K, k, d)
        shapes["W_O"] = (L, H, d, k)
    if not cfg.tied:
        shapes["U"] = (V, d)
    if cfg.pos == "t5":
        shapes["t5_bias"] = (L, H, 2 * cfg.max_len - 1)
    if cfg.pos == "absolute" and cfg.absolute_kind == "learned":
        shapes["P"] = (cfg.max_len, d)
    # the deep options' parameters come last, so that a seed draws today's parameters unchanged
    if cfg.norm == "rms":
        shapes["norm_attn"] = (L, d)
        if cfg.mlp != "none":
            shapes["norm_mlp"] = (L, d)
    if cfg.final_norm:
        shapes["norm_final"] = (d,)
    if cfg.mlp == "swiglu":
        m = cfg.mlp_width
        shapes.update(W_gate=(L, m, d), W_up=(L, m, d), W_down=(L, d, m))
    if cfg.qk_bias:
        shapes.update(b_Q=(L, H, k), b_K=(L, K, k))
    if cfg.v_bias:
        shapes["b_V"] = (L, K, k)
    return shapes


_DEEP_DEFAULTS = dict(
    n_kv_heads=None,
    norm="none",
    final_norm=False,
    mlp="none",
    qk_bias=False,
    v_bias=False,
    rope_pairing="interleaved",
    readout_offset=0,
    branch_scale=1.0,
)


def deep_options(cfg: ModelConfig) -> list[str]:
    """The deep-block options (THEORY §2b) that ``cfg`` sets away from the one-layer model of §1
    (``n_kv_heads`` equal to ``n_heads`` counts as unset)."""
    out = [k for k, v in _DEEP_DEFAULTS.items() if getattr(cfg, k) != v]
    return [k for k in out if not (k == "n_kv_heads" and cfg.kv_heads == cfg.n_heads)]


# parameter roles (THEORY §2b): the route reads positions, the storage is position-free
ROUTE_PARAMETERS = ("W_Q", "W_K", "b_Q", "b_K", "t5_bias", "P")
NORM_GAINS = ("norm_attn", "norm_mlp", "norm_final")


def storage_parameters(cfg: ModelConfig) -> tuple[str, ...]:
    """Names of the storage S: every parameter that is not route (E, the value path, MLP, norm gains, U).
    Under ``absolute`` positions ``P`` is route *and* read by the value path (it is not storage)."""
    return tuple(n for n in parameter_shapes(cfg) if n not in ROUTE_PARAMETERS)


# ---------------------------------------------------------------------------------------------
# presets: toy-width look-alikes of real masked diffusion LMs (THEORY §2b "Real architectures")

# what the three modelling files share: a LLaMA-style pre-norm block (RMSNorm, SwiGLU, half-split RoPE),
# untied head, separate W_V and W_O, no biases, read-out at the slot
_LLAMA_BLOCK = dict(
    norm="rms",
    final_norm=True,
    mlp="swiglu",
    rope_pairing="half-split",
    qk_bias=False,
    v_bias=False,
    tied=False,
    merged_ov=False,
    readout_offset=0,
)
_PRESETS = {
    # LLaDA-8B: no GQA, θ = 5e5
    "llada-like": {**_LLAMA_BLOCK, "rope_base": 5e5, "norm_eps": 1e-5},
    # Dream-7B (Qwen2): GQA 7:1 (here 2:1), q/k/v biases, θ = 1e6, read-out shifted by one
    "dream-like": {
        **_LLAMA_BLOCK,
        "rope_base": 1e6,
        "n_kv_heads": 2,
        "qk_bias": True,
        "v_bias": True,
        "readout_offset": 1,
        "norm_eps": 1e-6,
    },
    # SMDM (lit_gpt LLaMA): θ = 1e4
    "smdm-like": {**_LLAMA_BLOCK, "rope_base": 1e4, "norm_eps": 1e-5},
}
PRESETS = tuple(_PRESETS)
_TOY = dict(vocab=8, d_model=16, d_head=4, n_heads=4, n_layers=3, d_mlp=32, pos="rope")


def preset(name: str, **overrides) -> ModelConfig:
    """A toy-width (V = 8, d = 16, d_k = 4, 4 heads, 3 layers, d_mlp = 32) float64 look-alike of
    ``name`` in PRESETS; ``overrides`` replace any ModelConfig field (validated as usual)."""
    _choice("name", name, PRESETS)
    fields = {**_TOY, **_PRESETS[name], **overrides}
    unknown = sorted(set(overrides) - set(ModelConfig.__dataclass_fields__))
    if unknown:
        raise ValueError(f"overrides must name ModelConfig fields; got unknown {unknown}")
    return ModelConfig(**fields)
