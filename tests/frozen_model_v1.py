"""A frozen copy of the one-layer reference model as it was before the deep block (commit 6d2811e).

Only :func:`forward` is used, by tests/test_model_deep.py, to show that the default options of the
current model reproduce it bit for bit. Do not edit."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

POSITIONAL_ENCODINGS = ("rope", "alibi", "t5", "none", "absolute")
RELATIVE_ENCODINGS = ("rope", "alibi", "t5", "none")  # hypothesis H-rel
ATTENTIONS = ("bidirectional", "causal")
ABSOLUTE_KINDS = ("learned", "sinusoidal")


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
        for name in ("residual", "tied", "merged_ov"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False; got {getattr(self, name)!r}")

    @property
    def mask_id(self) -> int:
        return self.vocab

    @property
    def relative(self) -> bool:
        """Hypothesis H-rel: positions enter only the attention scores."""
        return self.pos in RELATIVE_ENCODINGS


# ---------------------------------------------------------------------------------------------
# positional encodings


def rope_frequencies(d_head: int, base: float, *, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """θ_l = base^(−2l/d_head), l = 0 .. d_head/2 − 1."""
    l = torch.arange(d_head // 2, dtype=dtype, device=device)
    return base ** (-2.0 * l / d_head)


def rope_rotate(v: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """Apply R_{position} to the last axis of ``v`` (shape ``(..., T, d_head)``).

    Block l rotates the pair (v_{2l}, v_{2l+1}) by the angle ``position · θ_l`` (counterclockwise),
    so that ``(R_m q)ᵀ(R_n k) = qᵀ R_{n−m} k``.
    """
    theta = rope_frequencies(v.shape[-1], base, dtype=v.dtype, device=v.device)
    angle = positions.to(v.dtype)[:, None] * theta[None, :]  # (T, d_head/2)
    cos, sin = torch.cos(angle), torch.sin(angle)
    even, odd = v[..., 0::2], v[..., 1::2]
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)


def rope_matrix(delta: float, d_head: int, base: float, *, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """The explicit block-diagonal rotation R_δ (d_head × d_head)."""
    return rope_rotate(
        torch.eye(d_head, dtype=dtype, device=device), torch.full((d_head,), float(delta), device=device), base
    ).T


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
    """Per-head W_OV (n_heads, d, d) of one layer (W_O W_V when not merged)."""
    if cfg.merged_ov:
        return params["W_OV"][layer]
    return params["W_O"][layer] @ params["W_V"][layer]


def forward(params: dict, cfg: ModelConfig, tokens: torch.Tensor) -> dict:
    """Run the model on ``tokens`` (..., T). Returns a dict of tensors:

    ``logits`` (..., T, V); ``scores`` and ``attn`` (..., n_layers, n_heads, T, T) indexed by
    query i then key j (masked scores are −inf under causal attention); ``context``
    (..., n_layers, n_heads, T, d) = Σ_j α_ij x_j (the attention-weighted layer input, before W_OV);
    ``inputs`` (..., T, d), the first layer's x; ``hidden`` (..., T, d), the last layer's output.
    """
    T = tokens.shape[-1]
    if T > cfg.max_len:
        raise ValueError(f"tokens: sequence length {T} exceeds max_len={cfg.max_len}")
    x = embed(params, cfg, tokens)
    inputs = x
    positions = torch.arange(T, device=x.device)
    causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
    scores, attns, contexts = [], [], []
    for layer in range(cfg.n_layers):
        q = torch.einsum("hkd,...td->...htk", params["W_Q"][layer], x)
        k = torch.einsum("hkd,...td->...htk", params["W_K"][layer], x)
        if cfg.pos == "rope":
            q, k = rope_rotate(q, positions, cfg.rope_base), rope_rotate(k, positions, cfg.rope_base)
        s = q @ k.transpose(-1, -2) / math.sqrt(cfg.d_head)
        bias = score_bias(params, cfg, layer, T, x)
        if bias is not None:
            s = s + bias
        if cfg.attention == "causal":
            s = s.masked_fill(~causal, float("-inf"))
        a = torch.softmax(s, dim=-1)
        ctx = a @ x.unsqueeze(-3)  # (..., H, T, d)
        out = torch.einsum("hed,...htd->...te", value_matrix(params, cfg, layer), ctx)
        x = x + out if cfg.residual else out
        scores.append(s), attns.append(a), contexts.append(ctx)
    logits = x @ unembedding(params, cfg).T
    stack = lambda xs: torch.stack(xs, dim=-4)  # noqa: E731
    return {
        "logits": logits,
        "scores": stack(scores),
        "attn": stack(attns),
        "context": stack(contexts),
        "inputs": inputs,
        "hidden": x,
    }


def parameter_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the parameters :func:`forward` reads for this configuration."""
    L, H, d, k, V = cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_head, cfg.vocab
    shapes = {"E": (V + 1, d), "W_Q": (L, H, k, d), "W_K": (L, H, k, d)}
    if cfg.merged_ov:
        shapes["W_OV"] = (L, H, d, d)
    else:
        shapes["W_V"] = (L, H, k, d)
        shapes["W_O"] = (L, H, d, k)
    if not cfg.tied:
        shapes["U"] = (V, d)
    if cfg.pos == "t5":
        shapes["t5_bias"] = (L, H, 2 * cfg.max_len - 1)
    if cfg.pos == "absolute" and cfg.absolute_kind == "learned":
        shapes["P"] = (cfg.max_len, d)
    return shapes
