"""Closed-form gradients of the one-layer model (THEORY C0.3), reused by the C1/C3 checkers.

Storage block (value path). At the query slot ``i`` the logits are ``z = U h``,
``h = x_i + Σ_h W_OV^h c^h`` (``c^h = Σ_j α^h_ij x_j``, the head's context), and the loss is
``L = −log softmax(z)[y]``, so ``∂L/∂z = p − y`` and, since ``c^h`` does not depend on ``W_OV``
in a one-layer model,

    ∂L/∂W_OV^h = Uᵀ (p − y) (c^h)ᵀ        (one d × d outer product per head).

Route block (query/key path). For one score ``s_ij = q_iᵀ R_{j−i} k_j / √d_k`` with
``q_i = W_Q x_i``, ``k_j = W_K x_j`` (``R = I`` without RoPE; additive biases do not depend on
``W_Q``, ``W_K``):

    ∂s_ij/∂W_Q = R_{j−i} k_j x_iᵀ / √d_k,      ∂s_ij/∂W_K = R_{j−i}ᵀ q_i x_jᵀ / √d_k.
"""

from __future__ import annotations

import math

import torch

from .facts import Query
from .model import ModelConfig, embed, forward, rope_matrix, unembedding
from .validation import require_int


def _require_one_layer_merged(cfg: ModelConfig) -> None:
    if cfg.n_layers != 1:
        raise ValueError(f"cfg.n_layers must be 1 for the closed-form storage gradient; got {cfg.n_layers}")
    if not cfg.merged_ov:
        raise ValueError("cfg.merged_ov must be True: the closed form is the gradient with respect to W_OV")


def storage_gradient_closed_form(params: dict, cfg: ModelConfig, query: Query) -> torch.Tensor:
    """∂L/∂W_OV for layer 0, shape (n_heads, d, d): head h gets Uᵀ(p − y)(c^h)ᵀ at the query slot.

    Needs ``n_layers = 1`` and ``merged_ov = True``; any positional encoding, attention, tying or
    residual setting (the residual term ``x_i`` does not depend on ``W_OV``).
    """
    _require_one_layer_merged(cfg)
    if not 0 <= query.target < cfg.vocab:
        raise ValueError(f"query.target must be a real token id in [0, {cfg.vocab - 1}]; got {query.target}")
    out = forward(params, cfg, query.tensor(params["E"].device))
    p = torch.softmax(out.logits[query.slot], dim=-1)
    residual = p - torch.nn.functional.one_hot(torch.tensor(query.target, device=p.device), cfg.vocab).to(p.dtype)
    g = unembedding(params, cfg).T @ residual  # Uᵀ(p − y), (d,)
    c = out.context[0, :, query.slot, :]  # (H, d)
    return g[None, :, None] * c[:, None, :]


def score_gradient_closed_form(
    params: dict, cfg: ModelConfig, tokens: torch.Tensor, i: int, j: int, head: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(∂s_ij/∂W_Q, ∂s_ij/∂W_K) of one layer-0 score of ``head``, each (d_head, d_model).

    ``s_ij`` is the score of query ``i`` on key ``j`` (bias included; it does not depend on
    ``W_Q``, ``W_K``). Under causal attention ``j ≤ i`` is required (masked scores are −inf).
    """
    T = tokens.shape[-1]
    for name, v in (("i", i), ("j", j)):
        require_int(name, v, 0, T - 1)
    require_int("head", head, 0, cfg.n_heads - 1)
    if cfg.attention == "causal" and j > i:
        raise ValueError(f"j must be <= i under causal attention (the score is masked); got i={i}, j={j}")
    x = embed(params, cfg, tokens)
    q = params["W_Q"][0, head] @ x[i]
    k = params["W_K"][0, head] @ x[j]
    if cfg.pos == "rope":
        R = rope_matrix(j - i, cfg.d_head, cfg.rope_base, dtype=x.dtype, device=x.device)
    else:
        R = torch.eye(cfg.d_head, dtype=x.dtype, device=x.device)
    scale = math.sqrt(cfg.d_head)
    return torch.outer(R @ k, x[i]) / scale, torch.outer(R.T @ q, x[j]) / scale
