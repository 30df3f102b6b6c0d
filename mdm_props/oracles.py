"""An independent arbitrary-precision evaluation of the model (THEORY §1, claim C0.2).

Written from the equations, not by calling :func:`mdm_props.model.forward`::

    x_i  = E[t_i]  (+ p_i under ``absolute``)
    s_ij = q_iᵀ R_{j−i} k_j / √d_k + bias(j − i),    q_i = W_Q x_i,  k_j = W_K x_j
    α_i  = softmax_j(s_ij)            (j ≤ i under causal attention; other entries are 0)
    c_i  = Σ_j α_ij x_j,   h_i = x_i + Σ_heads W_OV c_i  (no x_i without the residual)
    z_i  = U h_i,          log p_i = z_i − log Σ_v exp(z_iv)

The float64 parameters are converted exactly (every double is an mpf), RoPE uses the rotation
matrix R_δ with exact cos/sin of ``δ θ_l``, ``θ_l = base^(−2l/d_k)``, and every operation is
carried out with ``dps`` decimal digits inside :func:`mpmath.workdps` (no global state changes).
:func:`stable_oracle` evaluates at ``dps`` and ``2·dps`` and refuses a result whose two
evaluations disagree beyond ``10^(−dps+10)`` relative (the idea of scipy's ``_mptestutils``).

Results are nested Python lists of ``mpmath.mpf``: ``scores[l][h][i][j]`` (``None`` for masked
entries), ``attn[l][h][i][j]``, ``context[l][h][i][e]``, ``hidden[i][e]``, ``logits[i][v]``,
``logprobs[i][v]``.
"""

from __future__ import annotations

import mpmath
import torch

from .model import ModelConfig

DEFAULT_DPS = 50


def _mp(t: torch.Tensor):
    """A float64 tensor as nested lists of mpf (exact: every double is representable); anything else
    (already nested lists of mpf, e.g. from :func:`exact_step`) is passed through."""
    if not isinstance(t, torch.Tensor):
        return t
    if t.dim() == 0:
        return mpmath.mpf(float(t))
    return [_mp(s) for s in t.detach().cpu()]


def _matvec(W, x):
    return [mpmath.fsum(w * v for w, v in zip(row, x, strict=False)) for row in W]


def _dot(a, b):
    return mpmath.fsum(x * y for x, y in zip(a, b, strict=False))


def _rope(v, delta, base):
    """R_δ v: block l rotates (v_{2l}, v_{2l+1}) counterclockwise by δ θ_l, θ_l = base^(−2l/d_k)."""
    d = len(v)
    out = []
    for l in range(d // 2):
        angle = delta * mpmath.power(base, mpmath.mpf(-2 * l) / d)
        c, s = mpmath.cos(angle), mpmath.sin(angle)
        out += [c * v[2 * l] - s * v[2 * l + 1], s * v[2 * l] + c * v[2 * l + 1]]
    return out


def _inputs(P: dict, cfg: ModelConfig, tokens: list[int]):
    x = [list(P["E"][t]) for t in tokens]
    if cfg.pos == "absolute":
        d = cfg.d_model
        for i in range(len(tokens)):
            if cfg.absolute_kind == "learned":
                p = P["P"][i]
            else:  # p_{i,2m} = sin(i ω_m), p_{i,2m+1} = cos(i ω_m), ω_m = 10⁴^(−2m/d), scaled by √(2/d)
                scale = mpmath.sqrt(mpmath.mpf(2) / d)
                p = []
                for e in range(d):
                    omega = mpmath.power(10000, -mpmath.mpf(e - e % 2) / d)
                    p.append(scale * (mpmath.sin(i * omega) if e % 2 == 0 else mpmath.cos(i * omega)))
            x[i] = [a + b for a, b in zip(x[i], p, strict=False)]
    return x


def _bias(P: dict, cfg: ModelConfig, layer: int, head: int, i: int, j: int):
    if cfg.pos == "alibi":  # −m_h |j − i|, m_h = 2^(−8(h+1)/H)
        return -mpmath.power(2, mpmath.mpf(-8 * (head + 1)) / cfg.n_heads) * abs(j - i)
    if cfg.pos == "t5":
        return P["t5_bias"][layer][head][j - i + cfg.max_len - 1]
    return 0


def _value_matrix(P: dict, cfg: ModelConfig, layer: int, head: int):
    if cfg.merged_ov:
        return P["W_OV"][layer][head]
    W_O, W_V = P["W_O"][layer][head], P["W_V"][layer][head]
    return [
        [_dot(W_O[r], [W_V[k][c] for k in range(cfg.d_head)]) for c in range(cfg.d_model)] for r in range(cfg.d_model)
    ]


def _softmax(row):
    m = max(row)
    e = [mpmath.exp(v - m) for v in row]
    total = mpmath.fsum(e)
    return [v / total for v in e]


def _oracle_tokens(cfg: ModelConfig, tokens, dps) -> list[int]:
    """``tokens`` (a 1-D tensor or a list of ids) as a list of ints, after checking ``dps`` (an integer
    ≥ 20), the length (1 … ``cfg.max_len``) and the ids (0 … ``cfg.vocab``, the last being the mask)."""
    if isinstance(dps, bool) or not isinstance(dps, int) or dps < 20:
        raise ValueError(f"dps must be an integer >= 20; got {dps!r}")
    tokens = [int(t) for t in (tokens.tolist() if isinstance(tokens, torch.Tensor) else tokens)]
    if not 1 <= len(tokens) <= cfg.max_len:
        raise ValueError(f"tokens: length must be in [1, max_len={cfg.max_len}]; got {len(tokens)}")
    if any(not 0 <= t <= cfg.vocab for t in tokens):
        raise ValueError(f"tokens must be ids in [0, {cfg.vocab}] (vocab real tokens and the mask); got {tokens}")
    return tokens


# the §1 values of the deep-block options (THEORY §2b); the oracle imports no model code, only ModelConfig
_ONE_LAYER_OPTIONS = {
    "norm": "none",
    "final_norm": False,
    "mlp": "none",
    "qk_bias": False,
    "v_bias": False,
    "rope_pairing": "interleaved",
    "readout_offset": 0,
    "branch_scale": 1.0,
}


def _deep_options(cfg: ModelConfig) -> list[str]:
    """The deep-block options ``cfg`` sets away from the one-layer block of THEORY §1 (grouped-query
    attention counts when ``kv_heads`` differs from ``n_heads``)."""
    out = ["n_kv_heads"] if cfg.kv_heads != cfg.n_heads else []
    return out + [k for k, v in _ONE_LAYER_OPTIONS.items() if getattr(cfg, k) != v]


def oracle_forward(params: dict, cfg: ModelConfig, tokens, dps: int = DEFAULT_DPS) -> dict:
    """Evaluate the model at ``dps`` decimal digits; ``tokens`` is a 1-D tensor or a list of ids.

    Returns the nested-list dict described in the module docstring.
    """
    deep = _deep_options(cfg)
    if deep:  # written for the §1 block; the deep block: oracle_deep_forward
        raise ValueError(
            f"cfg sets deep-block options {deep}; oracle_forward covers the one-layer "
            "block of THEORY §1 only (use mdm_props.rounding_mode.with_error_bounds)"
        )
    tokens = _oracle_tokens(cfg, tokens, dps)
    T = len(tokens)
    with mpmath.workdps(dps):
        P = {name: _mp(t) for name, t in params.items()}
        base = mpmath.mpf(cfg.rope_base)
        inv_sqrt = 1 / mpmath.sqrt(cfg.d_head)
        x = _inputs(P, cfg, tokens)
        scores, attn, context = [], [], []
        for layer in range(cfg.n_layers):
            S_l, A_l, C_l = [], [], []
            update = [[mpmath.mpf(0)] * cfg.d_model for _ in range(T)]
            for h in range(cfg.n_heads):
                q = [_matvec(P["W_Q"][layer][h], xi) for xi in x]
                k = [_matvec(P["W_K"][layer][h], xi) for xi in x]
                W = _value_matrix(P, cfg, layer, h)
                S_h, A_h, C_h = [], [], []
                for i in range(T):
                    keys = range(i + 1) if cfg.attention == "causal" else range(T)
                    row = {}
                    for j in keys:
                        kj = _rope(k[j], j - i, base) if cfg.pos == "rope" else k[j]
                        row[j] = _dot(q[i], kj) * inv_sqrt + _bias(P, cfg, layer, h, i, j)
                    weights = dict(zip(row, _softmax(list(row.values())), strict=False))
                    S_h.append([row.get(j) for j in range(T)])
                    A_h.append([weights.get(j, mpmath.mpf(0)) for j in range(T)])
                    c = [mpmath.fsum(weights[j] * x[j][e] for j in keys) for e in range(cfg.d_model)]
                    C_h.append(c)
                    update[i] = [a + b for a, b in zip(update[i], _matvec(W, c), strict=False)]
                S_l.append(S_h)
                A_l.append(A_h)
                C_l.append(C_h)
            x = (
                [[a + b for a, b in zip(xi, ui, strict=False)] for xi, ui in zip(x, update, strict=False)]
                if cfg.residual
                else update
            )
            scores.append(S_l)
            attn.append(A_l)
            context.append(C_l)
        U = P["E"][: cfg.vocab] if cfg.tied else P["U"]
        logits = [_matvec(U, hi) for hi in x]
        logprobs = []
        for z in logits:
            lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in z))
            logprobs.append([v - lse for v in z])
    return {"scores": scores, "attn": attn, "context": context, "hidden": x, "logits": logits, "logprobs": logprobs}


# ---------------------------------------------------------------------------------------------
# the deep block (THEORY §2b): the oracle of mdm_props.rounding_mode's radii


def _rms_norm(x, gain, eps):
    """x / √(mean(x²) + eps) ⊙ gain."""
    r = 1 / mpmath.sqrt(mpmath.fsum(v * v for v in x) / len(x) + eps)
    return [v * r * g for v, g in zip(x, gain, strict=True)]


def _rotate(v, position, base, pairing):
    """R_position v with pairs (2l, 2l+1) (interleaved) or (l, l + d/2) (half-split), angle position·θ_l,
    θ_l = base^(−2l/d)."""
    d, out = len(v), list(v)
    for l in range(d // 2):
        a, b = (2 * l, 2 * l + 1) if pairing == "interleaved" else (l, l + d // 2)
        angle = position * mpmath.power(base, mpmath.mpf(-2 * l) / d)
        c, s = mpmath.cos(angle), mpmath.sin(angle)
        out[a], out[b] = c * v[a] - s * v[b], s * v[a] + c * v[b]
    return out


def _silu(v):
    return v / (1 + mpmath.exp(-v))


def oracle_deep_forward(params: dict, cfg: ModelConfig, tokens, dps: int = DEFAULT_DPS) -> dict:
    """The deep block of THEORY §2b (every :class:`ModelConfig` option: depth, RMSNorm pre-norm and final
    norm, SwiGLU, GQA, q/k/v biases, merged or factored value path, RoPE with either pairing, ALiBi, T5,
    NoPE, absolute positions, causal attention, branch scale, read-out offset) at ``dps`` digits, written
    from the equations, not by calling :func:`mdm_props.model.forward`::

        x⁰ = E[t] (+ p),   per layer ℓ:  x̃ = N(x; g_attn),  q_i = R_i(W_Q x̃_i + b_Q),  k_j = R_j(W_K x̃_j + b_K),
        s_ij = q_i·k_j / fl(√d_k) + bias(j − i),  α_i = softmax_j s_ij,  c_i = Σ_j α_ij x̃_j,
        x ← x + ε Σ_h (W_O^h (W_V^{h'} c_i^h + b_V^{h'}) or W_OV^h c_i^h),
        x ← x + ε W_down (silu(W_gate x̂) ⊙ W_up x̂),  x̂ = N(x; g_mlp);   z_i = U N(x_{max(i−s, 0)}; g_final)

    (h' = h // (n_heads/n_kv_heads); N = RMSNorm or the identity). The constants are the doubles the
    float64 code uses (``norm_eps``, ``branch_scale``, fl(√d_k) = ``math.sqrt(d_head)``); θ_l, the ALiBi
    slopes and the sinusoidal positions, which the code computes, are exact here. Returns ``hidden``
    (after the final norm), ``logits`` and ``logprobs`` (rows as the model reads them) as nested lists
    of mpf."""
    import math

    tokens = _oracle_tokens(cfg, tokens, dps)
    T = len(tokens)
    H, group, dk = cfg.n_heads, cfg.n_heads // cfg.kv_heads, cfg.d_head
    with mpmath.workdps(dps):
        P = {name: _mp(t) for name, t in params.items()}
        base, eps = mpmath.mpf(cfg.rope_base), mpmath.mpf(cfg.norm_eps)
        branch, scale = mpmath.mpf(cfg.branch_scale), mpmath.mpf(math.sqrt(dk))
        norm = (lambda v, g: _rms_norm(v, g, eps)) if cfg.norm == "rms" else (lambda v, g: v)  # noqa: E731
        x = _inputs(P, cfg, tokens)
        for layer in range(cfg.n_layers):
            xn = [norm(v, P["norm_attn"][layer] if cfg.norm == "rms" else None) for v in x]
            update = [[mpmath.mpf(0)] * cfg.d_model for _ in range(T)]
            for h in range(H):
                kv = h // group
                q = [_matvec(P["W_Q"][layer][h], v) for v in xn]
                k = [_matvec(P["W_K"][layer][kv], v) for v in xn]
                if cfg.qk_bias:
                    q = [[a + b for a, b in zip(v, P["b_Q"][layer][h], strict=True)] for v in q]
                    k = [[a + b for a, b in zip(v, P["b_K"][layer][kv], strict=True)] for v in k]
                if cfg.pos == "rope":
                    q = [_rotate(v, i, base, cfg.rope_pairing) for i, v in enumerate(q)]
                    k = [_rotate(v, j, base, cfg.rope_pairing) for j, v in enumerate(k)]
                for i in range(T):
                    keys = range(i + 1) if cfg.attention == "causal" else range(T)
                    alpha = _softmax([_dot(q[i], k[j]) / scale + _bias(P, cfg, layer, h, i, j) for j in keys])
                    c = [
                        mpmath.fsum(a * xn[j][e] for a, j in zip(alpha, keys, strict=True)) for e in range(cfg.d_model)
                    ]
                    if cfg.merged_ov:
                        out = _matvec(P["W_OV"][layer][h], c)
                    else:
                        v = _matvec(P["W_V"][layer][kv], c)
                        if cfg.v_bias:
                            v = [a + b for a, b in zip(v, P["b_V"][layer][kv], strict=True)]
                        out = _matvec(P["W_O"][layer][h], v)
                    update[i] = [a + b for a, b in zip(update[i], out, strict=True)]
            x = [
                [(a if cfg.residual else 0) + branch * b for a, b in zip(xi, ui, strict=True)]
                for xi, ui in zip(x, update, strict=True)
            ]
            if cfg.mlp == "swiglu":
                for i in range(T):
                    xm = norm(x[i], P["norm_mlp"][layer] if cfg.norm == "rms" else None)
                    gate, up = _matvec(P["W_gate"][layer], xm), _matvec(P["W_up"][layer], xm)
                    mlp = _matvec(P["W_down"][layer], [_silu(g) * w for g, w in zip(gate, up, strict=True)])
                    x[i] = [a + branch * b for a, b in zip(x[i], mlp, strict=True)]
        if cfg.final_norm:
            x = [_rms_norm(v, P["norm_final"], eps) for v in x]
        U = P["E"][: cfg.vocab] if cfg.tied else P["U"]
        logits = [_matvec(U, x[max(i - cfg.readout_offset, 0)]) for i in range(T)]
        logprobs = []
        for z in logits:
            lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in z))
            logprobs.append([v - lse for v in z])
    return {"hidden": x, "logits": logits, "logprobs": logprobs}


def stable_deep_oracle(params: dict, cfg: ModelConfig, tokens, dps: int = DEFAULT_DPS) -> dict:
    """:func:`oracle_deep_forward` at ``dps``, confirmed at ``2·dps`` as :func:`stable_oracle` does."""
    return _confirmed(
        oracle_deep_forward(params, cfg, tokens, dps), oracle_deep_forward(params, cfg, tokens, 2 * dps), dps
    )


def _flatten(obj):
    if isinstance(obj, dict):
        for key in sorted(obj):
            yield from _flatten(obj[key])
    elif isinstance(obj, list):
        for v in obj:
            yield from _flatten(v)
    elif obj is not None:
        yield obj


def stable_oracle(params: dict, cfg: ModelConfig, tokens, dps: int = DEFAULT_DPS) -> dict:
    """:func:`oracle_forward` at ``dps``, confirmed by a second evaluation at ``2·dps``.

    Every entry of the two evaluations must agree to ``10^(−dps+10)`` relative (absolute for
    entries below 1); otherwise a ``RuntimeError`` reports that the precision was insufficient.
    Returns the ``2·dps`` evaluation.
    """
    return _confirmed(oracle_forward(params, cfg, tokens, dps), oracle_forward(params, cfg, tokens, 2 * dps), dps)


def _confirmed(low: dict, high: dict, dps: int) -> dict:
    """``high`` when every entry of the two evaluations agrees to 10^(−dps+10) relative, else RuntimeError."""
    with mpmath.workdps(2 * dps):
        tol = mpmath.mpf(10) ** (-dps + 10)
        for a, b in zip(_flatten(low), _flatten(high), strict=False):
            if abs(a - b) > tol * max(1, abs(b)):
                raise RuntimeError(f"oracle not stable at dps={dps}: {mpmath.nstr(a, 20)} vs {mpmath.nstr(b, 20)}")
    return high


def oracle_query_loss(params: dict, cfg: ModelConfig, query, dps: int = DEFAULT_DPS):
    """−log p(target) at the query slot, as an mpf at ``2·dps`` digits (from :func:`stable_oracle`).

    The negation runs inside ``workdps(2·dps)``: outside it, mpmath rounds the result to the ambient
    precision (53 bits by default), and the exact Taylor stage of C4b saw float64-sized noise under a
    floor it declared at 10^(−dps+10) (issue 15, found while timing the thorough run)."""
    log_p = stable_oracle(params, cfg, list(query.tokens), dps)["logprobs"][query.slot][query.target]
    with mpmath.workdps(2 * dps):
        return -log_p


def exact_step(params: dict, direction: dict, eta: float) -> dict:
    """θ − η·d for float64 tensors θ (``params``) and d (``direction``, same names), as nested lists of
    mpf computed without rounding (``mpmath.fmul``/``fsub`` with ``exact=True``): an input for
    :func:`oracle_forward` / :func:`oracle_query_loss` on the exact line through θ."""
    if set(direction) != set(params):
        raise ValueError(f"direction must have the parameter names {sorted(params)}; got {sorted(direction)}")
    e = mpmath.mpf(float(eta))

    def rec(a, b):
        if isinstance(a, list):
            return [rec(x, y) for x, y in zip(a, b, strict=False)]
        return mpmath.fsub(a, mpmath.fmul(e, b, exact=True), exact=True)

    return {name: rec(_mp(t), _mp(direction[name])) for name, t in params.items()}


def abs_error(exact, approx: torch.Tensor) -> torch.Tensor:
    """|approx − exact| entrywise as a float64 tensor (computed in mpmath, then rounded).

    ``exact`` is a nested list of mpf shaped like ``approx``; ``None`` entries (masked scores)
    give 0 and require ``approx`` to be −inf there.
    """
    a = approx.detach().cpu()

    def rec(e, t):
        if t.dim() == 0:
            if e is None:
                if float(t) != float("-inf"):
                    raise ValueError(f"a masked oracle entry must be -inf in approx; got {float(t)}")
                return 0.0
            with mpmath.workdps(30):
                return float(abs(mpmath.mpf(float(t)) - e))
        return [rec(ei, ti) for ei, ti in zip(e, t, strict=False)]

    return torch.tensor(rec(exact, a), dtype=torch.float64)


def to_tensor(exact) -> torch.Tensor:
    """A nested list of mpf rounded to a float64 tensor (``None`` becomes −inf)."""

    def rec(e):
        if isinstance(e, list):
            return [rec(v) for v in e]
        return float("-inf") if e is None else float(e)

    return torch.tensor(rec(exact), dtype=torch.float64)
