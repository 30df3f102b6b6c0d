"""Every numerical bound the claims are checked against, each with its derivation.

Rounding model (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., §2–3): every
float64 operation satisfies fl(a ∘ b) = (a ∘ b)(1 + δ), |δ| ≤ u = 2⁻⁵³, and a length-n dot
product computed in any order satisfies |fl(xᵀy) − xᵀy| ≤ γ_n Σ|x_i y_i|, γ_n = nu/(1 − nu).
Bounds are composed through the computation and multiplied by a stated safety factor; a meta-test
(``tests/meta/test_tolerances.py``) shows each bound rejects a value a few bounds off.
"""

from __future__ import annotations

import torch

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


def matmul_error_bound(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Entrywise |fl(AB) − AB| ≤ γ_n |A||B| (n = the contracted dimension)."""
    return gamma(a.shape[-1]) * (a.abs() @ b.abs())


# --- C0: the float64 model against its exact value (rounding section) -------------------------
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


def pow_rel_error(base: float, exponent: torch.Tensor | float) -> torch.Tensor | float:
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


def _rope_rotate_error(v, e_v, cos, sin, e_cos, e_sin):
    """Bound on |fl(R̂ v̂) − R v| for the pairwise rotation (even, odd) ↦ (e c − o s, e s + o c):
    two products and one sum round (γ_2), v̂ carries e_v, ĉ and ŝ carry e_cos, e_sin."""
    ve, vo, ee, eo = v[..., 0::2].abs(), v[..., 1::2].abs(), e_v[..., 0::2], e_v[..., 1::2]
    c, s = cos.abs(), sin.abs()
    g2 = gamma(2)
    even = g2 * (ve * c + vo * s) + c * ee + s * eo + ve * e_cos + vo * e_sin
    odd = g2 * (ve * s + vo * c) + s * ee + c * eo + ve * e_sin + vo * e_cos
    return torch.stack((even, odd), dim=-1).flatten(-2)


def _input_error(params: dict, cfg, T: int, x: torch.Tensor) -> torch.Tensor:
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


def _softmax_error(s: torch.Tensor, e_s: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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

    * x: see ``_input_error``; q = W_Q x, k = W_K x: γ_d |W||x| + |W| e_x.
    * RoPE: angles as :func:`rope_angle_error`; ĉ, ŝ within e_angle + FUNCTION_REL|ĉ|; the
      rotation adds γ_2 (``_rope_rotate_error``).
    * s = fl(q̃ᵀk̃)/fl(√d_k): (γ_{d_k}|q̃|ᵀ|k̃| + e_q̃ᵀ|k̃| + |q̃|ᵀe_k̃)/√d_k + 2u|s|; ALiBi
      slopes 2^fl(−8h/H) carry :func:`pow_rel_error` and the bias product u; adding a bias u|s|.
    * α: ``_softmax_error``.  c = α x: γ_T|α||x| + |α|e_x + e_α|x|.
    * W_OV (W_O W_V when not merged: γ_{d_k}|W_O||W_V|); out = Σ_h W^h c^h, one sum of H·d
      products: γ_{Hd} Σ_h|W^h||c^h| + Σ_h(|W^h| e_c^h + e_W^h |c^h|); h = x + out: e_x + e_out + u|h|.
    * z = U h: γ_d |h||U|ᵀ + e_h|U|ᵀ.
    * log p_v = z_v − m − log Σ_w exp(z_w − m): propagated e_z_v + Σ_w p_w e_z_w; the sum of exps
      Σ_w p_w(u|z_w − m| + FUNCTION_REL) + γ_{V−1}; the log FUNCTION_REL·log Σ; the final
      subtractions (either association) u(|z_v − m| + |m| + log Σ + |log p_v|).
    """
    from .model import embed, rope_rotate, score_bias, unembedding

    if tokens.dim() < 1:
        raise ValueError(f"tokens must have shape (..., T); got shape {tuple(tokens.shape)}")
    u = UNIT_ROUNDOFF
    T, d, H, dk = tokens.shape[-1], cfg.d_model, cfg.n_heads, cfg.d_head
    x = embed(params, cfg, tokens)
    e_x = _input_error(params, cfg, T, x)
    positions = torch.arange(T, device=x.device)
    valid = torch.ones(T, T, dtype=torch.bool, device=x.device)
    if cfg.attention == "causal":
        valid = valid.tril()
    out = {"scores": [], "attn": [], "context": []}
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
            e_q = _rope_rotate_error(q, e_q, cos, sin, e_cos, e_sin)
            e_k = _rope_rotate_error(k, e_k, cos, sin, e_cos, e_sin)
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
        a, e_a = _softmax_error(s, e_s, valid)
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
    return float(forward_error_bounds(params, cfg, query.tensor(params["E"].device), safety)["logprobs"][query.slot, query.target])


# RoPE facts (C0.1). Reference: the exact rotation R(â) at the *computed* angles â; every entry of
# R̂ = fl(cos/sin(â)) is within F = FUNCTION_REL·|R̂| of it. Angles of δ and −δ are exact negatives,
# and angles a θ̂, b θ̂, (a+b) θ̂ share θ̂, so only the products' roundings (u|angle| each) separate
# R(â)R(b̂) from R(â_{a+b}); rotation entries are 1-Lipschitz in the angle.


def _block_expand(v: torch.Tensor) -> torch.Tensor:
    """(d/2,) per-block values → (d, d) matrix constant on each 2 × 2 diagonal block, 0 elsewhere."""
    return torch.block_diag(*[torch.full((2, 2), float(t), dtype=torch.float64, device=v.device) for t in v])


def rope_orthogonality_bound(R: torch.Tensor, safety: float = FORWARD_SAFETY) -> torch.Tensor:
    """|fl(R̂ᵀR̂) − I| ≤ |R̂|ᵀF + Fᵀ|R̂| + γ_d|R̂|ᵀ|R̂| (R(â) is exactly orthogonal), × safety."""
    Ra = R.abs()
    F = FUNCTION_REL * Ra
    return safety * (Ra.T @ F + F.T @ Ra + gamma(R.shape[-1]) * (Ra.T @ Ra))


def rope_transpose_bound(R_pos: torch.Tensor, R_neg: torch.Tensor, safety: float = FORWARD_SAFETY) -> torch.Tensor:
    """|R̂_δᵀ − R̂_{−δ}| ≤ F_δᵀ + F_{−δ} (the two angles are exact negatives), × safety."""
    return safety * FUNCTION_REL * (R_pos.abs().T + R_neg.abs())


def rope_composition_bound(a: float, b: float, d_head: int, base: float, R_a, R_b, R_ab,
                           safety: float = FORWARD_SAFETY) -> torch.Tensor:
    """|fl(R̂_a R̂_b) − R̂_{a+b}| ≤ γ_d|R̂_a||R̂_b| + F_a|R̂_b| + |R̂_a|F_b + F_{a+b}
    + u(|a| + |b| + |a+b|) θ̂_l on block l (angle roundings), × safety."""
    from .model import rope_frequencies

    theta = rope_frequencies(d_head, base, dtype=torch.float64, device=R_a.device)
    A, B = R_a.abs(), R_b.abs()
    bound = gamma(d_head) * (A @ B) + FUNCTION_REL * (A @ B + A @ B + R_ab.abs())
    bound = bound + _block_expand(UNIT_ROUNDOFF * (abs(a) + abs(b) + abs(a + b)) * theta)
    return safety * bound


def rope_relativity_bound(q: torch.Tensor, k: torch.Tensor, m: float, n: float, base: float,
                          safety: float = FORWARD_SAFETY) -> float:
    """Bound on |fl((R̂_m q)ᵀ(R̂_n k)) − fl(qᵀ fl(R̂_{n−m} k))| for vectors q, k (d_head,).

    Both are compared with qᵀR(Δ)k at the exact angles Δ_l = (n−m)θ̂_l of the computed
    frequencies. Left: each rotation γ_2 + FUNCTION_REL (``_rope_rotate_error``), the dot γ_d, the
    angle roundings u(|m| + |n|)θ̂_l ‖q_l‖‖k_l‖ (qᵀR(φ)k is 1-Lipschitz per block in φ_l with
    constant ‖q_l‖‖k_l‖). Right: R̂_{n−m} within F, the matvec and the dot γ_d each, the angle
    rounding u|n−m|θ̂_l ‖q_l‖‖k_l‖.
    """
    from .model import rope_frequencies, rope_matrix, rope_rotate

    d = q.shape[-1]
    u = UNIT_ROUNDOFF
    pos = torch.tensor([m, n], dtype=torch.float64, device=q.device)
    angle, _ = rope_angle_error(pos, d, base)
    cos, sin = torch.cos(angle), torch.sin(angle)
    e_cos, e_sin = FUNCTION_REL * cos.abs(), FUNCTION_REL * sin.abs()
    zero = torch.zeros(d, dtype=torch.float64, device=q.device)
    rq = rope_rotate(q[None], pos[:1], base)[0]
    rk = rope_rotate(k[None], pos[1:], base)[0]
    e_rq = _rope_rotate_error(q, zero, cos[0], sin[0], e_cos[0], e_sin[0])
    e_rk = _rope_rotate_error(k, zero, cos[1], sin[1], e_cos[1], e_sin[1])
    theta = rope_frequencies(d, base, dtype=torch.float64, device=q.device)
    qn = q.view(-1, 2).norm(dim=-1)
    kn = k.view(-1, 2).norm(dim=-1)
    left = gamma(d) * float(rq.abs() @ rk.abs()) + float(e_rq @ rk.abs() + rq.abs() @ e_rk)
    left += float((u * (abs(m) + abs(n)) * theta * qn * kn).sum())
    R = rope_matrix(n - m, d, base, dtype=torch.float64, device=q.device)
    Rk = R @ k
    e_Rk = gamma(d) * (R.abs() @ k.abs()) + FUNCTION_REL * (R.abs() @ k.abs())
    right = gamma(d) * float(q.abs() @ Rk.abs()) + float(q.abs() @ e_Rk)
    right += float((u * abs(n - m) * theta * qn * kn).sum())
    return safety * (left + right)


# Gradients (C0.3). Each bound is on |computed − exact| for EITHER route (the closed form of
# mdm_props.gradients or autograd); a comparison of the two routes allows the sum of both, 2×.


def storage_gradient_error_bound(params: dict, cfg, query, safety: float = FORWARD_SAFETY) -> torch.Tensor:
    """(H, d, d) bound on |Ĝ − G| for G = ∂L/∂W_OV = Uᵀ(p − y)cᵀ (one layer, merged W_OV).

    From the forward bounds (safety 1) e_z, e_lp (logits, log-probs) and e_c (context) at the query
    slot: p̂ is softmax(ẑ) (closed form) or exp(log p̂) (autograd's log-softmax backward), within
    p_v(e_lp_v + FUNCTION_REL + 2u) either way; p − y rounds (u|p − y|); g = Uᵀ(p − y) is a length-V
    dot (γ_V|U|ᵀ|p − y| + |U|ᵀe_{p−y}); the outer product g cᵀ rounds once, and autograd forms it as
    a sum over the T positions of which one is nonzero (γ_T): γ_T|g||c| + e_g|c| + |g|e_c.
    """
    from .model import forward, unembedding

    tokens = query.tensor(params["E"].device)
    b = forward_error_bounds(params, cfg, tokens, safety=1.0)
    out = forward(params, cfg, tokens)
    i, y = query.slot, query.target
    u = UNIT_ROUNDOFF
    p = torch.softmax(out["logits"][i], dim=-1)
    r = p - torch.nn.functional.one_hot(torch.tensor(y, device=p.device), cfg.vocab).to(p.dtype)
    e_r = p * (b["logprobs"][i] + FUNCTION_REL + 2 * u) + u * r.abs()
    U = unembedding(params, cfg).abs()
    g = unembedding(params, cfg).T @ r
    e_g = gamma(cfg.vocab) * (U.T @ r.abs()) + U.T @ e_r
    c, e_c = out["context"][0, :, i, :], b["context"][0, :, i, :]  # (H, d)
    T = tokens.shape[0]
    bound = gamma(T) * g.abs()[None, :, None] * c.abs()[:, None, :]
    bound = bound + e_g[None, :, None] * c.abs()[:, None, :] + g.abs()[None, :, None] * e_c[:, None, :]
    return safety * bound


def score_gradient_error_bound(params: dict, cfg, tokens: torch.Tensor, i: int, j: int, head: int = 0,
                               safety: float = FORWARD_SAFETY) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds (d_head, d_model) on the error of ∂s_ij/∂W_Q = v xᵢᵀ/√d_k, v = R_{j−i} k_j, and of
    ∂s_ij/∂W_K = w x_jᵀ/√d_k, w = R_{j−i}ᵀ q_i, for either route.

    k_j = W_K x_j within γ_d|W_K||x_j| + |W_K|e_x (q_i likewise). With RoPE the closed form applies
    R̂_{j−i} (entries within e_angle + FUNCTION_REL|R̂| of the exact rotation, then a length-d_k
    matvec, γ_{d_k}); autograd applies R̂_j then R̂_iᵀ (two pairwise rotations, ``_rope_rotate_error``
    with the angles of j and i). The bound on v is the larger of the two routes. The outer product,
    the 1/√d_k scale (2u) and autograd's sum over positions (γ_T) add (γ_T + 3u)|v||x|.
    """
    from .model import embed, rope_matrix

    u = UNIT_ROUNDOFF
    x = embed(params, cfg, tokens)
    e_x = _input_error(params, cfg, tokens.shape[0], x)
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
        E_R = _block_expand(e_ang[0]) + FUNCTION_REL * R.abs()
        e_closed = gamma(dk) * (R.abs() @ v.abs()) + E_R @ v.abs() + R.abs() @ e_v
        pos = torch.tensor([float(rot_to), float(rot_from)], device=x.device)
        angle, e_angle = rope_angle_error(pos, dk, cfg.rope_base)
        cos, sin = torch.cos(angle), torch.sin(angle)
        e_cos, e_sin = e_angle + FUNCTION_REL * cos.abs(), e_angle + FUNCTION_REL * sin.abs()
        first = rope_matrix(rot_to, dk, cfg.rope_base, dtype=x.dtype, device=x.device) @ v
        e_first = _rope_rotate_error(v, e_v, cos[0], sin[0], e_cos[0], e_sin[0])
        e_auto = _rope_rotate_error(first, e_first, cos[1], sin[1], e_cos[1], e_sin[1])
        return R @ v, torch.maximum(e_closed, e_auto)

    scale = _math.sqrt(dk)
    out = []
    for W, a, b in ((params["W_K"][0, head], j, i), (params["W_Q"][0, head], i, j)):
        # ∂/∂W_Q uses v = R_{j−i} k_j with x_i; ∂/∂W_K uses w = R_{i−j} q_i with x_j
        v, e_v = vec(W, a, rot_from=b, rot_to=a)
        xb, e_xb = x[b], e_x[b]
        bound = torch.outer(e_v, xb.abs()) + torch.outer(v.abs(), e_xb) + (gamma(T) + 3 * u) * torch.outer(v.abs(), xb.abs())
        out.append(safety * bound / scale)
    return out[0], out[1]


# The exact masked-diffusion objective (C0.4).


def mdm_objective_error_bound(params: dict, cfg, tokens: torch.Tensor, safety: float = FORWARD_SAFETY) -> float:
    """Bound on |computed − exact| for Σ_{S≠∅} w_S Σ_{i∈S} −log p(x_i | x_S masked), w_S = 1/(|S| C(L,|S|)),
    evaluated in float64 in any order: each log-prob within its forward bound e_lp (safety 1),
    the weight 1/(k C(L,k)) and the product round (2u), and the N = L·2^(L−1) terms are summed
    (γ_N): Σ_S w_S Σ_{i∈S} e_lp_i(S) + (γ_N + 2u) Σ_S w_S ℓ(S)."""
    from math import comb

    from .facts import all_masks
    from .model import forward

    L = tokens.shape[-1]
    masks = all_masks(L, tokens.device)  # (M, L)
    corrupted = torch.where(masks, torch.full_like(masks, cfg.mask_id, dtype=tokens.dtype), tokens)
    e = forward_error_bounds(params, cfg, corrupted, safety=1.0)["logprobs"]  # (M, L, V)
    lp = torch.log_softmax(forward(params, cfg, corrupted)["logits"], dim=-1)
    idx = tokens.expand(len(masks), L).unsqueeze(-1)
    e_t, lp_t = e.gather(-1, idx).squeeze(-1), lp.gather(-1, idx).squeeze(-1)  # (M, L)
    k = masks.sum(-1)
    w = torch.tensor([1.0 / (int(n) * comb(L, int(n))) for n in k.cpu()], dtype=torch.float64, device=tokens.device)
    m = masks.to(torch.float64)
    total_err = float((w * (m * e_t).sum(-1)).sum())
    total_abs = float((w * (m * lp_t.abs()).sum(-1)).sum())
    N = L * 2 ** (L - 1)
    return safety * (total_err + (gamma(N) + 2 * UNIT_ROUNDOFF) * total_abs)


# --- C1 ---
# Storage-path bounds for C1 (reused by C3 and C4). "Exact" means exact arithmetic on the same
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
    """ω ≥ max_{s,t} |x_sᵀx_t − δ_st| for the exact Gram matrix of the stored rows of E: the computed
    Gram's deviation (fl(ĝ − 1) is exact near 1, Sterbenz) plus its rounding γ_d |x_s|ᵀ|x_t| ≤
    γ_d max_t ‖x_t‖². ω ≈ d u for orthonormal rows from QR; O(1) otherwise."""
    gram = E @ E.T
    eye = torch.eye(E.shape[0], dtype=E.dtype, device=E.device)
    return float((gram - eye).abs().max()) + gamma(E.shape[1]) * float((E * E).sum(-1).max())


def value_path_error(U, x_query, W, attn, e_attn, X, n_sum: int) -> torch.Tensor:
    """Bound (V,) on |fl(U(x_q + Σ_h W^h Σ_j α̂_hj x_j)) − U(x_q + Σ_h W^h Σ_j α_hj x_j)| when the
    attention α̂ (H, T) is within e_attn of the exact α (C1a's formula side).

    Every term of the expanded sum passes through at most n_sum roundings to form the context
    (n_sum = T for Σ_j α_j x_j; 2T for the token-aligned Σ_t α(t) x_t, whose α(t) sums T entries
    first and whose product with E adds exact zeros only), H·d for Σ_h W^h c^h, 1 for the residual
    and d for U: γ_{n_sum + Hd + d + 1} |U|(|x_q| + Σ_h |W^h| Σ_j α̂_hj |x_j|), plus the attention
    error |U| Σ_h |W^h| Σ_j e_hj |x_j| (first order)."""
    H, d = W.shape[0], W.shape[-1]
    Xa, Ua, Wa = X.abs(), U.abs(), W.abs()
    mag = x_query.abs() + torch.einsum("hed,hd->e", Wa, attn.abs() @ Xa)
    err = torch.einsum("hed,hd->e", Wa, e_attn @ Xa)
    return gamma(n_sum + H * d + d + 1) * (Ua @ mag) + Ua @ err


def c1b_tolerance(u_A, x_B, W, W_new, G, e_G, eta: float, one_minus_pA: float, e_pA: float,
                  alpha_B, e_alpha_B, omega: float, formula, observed) -> torch.Tensor:
    """Bound (H,) on |Δε_obs − η(1 − p̂_f(A)) α̂^f_h(B)| per head, Δε_obs = fl(u_Aᵀ Ŵ' x_B) − fl(u_Aᵀ W x_B),
    Ŵ' = fl(W − fl(η Ĝ)), all × STORAGE_SAFETY.

    * The two bilinear forms (u_A @ W) @ x_B: γ_{2d} |u_A|ᵀ(|W| + |Ŵ'|)|x_B|; the step's two
      roundings: |Ŵ' − (W − ηĜ)| ≤ γ_2(|W| + 2η|Ĝ|); autograd's Ĝ within e_G: η|u_A|ᵀe_G|x_B|;
      the final subtraction u|Δε_obs|. That bounds the distance to −η u_Aᵀ G x_B (exact G).
    * H-orth: −η u_AᵀGx_B = η [u_AᵀUᵀ(y − p)] [c_hᵀx_B] = η [(1 − p_A) + d₁][α_h(B) + d₂] with
      |d₁| ≤ ω‖y − p‖₁ = 2ω(1 − p_A), |d₂| ≤ ω Σ_j α_hj = ω: defect η ω (1 − p_A)(1 + 2α_h(B) + 2ω).
    * The formula's three roundings γ_3|F| and its inputs: η(e_pA α_h(B) + (1 − p_A) e_α(B)).
    """
    d = W.shape[-1]
    ua, xb = u_A.abs(), x_B.abs()
    bil = lambda M: torch.einsum("e,hed,d->h", ua, M, xb)  # noqa: E731
    rounding = gamma(2 * d) * (bil(W.abs()) + bil(W_new.abs())) + gamma(2) * bil(W.abs() + 2 * eta * G.abs())
    rounding = rounding + eta * bil(e_G) + UNIT_ROUNDOFF * observed.abs()
    defect = eta * omega * one_minus_pA * (1 + 2 * alpha_B + 2 * omega)
    formula_err = gamma(3) * formula.abs() + eta * (e_pA * alpha_B + one_minus_pA * e_alpha_B)
    return STORAGE_SAFETY * (rounding + defect + formula_err)


def storage_step_logit_error(U, W, G, e_G, eta: float, c, e_c) -> torch.Tensor:
    """Bound (V,) on |U Σ_h (Ŵ'^h − W^h) c_h + η U Σ_h G^h c_h|: the step Ŵ' = fl(W − fl(ηĜ)) differs
    from W − ηG (exact gradient) by γ_2(|W| + 2η|Ĝ|) + η e_G entrywise, read through |U| and
    |c| + e_c (c = the exact context of the query whose logits move). First order, safety 1."""
    step = gamma(2) * (W.abs() + 2 * eta * G.abs()) + eta * e_G
    return U.abs() @ torch.einsum("hed,hd->e", step, c.abs() + e_c)


def context_overlap_error(c_f, c_r, e_c_f, e_c_r) -> float:
    """|fl(Σ_h ĉ_fᵀĉ_r) − Σ_h c_fᵀc_r| ≤ γ_{Hd} Σ|ĉ_f||ĉ_r| + Σ(e_f|ĉ_r| + |ĉ_f|e_r) (one sum of H·d products)."""
    H, d = c_f.shape
    cf, cr = c_f.abs(), c_r.abs()
    return gamma(H * d) * float((cf * cr).sum()) + float((e_c_f * cr + cf * e_c_r).sum())


def c1c_tolerances(e_z_old, e_z_new, observed, step_err, eta: float, resid, e_p, A: int, S: float,
                   e_S: float, omega: float, formula, observed_margin, formula_margin):
    """Bounds for C1c, × STORAGE_SAFETY: (V,) on |Δz_obs − η(y − p̂_f)Ŝ| and (V,) on the margin change
    |Δm_obs − η(1 − p̂_f(A) + p̂_f(v))Ŝ| (entry A unused), with Ŝ = fl(Σ_h ĉ_fᵀĉ_r), resid = y − p̂_f.

    Observed side: each logit of the two forward passes within e_z (old, new); the subtraction
    u|Δz|; the step (:func:`storage_step_logit_error`) — that bounds the distance to −ηUΣ_h G^h c_r
    = η U Uᵀ(y − p) S. H-orth: (UUᵀ − I) moves it by ≤ η|S| ω ‖y − p‖₁ (2ω‖y − p‖₁ for a margin,
    a difference of two rows). Formula side: γ_3|F_v| + η(e_p,v|S| + |y_v − p_v| e_S) (γ_4 and
    e_p,A + e_p,v for the margin's 1 − p_A + p_v).
    """
    l1 = float(resid.abs().sum())
    obs = e_z_old + e_z_new + UNIT_ROUNDOFF * observed.abs() + step_err
    tol = obs + eta * abs(S) * omega * l1 + gamma(3) * formula.abs() + eta * (e_p * abs(S) + resid.abs() * e_S)
    m_resid = resid[A] - resid  # 1 − p_A + p_v
    tol_m = obs[A] + obs + UNIT_ROUNDOFF * observed_margin.abs() + 2 * eta * abs(S) * omega * l1
    tol_m = tol_m + gamma(4) * formula_margin.abs() + eta * ((e_p[A] + e_p) * abs(S) + m_resid.abs() * e_S)
    return STORAGE_SAFETY * tol, STORAGE_SAFETY * tol_m


# --- C3 ---


def storage_inner_product_error(G_f, G_r, e_G_f, e_G_r) -> float:
    """|fl(Σ Ĝ_f ∘ Ĝ_r) − ⟨G_f, G_r⟩_F| for autograd gradients within e_G: one sum of H d² products,
    γ_{Hd²} Σ|Ĝ_f||Ĝ_r|, plus Σ(e_f|Ĝ_r| + |Ĝ_f| e_r) (first order, safety 1)."""
    n = G_f.numel()
    Gf, Gr = G_f.abs(), G_r.abs()
    return gamma(n) * float((Gf * Gr).sum()) + float((e_G_f * Gr + Gf * e_G_r).sum())


def c3_tolerances(ip_err: float, resid_f, resid_r, e_p_f, e_p_r, A: int, tok_f, tok_r, e_tok_f, e_tok_r,
                  T: int, omega: float, P: float, S: float, F: float, LB: float) -> tuple[float, float]:
    """Bounds for C3, × STORAGE_SAFETY: on |⟨Ĝ_f, Ĝ_r⟩ − P̂Ŝ| and on the lower bound's weak side.

    P = (p_f − y)ᵀ(p_r − y), S = Σ_h Σ_t α^f_h(t) α^r_h(t) (token-aligned, tok_* (H, V+1)).
    Observed side: ``ip_err`` (:func:`storage_inner_product_error`) to the exact ⟨G_f, G_r⟩
    = (p_f − y)ᵀΓ_VV(p_r − y) · Σ_h α^fᵀ_h Γ α^r_h with Γ = EEᵀ (contexts are Σ_t α(t) x_t exactly
    under H-rel). H-orth: Γ = I + Δ, |Δ| ≤ ω ⇒ the product moves by ≤ ω(‖p_f − y‖₁‖p_r − y‖₁(S + ωH) + |P|H).
    Formula side: P̂ — γ_{V+1}Σ|p_f − y||p_r − y| + Σ(e_f|p_r − y| + |p_f − y|e_r); Ŝ — the α(t) sums
    and the length-H(V+1) dot of positive terms, γ_{2T+H(V+1)} S, plus Σ(e_α^f α^r + α^f e_α^r);
    the product u|F| + |P|e_S + S e_P. Lower bound LB = (1 − p_f(A))(1 − p_r(A)) S: γ_3|LB| +
    S(e_f,A(1 − p_r(A)) + (1 − p_f(A)) e_r,A) + (1 − p_f(A))(1 − p_r(A)) e_S.
    """
    H, n_tok = tok_f.shape
    rf, rr = resid_f.abs(), resid_r.abs()
    defect = omega * (float(rf.sum() * rr.sum()) * (S + omega * H) + abs(P) * H)
    e_P = gamma(resid_f.shape[0] + 1) * float((rf * rr).sum()) + float((e_p_f * rr + rf * e_p_r).sum())
    e_S = gamma(2 * T + H * n_tok) * S + float((e_tok_f * tok_r.abs() + tok_f.abs() * e_tok_r).sum())
    F_err = UNIT_ROUNDOFF * abs(F) + abs(P) * e_S + S * e_P
    qf, qr = float(rf[A]), float(rr[A])  # 1 − p_f(A), 1 − p_r(A)
    LB_err = gamma(3) * abs(LB) + S * (float(e_p_f[A]) * qr + qf * float(e_p_r[A])) + qf * qr * e_S
    return STORAGE_SAFETY * (ip_err + defect + F_err), STORAGE_SAFETY * (ip_err + defect + LB_err)


# --- C2 ---
# Correlated forward/reverse routes (THEORY §2 C2a–C2c): the float64 correlation formula and its
# d_k → ∞ limit, the Monte Carlo test of Corr(S_f, S_r), the score cross-check against the model,
# the route-gradient identity (C2b) and the reflection-symmetric scores of alibi/none/t5.
# Rounding bounds reuse the C0 model (pow_rel_error, rope_angle_error, FUNCTION_REL,
# forward_error_bounds, score_gradient_error_bound) and carry FORWARD_SAFETY = 2 once.


def correlation_formula_error(d_k: int, base: float, g: float, safety: float = FORWARD_SAFETY) -> float:
    """Bound on |fl((2/d_k) Σ_l cos(g θ̂_l)) − (2/d_k) Σ_l cos(g θ_l)|, × safety.

    θ̂_l = fl(base^fl(−2l/d_k)) carries :func:`pow_rel_error` (exponent 2l/d_k); the angle
    fl(g θ̂_l) one more u, so its error is ≤ |g| θ_l (pow_rel_error + u); cos is 1-Lipschitz and
    adds FUNCTION_REL |cos|; the mean of n = d_k/2 terms (a sum, γ_n, and a division, u) adds
    (γ_n + u) mean|cos|. mpmath at ≥ 50 digits is exact at this scale (error < 10⁻⁴⁵).
    """
    from .model import rope_frequencies

    theta = rope_frequencies(d_k, base, dtype=torch.float64)
    expo = 2.0 * torch.arange(d_k // 2, dtype=torch.float64) / d_k
    c = torch.cos(g * theta).abs()
    e = abs(g) * theta * (pow_rel_error(base, expo) + UNIT_ROUNDOFF) + FUNCTION_REL * c
    return safety * float(e.mean() + (gamma(d_k // 2) + UNIT_ROUNDOFF) * c.mean())


def printed_value_tolerance(text: str) -> float:
    """Half a unit in the last printed decimal of ``text`` ("-0.654" → 5e-4, "0.7715" → 5e-5):
    a value printed rounded to k decimals lies within 0.5·10^−k of the exact value. Exact, no
    safety factor (the float64 error of the value compared is ≤ 1e-14, far below)."""
    t = text.strip().replace("−", "-")
    float(t)  # ValueError for anything that is not a number
    decimals = len(t.split(".")[1]) if "." in t else 0
    return 0.5 * 10.0**-decimals


def riemann_limit_bounds(d_k: int, base: float, g: float) -> tuple[float, float]:
    """Bounds on ρ(d_k) = (2/d_k) Σ_l f(2l/d_k) against I = ∫₀¹ f(u) du, f(u) = cos(g base^−u).

    ρ(d_k) is the left Riemann sum of f with step h = 2/d_k over n = d_k/2 cells. With
    φ(u) = |g| base^−u ∈ [|g|/base, |g|] and L = ln base: f' = L φ sin φ, |f'| ≤ L|g|, and
    f'' = −L² φ (sin φ + φ cos φ), |f''| ≤ L²(g² + |g|).
    * first order: |ρ − I| ≤ Σ_l ∫_cell |f(u) − f(u_l)| du ≤ n (h²/2) max|f'| = |g| L / d_k;
    * second order (Euler–Maclaurin): left sum = trapezoid + (h/2)(f(0) − f(1)) and
      |trapezoid − I| ≤ h² max|f''| / 12, so |ρ − I − (f(0) − f(1))/d_k| ≤ L²(g² + |g|)/(3 d_k²).
    Returns (first-order bound, second-order bound): mathematical bounds, safety 1 (the float64
    evaluation of ρ adds :func:`correlation_formula_error`). The error is Θ(1/d_k) with constant
    f(0) − f(1) = cos g − cos(g/base).
    """
    L = _math.log(base)
    return abs(g) * L / d_k, L * L * (g * g + abs(g)) / (3.0 * d_k * d_k)


def score_correlation_variance_factor(d_k: int, base: float, g: float) -> float:
    """κ = (asymptotic n·Var atanh r) for the sample correlation r of n iid pairs (S_f, S_r) under
    H-iso; Fisher's bivariate-normal value is κ = 1. Here κ ≥ 1 + 2/d_k: Fisher z is NOT conservative.

    Derivation. Write q = σ_q u, k = σ_k v with u, v iid N(0, I_{d_k}); then S_f = σ_q σ_k uᵀR_Δv and
    S_r = σ_q σ_k uᵀR_{−Δ}v. Given v, (S_f, S_r) is bivariate normal with both variances s = ‖v‖²
    (R orthogonal) and covariance c = vᵀR_Δᵀ R_{−Δ} v = Σ_l cos(gθ_l) w_l, w_l = ‖v_l‖² iid χ²₂. So,
    scaling to unit variances (E s = d_k), μ_ab = E[X^a Y^b]:
        μ40 = μ04 = 3E[s²]/d_k² = 3(1 + ε),  μ31 = μ13 = 3E[sc]/d_k² = 3ρ(1 + ε),
        μ22 = (E[s²] + 2E[c²])/d_k² = 1 + ε + 2ρ² + 2ε m₂,
    with ε = 2/d_k, ρ = mean_l cos(gθ_l), m₂ = mean_l cos²(gθ_l) (E[c²] = d_k²ρ² + 2d_k m₂,
    E[sc] = d_k²ρ + 2d_kρ). The delta method gives n Var r → V = ρ²(μ40 + 2μ22 + μ04)/4 − ρ(μ31 + μ13)
    + μ22 = (1 − ρ²)² + ε(1 + 2m₂ − 4ρ² + ρ²m₂), and atanh divides by (1 − ρ²)²: κ = V/(1 − ρ²)².
    Since m₂ ≥ ρ², κ ≥ 1 + ε (d_k = 2: κ = 2 exactly). Checked by simulation (20,000 replicates of
    n = 2000 at d_k = 2, 4, 8, 64: variance of atanh r within 1% of κ/(n−3); the κ-standardised
    statistic had |skewness| < 0.03 and |excess kurtosis| < 0.06, i.e. normal tails).
    """
    from .model import rope_frequencies

    c = torch.cos(g * rope_frequencies(d_k, base, dtype=torch.float64))
    rho, m2 = float(c.mean()), float((c * c).mean())
    one = 1.0 - rho * rho
    if one < 1e-12:
        raise ValueError(f"Corr(S_f, S_r) = {rho} is ±1 (g={g}): the sample correlation is degenerate")
    return ((one * one) + (2.0 / d_k) * (1 + 2 * m2 - 4 * rho * rho + rho * rho * m2)) / (one * one)


def score_correlation_halfwidth(d_k: int, base: float, g: float, n: int, alpha: float | None = None,
                                one_sided: bool = False) -> float:
    """Allowed |atanh r − atanh ρ| for n Monte Carlo pairs at false-alarm ``alpha`` (default
    statistics.FALSE_ALARM): z · √(κ/(n − 3)), κ from :func:`score_correlation_variance_factor`,
    z = z_{1−α/2} (two-sided) or z_{1−α} (one-sided). Fisher's n − 3 (instead of n) is kept: it only
    widens the interval. The level is asymptotic (delta method), like Fisher's own; no extra safety."""
    from scipy import stats as _stats

    from .statistics import FALSE_ALARM

    alpha = FALSE_ALARM if alpha is None else alpha
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha!r}")
    if n < 4:
        raise ValueError(f"n must be >= 4 Monte Carlo pairs; got {n}")
    z = float(_stats.norm.isf(alpha if one_sided else alpha / 2))
    return z * _math.sqrt(score_correlation_variance_factor(d_k, base, g) / (n - 3))


def rope_bilinear_error(q: torch.Tensor, k: torch.Tensor, e_q: torch.Tensor, e_k: torch.Tensor, delta: float,
                        base: float, safety: float = FORWARD_SAFETY) -> torch.Tensor:
    """Bound on |fl(q̂ᵀ fl(R̂_δ k̂)) − qᵀR_δk| over the last axis (batched), × safety; q̂, k̂ within e_q, e_k.

    R̂_δ = rope_matrix(δ): its entries are within E_R = e_angle(δ) (on each 2 × 2 block, from
    :func:`rope_angle_error`) + FUNCTION_REL|R̂| of R_δ. The matvec adds γ_{d_k}|R̂||k̂| + E_R|k̂|
    + |R̂|e_k; the dot γ_{d_k}|q̂|ᵀ|R̂k̂| + e_qᵀ|R̂k̂| + |q̂|ᵀ e_{Rk}.
    """
    from .model import rope_matrix

    d_k = q.shape[-1]
    R = rope_matrix(delta, d_k, base, dtype=torch.float64, device=q.device).abs()
    _, e_ang = rope_angle_error(torch.tensor([float(delta)], device=q.device), d_k, base)
    E_R = _block_expand(e_ang[0]).to(q.device) + FUNCTION_REL * R
    ka = k.abs()
    Rk = ka @ R.T
    e_Rk = gamma(d_k) * Rk + ka @ E_R.T + e_k @ R.T
    return safety * (gamma(d_k) * (q.abs() * Rk).sum(-1) + (e_q * Rk).sum(-1) + (q.abs() * e_Rk).sum(-1))


def route_formula_error(q: torch.Tensor, k: torch.Tensor, e_q: torch.Tensor, e_k: torch.Tensor,
                        x_M: torch.Tensor, x_B: torch.Tensor, g: float, base: float,
                        safety: float = FORWARD_SAFETY) -> float:
    """Bound on the float64 error of F = Σ_l cos(gθ̂_l)(‖x_M‖²‖k_l‖² + ‖x_B‖²‖q_l‖²) (C2b, unscaled), × safety.

    q̂, k̂ within e_q, e_k ⇒ ‖q̂_l‖² within Σ_{i∈l} 2|q̂_i|e_q,i + γ_2‖q̂_l‖²; ‖x‖² within γ_d‖x‖²;
    ĉ_l = cos(fl(g θ̂_l)) within |g|θ_l(pow_rel_error + u) + FUNCTION_REL|ĉ_l|; each term
    c_l(a_l + b_l) rounds 4 times (4u); the sum of d_k/2 terms γ_{d_k/2}.
    """
    from .model import rope_frequencies

    d, d_k = x_M.shape[-1], q.shape[-1]
    theta = rope_frequencies(d_k, base, dtype=torch.float64, device=q.device)
    expo = 2.0 * torch.arange(d_k // 2, dtype=torch.float64, device=q.device) / d_k
    c = torch.cos(g * theta)
    e_c = abs(g) * theta * (pow_rel_error(base, expo) + UNIT_ROUNDOFF) + FUNCTION_REL * c.abs()
    nq, nk = (q * q).view(-1, 2).sum(-1), (k * k).view(-1, 2).sum(-1)
    e_nq = (2 * q.abs() * e_q).view(-1, 2).sum(-1) + gamma(2) * nq
    e_nk = (2 * k.abs() * e_k).view(-1, 2).sum(-1) + gamma(2) * nk
    xm, xb = float(x_M @ x_M), float(x_B @ x_B)
    inner = xm * nk + xb * nq
    e_inner = gamma(d) * inner + xm * e_nk + xb * e_nq
    terms = c * inner
    err = e_c * inner + c.abs() * e_inner + 4 * UNIT_ROUNDOFF * terms.abs()
    return safety * float(err.sum() + gamma(d_k // 2) * terms.abs().sum())


def score_difference_tolerance(e_f: float, e_r: float, observed: float, reference: float) -> float:
    """|fl(ŝ_f − ŝ_r) − fl(ref)| allowance when ŝ_f, ŝ_r are within e_f, e_r (already × safety, from
    :func:`forward_error_bounds`) and the exact difference equals the exact ref: e_f + e_r plus one
    rounding of each subtraction, u(|observed| + |reference|)."""
    return e_f + e_r + UNIT_ROUNDOFF * (abs(observed) + abs(reference))


# --- C4 ---
# C4a: the storage step's reverse loss φ(η) = L_r(W_OV − η G_f). The exact statement used is the one
# for the step actually taken, D = (W − Ŵ')/η with Ŵ' = fl(W − fl(ηĜ_f)): for any direction D,
# φ_D(η) = L_r(W − ηD) is convex with φ_D'(0) = −⟨G_r, D⟩ and φ_D'' = Var_p(a_D) ≤ spread(a_D)²/4,
# a_D = −U Σ_h D^h c_r^h, so 0 ≤ φ_D(η) − φ_D(0) + η⟨G_r, D⟩ ≤ η² spread(a_D)²/8 holds exactly.
# The computed remainder differs from it by the bounds below (safety 1 inputs, × STORAGE_SAFETY).
# C4b: the Taylor test's floor, bands and window live in mdm_props.taylor (generic Taylor-test bounds).


def logit_direction_error(step_err, eta: float, resid, e_p, S: float, e_S: float, omega: float, a_hat) -> torch.Tensor:
    """Bound (V,) on |a_D − â| for â = fl((y − p̂_f) Ŝ), first order, safety 1: the step's rounding
    (:func:`storage_step_logit_error` / η), H-orth's defect ω‖y − p‖₁|S| (UUᵀ = I + Δ), p̂_f within e_p,
    Ŝ within e_S, and the product's rounding u|â|."""
    l1 = float(resid.abs().sum())
    return step_err / eta + omega * l1 * abs(S) + e_p * abs(S) + resid.abs() * e_S + UNIT_ROUNDOFF * a_hat.abs()


def c4a_tolerances(e_L0: float, e_L1: float, phi0: float, phi1: float, eta: float, ip: float, ip_err: float,
                   G_r, G_f, e_G_f, W, spread: float, delta_a: float) -> tuple[float, float]:
    """(lower, upper) rounding allowances, × STORAGE_SAFETY, for R̂ = fl(fl(φ̂(η) − φ̂(0)) + fl(η ⟨Ĝ_r, Ĝ_f⟩))
    against 0 ≤ R ≤ η² spread(â)²/8.

    * φ̂(0), φ̂(η): the forward bounds e_L (log-prob at the target) of the two evaluations.
    * Linear term: |⟨Ĝ_r, Ĝ_f⟩ − ⟨G_r, G_f⟩| ≤ ip_err (:func:`storage_inner_product_error`); the step
      taken is D = G_f + e with |e| ≤ e_G_f + γ_2(|W|/η + 2|Ĝ_f|), so η|⟨G_r, G_f − D⟩| ≤
      Σ|Ĝ_r|(η e_G_f + γ_2(|W| + 2η|Ĝ_f|)).
    * Arithmetic of R̂: γ_3(|φ̂(η)| + |φ̂(0)| + η|⟨Ĝ_r, Ĝ_f⟩|).
    * Upper bound only: spread(a_D) ≤ spread(â) + 2δ (δ = max |a_D − â|, :func:`logit_direction_error`),
      so η² spread(a_D)²/8 ≤ η² spread(â)²/8 + η²(4δ spread(â) + 4δ²)/8.
    """
    lin = eta * ip_err + float((G_r.abs() * (eta * e_G_f + gamma(2) * (W.abs() + 2 * eta * G_f.abs()))).sum())
    arith = gamma(3) * (abs(phi1) + abs(phi0) + eta * abs(ip))
    lower = e_L0 + e_L1 + lin + arith
    upper = lower + eta**2 * (4 * delta_a * spread + 4 * delta_a**2) / 8
    return STORAGE_SAFETY * lower, STORAGE_SAFETY * upper
