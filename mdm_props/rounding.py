"""The rounding kit: float64 error bounds of the model's computations, each with its derivation.

Rounding model (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., §2–3): every
float64 operation satisfies fl(a ∘ b) = (a ∘ b)(1 + δ), |δ| ≤ u = 2⁻⁵³, and a length-n dot
product computed in any order satisfies |fl(xᵀy) − xᵀy| ≤ γ_n Σ|x_i y_i|, γ_n = nu/(1 − nu).
Bounds are composed through the computation and multiplied by a stated safety factor; a meta-test
(``tests/meta/test_rounding.py``) perturbs an input and shows the check built on each bound fails.

What lives here is generic (γ_n, elementary functions, RoPE angles, softmax, the running-error bound
of the whole forward pass, gradient bounds, the storage-path ingredients every storage claim uses).
A bound that belongs to one claim lives in that claim's module (``mdm_props/claims/<id>_*.py``).

One rounding story, two engines (compared on the same computations in ``tests/meta/test_rounding_engines.py``:
both sound against the 50-digit oracle on the one-layer forward pass, and within a factor 2 of each other
entrywise, measured 0.95–1.18). This module holds the hand-derived bounds: closed-form tensor functions that
the batched runners evaluate under ``vmap`` and that the storage claims compose into their tolerances, with
the derivation beside each. :mod:`mdm_props.rounding_mode` derives running-error radii automatically, per
aten operation, for computations nobody has bounded by hand (the deep block, autograd's backward). Both
stay: neither covers the other's use.
"""

from __future__ import annotations

import torch

from .validation import require_int

UNIT_ROUNDOFF = 2.0**-53  # u for float64 (round to nearest)


def gamma(n: int) -> float:
    """γ_n = n u / (1 − n u); requires n u < 1."""
    if n < 0 or n * UNIT_ROUNDOFF >= 1:
        raise ValueError(f"n must satisfy 0 <= n and n*u < 1; got {n}")
    return n * UNIT_ROUNDOFF / (1 - n * UNIT_ROUNDOFF)


def dot_error_bound(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """|fl(xᵀy) − xᵀy| ≤ γ_n Σ_i |x_i y_i| over the last axis (n = its length)."""
    n = x.shape[-1]
    return gamma(n) * (x.abs() * y.abs()).sum(-1)


# --- the float64 forward pass against its exact value -------------------------------------
#
# Assumptions, beyond the basic model fl(a ∘ b) = (a ∘ b)(1 + δ), |δ| ≤ u (+ − × ÷ √):
#   * the elementary functions exp, log, sin, cos and pow are accurate to FUNCTION_ULPS = 2 ulp,
#     i.e. a relative error ≤ 2 ulp ≤ 4u of the result (glibc and Sleef, which torch uses on the
#     CPU, claim ≤ 1 ulp in double; the CUDA math library documents ≤ 1 ulp for exp/log and
#     ≤ 2 ulp for sin/cos/pow in double);
#   * a dot product of length n summed in any order (blocked, pairwise, FMA) obeys γ_n;
#   * bounds are first order: magnitudes are taken from the computed float64 intermediates
#     (they differ from the exact ones by a relative O(nu)), and O(u²) terms are dropped.
# FORWARD_SAFETY = 2 covers the dropped second-order terms and library kernels that round once
# more than modelled (e.g. softmax as x · (1/Σ) instead of x/Σ, log-softmax as x − (m + log Σ));
# it is not a fudge for observed failures: the meta-tests report observed/bound ratios ≪ 1.

import math as _math  # noqa: E402

FUNCTION_ULPS = 2
FUNCTION_REL = 2 * FUNCTION_ULPS * UNIT_ROUNDOFF  # 2 ulp of a result r is at most 4u|r|
FORWARD_SAFETY = 2.0


def pow_rel_error(base: float, exponent):
    """Relative error of fl(base ** fl(e)) where ``fl(e)`` carries one rounding: the exponent's
    error |e|u becomes a relative |e| ln(base) u; pow may itself be exp(e · log base) (log and
    the product round: 5|e ln base| u in the argument of exp) plus 2 ulp. Bound:
    (6 |e| |ln base| + 4) u."""
    return (6 * abs(_math.log(base)) * abs(exponent) + 2 * FUNCTION_ULPS) * UNIT_ROUNDOFF


def rope_angle_error(positions: torch.Tensor, d_head: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Angles ``fl(p · θ̂_l)`` (P, d_head/2) as :func:`mdm_props.model.rope_rotate` computes them,
    and a bound on their distance to the exact ``p θ_l``, ``θ_l = base^(−2l/d_head)``:
    θ̂_l carries :func:`pow_rel_error` (exponent 2l/d_head) and the product one more u."""
    from .model import rope_frequencies

    theta = rope_frequencies(d_head, base, dtype=torch.float64, device=positions.device)
    expo = 2.0 * torch.arange(d_head // 2, dtype=torch.float64, device=positions.device) / d_head
    angle = positions.to(torch.float64)[:, None] * theta[None, :]
    return angle, angle.abs() * (pow_rel_error(base, expo) + UNIT_ROUNDOFF)


def rope_rotate_error(v, e_v, cos, sin, e_cos, e_sin):
    """Bound on |fl(R̂ v̂) − R v| for the pairwise rotation (even, odd) ↦ (e c − o s, e s + o c):
    two products and one sum round (γ_2), v̂ carries e_v, ĉ and ŝ carry e_cos, e_sin."""
    ve, vo, ee, eo = v[..., 0::2].abs(), v[..., 1::2].abs(), e_v[..., 0::2], e_v[..., 1::2]
    c, s = cos.abs(), sin.abs()
    g2 = gamma(2)
    even = g2 * (ve * c + vo * s) + c * ee + s * eo + ve * e_cos + vo * e_sin
    odd = g2 * (ve * s + vo * c) + s * ee + c * eo + ve * e_sin + vo * e_cos
    return torch.stack((even, odd), dim=-1).flatten(-2)


def input_error(params: dict, cfg, T: int, x: torch.Tensor) -> torch.Tensor:
    """Error of the layer input x (T, d): 0 for token rows; fl(E + p) rounds once (u|x|) under
    absolute positions; sinusoidal p_{i,2m} = sin(i ω̂_m)·fl(√(2/d)) adds the error of ω̂_m = 10⁴^fl(−2m/d)
    (:func:`pow_rel_error`), of the angle product (u), of sin/cos (FUNCTION_REL) and of the scale (2u)."""
    if cfg.pos != "absolute":
        return torch.zeros_like(x)
    e_x = UNIT_ROUNDOFF * x.abs()
    if cfg.absolute_kind == "sinusoidal":
        d = cfg.d_model
        pos = torch.arange(T, dtype=torch.float64, device=x.device)[:, None]
        expo = torch.arange(0, d, 2, dtype=torch.float64, device=x.device) / d
        freq = 1e4 ** (-expo)
        angle = pos * freq
        e_angle = angle.abs() * (pow_rel_error(1e4, expo) + UNIT_ROUNDOFF)
        scale = _math.sqrt(2.0 / d)
        trig = torch.zeros(T, d, dtype=torch.float64, device=x.device)
        e_trig = torch.zeros_like(trig)
        trig[:, 0::2], trig[:, 1::2] = torch.sin(angle), torch.cos(angle[:, : d // 2])
        e_trig[:, 0::2] = e_angle + FUNCTION_REL * trig[:, 0::2].abs()
        e_trig[:, 1::2] = e_angle[:, : d // 2] + FUNCTION_REL * trig[:, 1::2].abs()
        e_x = e_x + scale * e_trig + 3 * UNIT_ROUNDOFF * scale * trig.abs()
    return e_x


def softmax_error(s: torch.Tensor, e_s: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax over the last axis, computed as exp(s − max)/Σ, and its error bound.

    Propagated: δα_j = α_j (δs_j − Σ_k α_k δs_k) ⇒ α_j (e_j + Σ_k α_k e_k).
    Rounding: exp(fl(s_j − m)) has relative error ρ_j = u|s_j − m| + FUNCTION_REL (the shift m is
    common to every j, so its own value does not matter); the positive sum adds γ_{n−1}; the
    division (or reciprocal-and-multiply) 2u. Total relative: ρ_j + Σ_k α_k ρ_k + γ_{n−1} + 2u.
    Entries outside ``valid`` (causally masked) are exactly 0 and get a 0 bound.
    """
    s = s.masked_fill(~valid, float("-inf"))
    a = torch.softmax(s, dim=-1)
    m = s.amax(dim=-1, keepdim=True)
    rho = torch.where(valid, UNIT_ROUNDOFF * (s - m).abs() + FUNCTION_REL, torch.zeros_like(s))
    e = torch.where(valid, e_s, torch.zeros_like(s))
    n = valid.sum(-1, keepdim=True).to(s.dtype)
    g = (n - 1) * UNIT_ROUNDOFF / (1 - (n - 1) * UNIT_ROUNDOFF)
    rel = e + rho + (a * (e + rho)).sum(-1, keepdim=True) + g + 2 * UNIT_ROUNDOFF
    return a, torch.where(valid, a * rel, torch.zeros_like(s))


def forward_error_bounds(params: dict, cfg, tokens: torch.Tensor, safety: float = FORWARD_SAFETY) -> dict:
    """Running-error bounds for :func:`mdm_props.model.forward` on ``tokens`` (..., T).

    Returns absolute bounds shaped like ``forward``'s outputs — ``scores`` and ``attn``
    (..., n_layers, H, T, T), ``context`` (..., n_layers, H, T, d), ``hidden`` (..., T, d), ``logits``
    (..., T, V) — plus ``logprobs`` (..., T, V) for ``log_softmax(logits)``, each ``safety`` × the first-order bound
    on |float64 value − exact value| (exact arithmetic on the same float64 parameters). Steps:

    * x: see ``input_error``; q = W_Q x, k = W_K x: γ_d |W||x| + |W| e_x.
    * RoPE: angles as :func:`rope_angle_error`; ĉ, ŝ within e_angle + FUNCTION_REL|ĉ|; the
      rotation adds γ_2 (``rope_rotate_error``).
    * s = fl(q̃ᵀk̃)/fl(√d_k): (γ_{d_k}|q̃|ᵀ|k̃| + e_q̃ᵀ|k̃| + |q̃|ᵀe_k̃)/√d_k + 2u|s|; ALiBi
      slopes 2^fl(−8h/H) carry :func:`pow_rel_error` and the bias product u; adding a bias u|s|.
    * α: ``softmax_error``.  c = α x: γ_T|α||x| + |α|e_x + e_α|x|.
    * W_OV (W_O W_V when not merged: γ_{d_k}|W_O||W_V|); out = Σ_h W^h c^h, one sum of H·d
      products: γ_{Hd} Σ_h|W^h||c^h| + Σ_h(|W^h| e_c^h + e_W^h |c^h|); h = x + out: e_x + e_out + u|h|.
    * z = U h: γ_d |h||U|ᵀ + e_h|U|ᵀ.
    * log p_v = z_v − m − log Σ_w exp(z_w − m): propagated e_z_v + Σ_w p_w e_z_w; the sum of exps
      Σ_w p_w(u|z_w − m| + FUNCTION_REL) + γ_{V−1}; the log FUNCTION_REL·log Σ; the final
      subtractions (either association) u(|z_v − m| + |m| + log Σ + |log p_v|).
    """
    from .model import deep_options, embed, rope_rotate, score_bias, unembedding

    if deep_options(cfg):  # written for the §1 block; the deep block's bounds: mdm_props.rounding_mode
        raise ValueError(
            f"cfg sets deep-block options {deep_options(cfg)}; forward_error_bounds covers the one-layer "
            "block of THEORY §1 only (use mdm_props.rounding_mode.with_error_bounds)"
        )
    if tokens.dim() < 1:
        raise ValueError(f"tokens must have shape (..., T); got shape {tuple(tokens.shape)}")
    u = UNIT_ROUNDOFF
    T, d, H, dk = tokens.shape[-1], cfg.d_model, cfg.n_heads, cfg.d_head
    x = embed(params, cfg, tokens)
    e_x = input_error(params, cfg, T, x)
    positions = torch.arange(T, device=x.device)
    valid = torch.ones(T, T, dtype=torch.bool, device=x.device)
    if cfg.attention == "causal":
        valid = valid.tril()
    out: dict[str, list[torch.Tensor]] = {"scores": [], "attn": [], "context": []}
    for layer in range(cfg.n_layers):
        WQ, WK = params["W_Q"][layer], params["W_K"][layer]  # (H, dk, d)
        xh, xa, ex = x.unsqueeze(-3), x.abs().unsqueeze(-3), e_x.unsqueeze(-3)  # (..., 1, T, d)
        q, k = xh @ WQ.transpose(-1, -2), xh @ WK.transpose(-1, -2)  # (..., H, T, dk)
        e_q = gamma(d) * (xa @ WQ.abs().transpose(-1, -2)) + ex @ WQ.abs().transpose(-1, -2)
        e_k = gamma(d) * (xa @ WK.abs().transpose(-1, -2)) + ex @ WK.abs().transpose(-1, -2)
        if cfg.pos == "rope":
            angle, e_angle = rope_angle_error(positions, dk, cfg.rope_base)
            cos, sin = torch.cos(angle), torch.sin(angle)
            e_cos, e_sin = e_angle + FUNCTION_REL * cos.abs(), e_angle + FUNCTION_REL * sin.abs()
            e_q = rope_rotate_error(q, e_q, cos, sin, e_cos, e_sin)
            e_k = rope_rotate_error(k, e_k, cos, sin, e_cos, e_sin)
            q, k = rope_rotate(q, positions, cfg.rope_base), rope_rotate(k, positions, cfg.rope_base)
        qa, ka = q.abs(), k.abs()
        dot = q @ k.transpose(-1, -2)
        e_dot = gamma(dk) * (qa @ ka.transpose(-1, -2)) + e_q @ ka.transpose(-1, -2) + qa @ e_k.transpose(-1, -2)
        s = dot / _math.sqrt(dk)
        e_s = e_dot / _math.sqrt(dk) + 2 * u * s.abs()
        bias = score_bias(params, cfg, layer, T, x)
        if bias is not None:
            s = s + bias
            e_s = e_s + u * s.abs()
            if cfg.pos == "alibi":
                expo = 8.0 * torch.arange(1, H + 1, dtype=torch.float64, device=x.device) / H
                e_s = e_s + bias.abs() * (pow_rel_error(2.0, expo)[:, None, None] + u)
        a, e_a = softmax_error(s, e_s, valid)
        ctx = a @ xh
        e_c = gamma(T) * (a @ xa) + a @ ex + e_a @ xa
        if cfg.merged_ov:
            W, e_W = params["W_OV"][layer], torch.zeros_like(params["W_OV"][layer])
        else:
            W_O, W_V = params["W_O"][layer], params["W_V"][layer]
            W, e_W = W_O @ W_V, gamma(dk) * (W_O.abs() @ W_V.abs())
        upd = torch.einsum("hed,...htd->...te", W, ctx)
        e_upd = gamma(H * d) * torch.einsum("hed,...htd->...te", W.abs(), ctx.abs())
        e_upd = e_upd + torch.einsum("hed,...htd->...te", W.abs(), e_c)
        e_upd = e_upd + torch.einsum("hed,...htd->...te", e_W, ctx.abs())
        if cfg.residual:
            x = x + upd
            e_x = e_x + e_upd + u * x.abs()
        else:
            x, e_x = upd, e_upd
        out["scores"].append(torch.where(valid, e_s, torch.zeros_like(e_s)))
        out["attn"].append(e_a)
        out["context"].append(e_c)
    U = unembedding(params, cfg)
    z = x @ U.T
    e_z = gamma(d) * (x.abs() @ U.abs().T) + e_x @ U.abs().T
    m = z.amax(-1, keepdim=True)
    p = torch.softmax(z, dim=-1)
    log_sum = torch.logsumexp(z - m, dim=-1, keepdim=True)
    lp = z - m - log_sum
    V = cfg.vocab
    e_lp = e_z + (p * e_z).sum(-1, keepdim=True)
    e_lp = e_lp + (p * (u * (z - m).abs() + FUNCTION_REL)).sum(-1, keepdim=True) + gamma(V - 1)
    e_lp = e_lp + FUNCTION_REL * log_sum + u * ((z - m).abs() + m.abs() + log_sum + lp.abs())
    bounds = {name: safety * torch.stack(v, dim=-4) for name, v in out.items()}
    bounds.update(hidden=safety * e_x, logits=safety * e_z, logprobs=safety * e_lp)
    return bounds


def query_loss_error_bound(params: dict, cfg, query, safety: float = FORWARD_SAFETY) -> float:
    """Bound on |facts.query_loss − exact loss|: the log-prob bound at (slot, target) (negation is exact)."""
    return float(
        forward_error_bounds(params, cfg, query.tensor(params["E"].device), safety)["logprobs"][
            query.slot, query.target
        ]
    )


def block_expand(v: torch.Tensor) -> torch.Tensor:
    """(d/2,) per-block values → (d, d) matrix constant on each 2 × 2 diagonal block, 0 elsewhere."""
    return torch.block_diag(*[torch.full((2, 2), float(t), dtype=torch.float64, device=v.device) for t in v])


# Gradients (checked in C0.3, used by every storage claim). Each bound is on |computed − exact| for EITHER
# route (the closed form of mdm_props.gradients or autograd); a comparison of the two routes allows the sum
# of both, 2×.


def storage_gradient_error_bound(params: dict, cfg, query, safety: float = FORWARD_SAFETY) -> torch.Tensor:
    """(H, d, d) bound on |Ĝ − G| for G = ∂L/∂W_OV = Uᵀ(p − y)cᵀ (one layer, merged W_OV), either route:
    :func:`storage_gradient_error_batch` on this draw's forward pass and its forward bounds (safety 1) at
    the query slot, × ``safety``."""
    from .model import forward, unembedding

    tokens = query.tensor(params["E"].device)
    b = forward_error_bounds(params, cfg, tokens, safety=1.0)
    out = forward(params, cfg, tokens)
    i = query.slot
    bound = storage_gradient_error_batch(
        unembedding(params, cfg)[None],
        out.logits[i][None],
        b["logprobs"][i][None],
        out.context[0, :, i, :][None],
        b["context"][0, :, i, :][None],
        query.target,
        tokens.shape[0],
    )[0]
    return safety * bound


def storage_gradient_error_batch(U, logits, e_logp, context, e_context, target: int, T: int) -> torch.Tensor:
    """(K, H, d, d) bound on |Ĝ − G| for G = ∂L/∂W_OV = Uᵀ(p − y)cᵀ, per draw of a batch (safety 1): U
    (K, V, d), the query slot's logits and log-prob bounds e_lp (K, V), its context c and bound e_c
    (K, H, d), y = e_target, T the sequence length. The one formula: :func:`storage_gradient_error_bound`
    (one draw) and :func:`mdm_props.batched.storage_gradient_error_bound` (a batch) both call it.

    p̂ is softmax(ẑ) (closed form) or exp(log p̂) (autograd's log-softmax backward), within
    p_v(e_lp_v + FUNCTION_REL + 2u) either way; r = p − y rounds (u|r|); g = Uᵀr is a length-V
    dot (γ_V|U|ᵀ|r| + |U|ᵀe_r); the outer product g cᵀ rounds once, and autograd forms it as
    a sum over the T positions of which one is nonzero (γ_T): γ_T|g||c| + e_g|c| + |g|e_c.
    """
    u = UNIT_ROUNDOFF
    p = torch.softmax(logits, dim=-1)
    r = p.clone()
    r[..., target] -= 1.0
    e_r = p * (e_logp + FUNCTION_REL + 2 * u) + u * r.abs()
    g = torch.einsum("kvd,kv->kd", U, r)
    e_g = gamma(U.shape[-2]) * torch.einsum("kvd,kv->kd", U.abs(), r.abs()) + torch.einsum("kvd,kv->kd", U.abs(), e_r)
    c, e_c = context.abs(), e_context  # (K, H, d)
    ga = g.abs()[:, None, :, None]
    return gamma(T) * ga * c[:, :, None, :] + e_g[:, None, :, None] * c[:, :, None, :] + ga * e_c[:, :, None, :]


def score_gradient_error_bound(
    params: dict, cfg, tokens: torch.Tensor, i: int, j: int, head: int = 0, safety: float = FORWARD_SAFETY
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds (d_head, d_model) on the error of ∂s_ij/∂W_Q = v xᵢᵀ/√d_k, v = R_{j−i} k_j, and of
    ∂s_ij/∂W_K = w x_jᵀ/√d_k, w = R_{j−i}ᵀ q_i, for either route.

    k_j = W_K x_j within γ_d|W_K||x_j| + |W_K|e_x (q_i likewise). With RoPE the closed form applies
    R̂_{j−i} (entries within e_angle + FUNCTION_REL|R̂| of the exact rotation, then a length-d_k
    matvec, γ_{d_k}); autograd applies R̂_j then R̂_iᵀ (two pairwise rotations, ``rope_rotate_error``
    with the angles of j and i). The bound on v is the larger of the two routes. The outer product,
    the 1/√d_k scale (2u) and autograd's sum over positions (γ_T) add (γ_T + 3u)|v||x|.
    """
    from .model import embed, rope_matrix

    u = UNIT_ROUNDOFF
    x = embed(params, cfg, tokens)
    e_x = input_error(params, cfg, tokens.shape[0], x)
    dk, d, T = cfg.d_head, cfg.d_model, tokens.shape[0]

    def vec(W, a, rot_from, rot_to):
        """v = R_{rot_to − rot_from} W x_a and its bound (rot_from, rot_to: positions of the two rotations)."""
        v = W @ x[a]
        e_v = gamma(d) * (W.abs() @ x[a].abs()) + W.abs() @ e_x[a]
        if cfg.pos != "rope":
            return v, e_v
        delta = rot_to - rot_from
        R = rope_matrix(delta, dk, cfg.rope_base, dtype=x.dtype, device=x.device)
        _, e_ang = rope_angle_error(torch.tensor([float(delta)], device=x.device), dk, cfg.rope_base)
        E_R = block_expand(e_ang[0]) + FUNCTION_REL * R.abs()
        e_closed = gamma(dk) * (R.abs() @ v.abs()) + E_R @ v.abs() + R.abs() @ e_v
        pos = torch.tensor([float(rot_to), float(rot_from)], device=x.device)
        angle, e_angle = rope_angle_error(pos, dk, cfg.rope_base)
        cos, sin = torch.cos(angle), torch.sin(angle)
        e_cos, e_sin = e_angle + FUNCTION_REL * cos.abs(), e_angle + FUNCTION_REL * sin.abs()
        first = rope_matrix(rot_to, dk, cfg.rope_base, dtype=x.dtype, device=x.device) @ v
        e_first = rope_rotate_error(v, e_v, cos[0], sin[0], e_cos[0], e_sin[0])
        e_auto = rope_rotate_error(first, e_first, cos[1], sin[1], e_cos[1], e_sin[1])
        return R @ v, torch.maximum(e_closed, e_auto)

    scale = _math.sqrt(dk)
    out = []
    for W, a, b in ((params["W_K"][0, head], j, i), (params["W_Q"][0, head], i, j)):
        # ∂/∂W_Q uses v = R_{j−i} k_j with x_i; ∂/∂W_K uses w = R_{i−j} q_i with x_j
        v, e_v = vec(W, a, rot_from=b, rot_to=a)
        xb, e_xb = x[b], e_x[b]
        bound = (
            torch.outer(e_v, xb.abs())
            + torch.outer(v.abs(), e_xb)
            + (gamma(T) + 3 * u) * torch.outer(v.abs(), xb.abs())
        )
        out.append(safety * bound / scale)
    return out[0], out[1]


# --- storage-path ingredients (C1, C3, C3v, C4 and later storage claims) -------------------------
# Storage-path bounds. "Exact" means exact arithmetic on the same
# float64 parameters. Ingredients, each first order and taken with safety 1:
#   forward_error_bounds (attention e_α, context e_c, logits e_z, log-probs e_lp of the model),
#   storage_gradient_error_bound (autograd's ∂L/∂W_OV, e_G), p̂ = exp(log p̂) within
#   p (e_lp + FUNCTION_REL + 2u) (probability_error).
# H-orth enters through the measured Gram defect ω (gram_defect): QR gives embeddings that are
# orthonormal only to ~d u, and every place a claim uses E Eᵀ = I adds the term that ω implies.
# STORAGE_SAFETY = 2 multiplies each composed first-order bound once: it covers the dropped O(u²)
# cross terms and one more rounding per kernel than modelled; it was fixed before any test ran.

STORAGE_SAFETY = 2.0


def probability_error(logp: torch.Tensor, e_logp: torch.Tensor) -> torch.Tensor:
    """|p̂ − p| for p̂ = fl(exp(log p̂)) with |log p̂ − log p| ≤ e_logp: p (e_logp + FUNCTION_REL + 2u)
    (the same first-order form as :func:`storage_gradient_error_bound` uses)."""
    return torch.exp(logp) * (e_logp + FUNCTION_REL + 2 * UNIT_ROUNDOFF)


def gram_defect(E: torch.Tensor) -> float:
    """ω of one embedding matrix E (V + 1, d): :func:`gram_defect_batch` of a batch of one."""
    return float(gram_defect_batch(E[None])[0])


def gram_defect_batch(E: torch.Tensor) -> torch.Tensor:
    """ω ≥ max_{s,t} |x_sᵀx_t − δ_st| for the exact Gram matrix of the stored rows of E, per draw (K,) of a
    batch E (K, V + 1, d): the computed Gram's deviation (fl(ĝ − 1) is exact near 1, Sterbenz) plus its
    rounding γ_d |x_s|ᵀ|x_t| ≤ γ_d max_t ‖x_t‖². ω ≈ d u for orthonormal rows from QR; O(1) otherwise."""
    gram = E @ E.transpose(-1, -2)
    eye = torch.eye(E.shape[-2], dtype=E.dtype, device=E.device)
    return (gram - eye).abs().flatten(1).amax(-1) + gamma(E.shape[-1]) * (E * E).sum(-1).amax(-1)


ORTHONORMAL_DEFECT_FACTOR = 1e3  # safety factor of gram_defect_limit over the rounding of orthonormal rows


def gram_defect_limit(d: int) -> float:
    """The largest Gram defect ω (:func:`gram_defect`, or max|W Wᵀ − I| for a square W) that rounding
    alone explains for rows in R^d: 10³ · d · u.

    Derivation: rows from Householder QR (:func:`mdm_props.params.orthonormal_rows`) are orthonormal
    to a worst-case c·d·n·u (Higham, *Accuracy and Stability*, Thm 19.4; n ≤ d rows), in practice
    ≈ √d·u; :func:`gram_defect` adds the computed Gram's own rounding γ_d max‖x‖² ≈ d u. Measured
    over 300 strategy draws: ω ≤ 2.75 d u (tests/meta/test_applicability.py asserts ≤ 10 d u). The factor
    10³ (ORTHONORMAL_DEFECT_FACTOR) covers c·n ≤ 10³ with room; a non-orthonormal draw has
    ω = O(1/√d) ≥ 10⁻¹, ten orders above it at d ≤ 64, so the limit separates "H-orth up to rounding"
    from "H-orth dropped". Below it the checkers' tolerances carry ω explicitly (the defect terms)."""
    require_int("d", d, 1)
    return ORTHONORMAL_DEFECT_FACTOR * d * UNIT_ROUNDOFF


def storage_step_logit_error(U, W, G, e_G, eta: float, c, e_c) -> torch.Tensor:
    """Bound (V,) for one draw (U (V, d), W, G, e_G (H, d, d), c, e_c (H, d)): :func:`storage_step_logit_error_batch`
    of a batch of one."""
    eta_t = torch.tensor([float(eta)], dtype=torch.float64, device=U.device)
    return storage_step_logit_error_batch(U[None], W[None], G[None], e_G[None], eta_t, c[None], e_c[None])[0]


def storage_step_logit_error_batch(U, W, G, e_G, eta: torch.Tensor, c, e_c) -> torch.Tensor:
    """Bound (K, V) on |U Σ_h (Ŵ'^h − W^h) c_h + η U Σ_h G^h c_h| per draw: U (K, V, d), W, G, e_G (K, H, d, d),
    η (K,), c, e_c (K, H, d). The step Ŵ' = fl(W − fl(ηĜ)) differs from W − ηG (exact gradient) by
    γ_2(|W| + 2η|Ĝ|) + η e_G entrywise, read through |U| and |c| + e_c (c = the exact context of the query
    whose logits move). First order, safety 1."""
    eta = eta[:, None, None, None]
    step = gamma(2) * (W.abs() + 2 * eta * G.abs()) + eta * e_G
    return torch.einsum("kvd,kd->kv", U.abs(), torch.einsum("khed,khd->ke", step, c.abs() + e_c))


def context_overlap_error(c_f, c_r, e_c_f, e_c_r) -> float:
    """The bound for one draw's contexts (H, d): :func:`context_overlap_error_batch` of a batch of one."""
    return float(context_overlap_error_batch(c_f[None], c_r[None], e_c_f[None], e_c_r[None])[0])


def context_overlap_error_batch(c_f, c_r, e_c_f, e_c_r) -> torch.Tensor:
    """|fl(Σ_h ĉ_fᵀĉ_r) − Σ_h c_fᵀc_r| ≤ γ_{Hd} Σ|ĉ_f||ĉ_r| + Σ(e_f|ĉ_r| + |ĉ_f|e_r) per draw (K,) for contexts
    (K, H, d) (one sum of H·d products)."""
    H, d = c_f.shape[-2:]
    cf, cr = c_f.abs(), c_r.abs()
    return gamma(H * d) * (cf * cr).sum((-1, -2)) + (e_c_f * cr + cf * e_c_r).sum((-1, -2))


def storage_inner_product_error(G_f, G_r, e_G_f, e_G_r) -> float:
    """The bound for one pair of gradients (any shape): :func:`storage_inner_product_error_batch` of a batch of one."""
    return float(storage_inner_product_error_batch(G_f[None], G_r[None], e_G_f[None], e_G_r[None])[0])


def storage_inner_product_error_batch(G_f, G_r, e_G_f, e_G_r) -> torch.Tensor:
    """|fl(Σ Ĝ_f ∘ Ĝ_r) − ⟨G_f, G_r⟩_F| per draw (K,) for gradients (K, ...) within e_G: one sum of n products
    (n the entries per draw; H d² for ∂L/∂W_OV), γ_n Σ|Ĝ_f||Ĝ_r|, plus Σ(e_f|Ĝ_r| + |Ĝ_f| e_r) (first order,
    safety 1)."""
    n = G_f[0].numel()
    Gf, Gr = G_f.abs().flatten(1), G_r.abs().flatten(1)
    return gamma(n) * (Gf * Gr).sum(-1) + (e_G_f.flatten(1) * Gr + Gf * e_G_r.flatten(1)).sum(-1)
