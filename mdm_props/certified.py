"""Certified instances: the one-layer model and the closed forms of C1b, C3 and C4a in ball arithmetic.

The float64 checks compare a computed value with a formula within a *derived* rounding bound; that
bound rests on a rounding model (and on ``exp``/``log``/``sin``/``cos``/``pow`` being accurate to
2 ulp) and carries a safety factor. Here the same quantities are enclosed rigorously: every float64
parameter of a draw converts exactly to an ``arb`` ball (python-flint, Arb), every operation returns
a ball that contains the exact result (rigorous ``exp``, ``log``, ``sin``, ``cos``, ``pow``), and a
comparison such as ``x > 0`` is true only when it holds for every point of the ball. So for one
concrete draw a claim is

* ``proved``: the inequality holds for the exact value (the certified bound is reported);
* ``refuted``: it certainly fails (expected only for the negative controls);
* ``undecided``: the ball still straddles the threshold at the precision cap; never a pass.

Precision is raised along :data:`PRECISIONS` (64 → 128 → … bits) until the decision is made.

Exact means exact arithmetic on the float64 parameters as stored: in particular the QR embeddings
are orthonormal only to ~d u, so H-orth's closed forms hold for them up to that defect, and the
certified statements are the ones that do not need H-orth exactly (⟨G_f, G_r⟩ > 0, Δε > 0, η*, the
remainder bounds); the closed forms are enclosed too and their distance to the exact values reported.

The model (THEORY §1, one layer, merged ``W_OV`` or factored ``W_O W_V``, any number of heads; ``rope``,
``alibi``, ``t5``, ``none`` and ``absolute``; bidirectional or causal); the gradient over every parameter
is exact too (:func:`parameter_gradient`, reverse mode in ball arithmetic)::

    s_ij = q_iᵀ R_{j−i} k_j / √d_k + bias(j − i),   α_i = softmax_j s_ij,   c^h = Σ_j α^h_ij x_j
    z    = U(x_i + Σ_h W_OV^h c^h),                log p = z − log Σ_v exp z_v
    ∂L/∂W_OV^h = g (c^h)ᵀ,  g = Uᵀ(p − y)          (so ⟨G_f, G_r⟩ = (g_fᵀg_r) Σ_h c_f^hᵀc_r^h exactly)

python-flint is an optional extra: ``pip install -e ".[certify]"``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from .facts import Query

try:  # optional extra
    import flint
    from flint import arb, arb_mat
except ImportError:  # pragma: no cover - exercised only where python-flint is absent
    flint = arb = arb_mat = None  # type: ignore[assignment,misc]  # require_flint() names the extra

INSTALL_HINT = (
    "python-flint is needed for certified (ball-arithmetic) evaluation; install it with "
    'pip install -e ".[certify]"  (or: pip install "python-flint>=0.6")'
)
PRECISIONS = (64, 128, 256, 512, 1024)  # bits, tried in order until the decision is made
SOUNDNESS_BITS = 128  # enclosures of the exact values for the soundness meta-test (radius ≪ u)
STATUSES = ("proved", "refuted", "undecided")
CERTIFIABLE = ("C1b", "C3", "C4a")


def require_flint() -> None:
    """Raise ImportError with the install command when python-flint is missing."""
    if flint is None:
        raise ImportError(INSTALL_HINT)


@contextmanager
def precision(bits: int):
    """Run a block at ``bits`` bits of working precision (restored afterwards)."""
    require_flint()
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 53:
        raise ValueError(f"bits must be an integer >= 53; got {bits!r}")
    old = flint.ctx.prec
    flint.ctx.prec = bits
    try:
        yield
    finally:
        flint.ctx.prec = old


def _precisions(max_bits: int) -> tuple[int, ...]:
    if isinstance(max_bits, bool) or not isinstance(max_bits, int) or max_bits < PRECISIONS[0]:
        raise ValueError(f"max_bits must be an integer >= {PRECISIONS[0]}; got {max_bits!r}")
    return tuple(b for b in PRECISIONS if b <= max_bits) or (PRECISIONS[0],)


# ---------------------------------------------------------------------------------------------
# exact conversion and small helpers


def to_arb(t):
    """A float64 tensor as nested lists of exact ``arb`` (a double converts exactly; balls pass through, so
    parameters already in ball arithmetic, e.g. θ + η d exactly, are accepted too)."""
    require_flint()
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().to(torch.float64).tolist()
    if isinstance(t, list):
        return [to_arb(v) for v in t]
    return t if isinstance(t, arb) else arb(float(t))


def _dot(a, b):
    return sum((x * y for x, y in zip(a, b, strict=False)), arb(0))


def _matvec(M, v):
    return [_dot(row, v) for row in M]


def _matvec_t(M, v):
    """Mᵀ v for M given by rows."""
    out = [arb(0)] * len(M[0])
    for row, vi in zip(M, v, strict=False):
        out = _axpy(out, vi, row)
    return out


def _matmul(A, B):
    cols = list(zip(*B, strict=False))
    return [[_dot(row, col) for col in cols] for row in A]


def _outer(a, b):
    return [[x * y for y in b] for x in a]


def _add_to(M, N):
    """M + N, entrywise, for nested lists of the same shape."""
    if isinstance(M, list):
        return [_add_to(m, n) for m, n in zip(M, N, strict=False)]
    return M + N


def _zeros(shape):
    return [_zeros(shape[1:]) for _ in range(shape[0])] if shape else arb(0)


def _is_deep(cfg, name: str) -> bool:
    return getattr(cfg, name) not in (False, "none", 0)


def _axpy(y, a, x):
    return [yi + a * xi for yi, xi in zip(y, x, strict=False)]


def softmax(xs: list) -> list:
    """exp(x_j − m)/Σ_k exp(x_k − m), m a float midpoint (an exact shift)."""
    m = arb(max(float(x.mid()) for x in xs))
    e = [(x - m).exp() for x in xs]
    total = sum(e, arb(0))
    return [v / total for v in e]


def log_softmax(xs: list) -> list:
    """x_v − (m + log Σ_w exp(x_w − m))."""
    m = arb(max(float(x.mid()) for x in xs))
    lse = m + sum(((x - m).exp() for x in xs), arb(0)).log()
    return [x - lse for x in xs]


def upper(x) -> float:
    """A float ≥ every point of the ball (the ball's upper end, rounded up to a double)."""
    u = x.upper()
    f = float(u)
    return f if arb(f) >= u else math.nextafter(f, math.inf)


def lower(x) -> float:
    """A float ≤ every point of the ball (the ball's lower end, rounded down to a double)."""
    lo = x.lower()
    f = float(lo)
    return f if arb(f) <= lo else math.nextafter(f, -math.inf)


def error_upper(observed: float, exact) -> float:
    """A float ≥ |observed − exact value| for a float64 ``observed`` and a ball ``exact``."""
    return upper(abs(arb(float(observed)) - exact))


def enclosure_ratio(observed, exact, bound) -> float:
    """max over entries of (certified upper bound on |observed − exact|) / bound: ≤ 1 means the
    float64 ``observed`` lies within ``bound`` of the exact value on every entry (0/0 counts as 0)."""
    obs = observed.detach().cpu().flatten().tolist() if isinstance(observed, torch.Tensor) else [float(observed)]
    bnd = bound.detach().cpu().flatten().tolist() if isinstance(bound, torch.Tensor) else [float(bound)]
    ex = list(_flatten(exact))
    if not len(obs) == len(ex) == len(bnd):
        raise ValueError(f"observed, exact and bound must have as many entries; got {len(obs)}, {len(ex)}, {len(bnd)}")
    worst = 0.0
    for o, e, b in zip(obs, ex, bnd, strict=False):
        err = error_upper(o, e)
        r = err / b if b > 0 else (0.0 if err == 0 else math.inf)
        worst = max(worst, r)
    return worst


def _flatten(x):
    if isinstance(x, (list, tuple)):
        for v in x:
            yield from _flatten(v)
    else:
        yield x


# ---------------------------------------------------------------------------------------------
# the one-layer model in ball arithmetic


def arb_params(params: dict, cfg) -> dict:
    """The parameters of a one-layer model (THEORY §1) as exact balls (nested lists of ``arb``). A factored
    value path (``merged_ov=False``, no value bias) keeps ``W_V``, ``W_O`` and gets ``W_OV^h = W_O^h W_V^h``
    as the exact product."""
    require_flint()
    if cfg.n_layers != 1:
        raise ValueError(f"cfg.n_layers must be 1 (the certified evaluator is the one-layer model); got {cfg.n_layers}")
    deep = [f for f in ("norm", "final_norm", "mlp", "qk_bias", "v_bias", "readout_offset") if _is_deep(cfg, f)]
    if deep or cfg.kv_heads != cfg.n_heads or cfg.branch_scale != 1 or cfg.rope_pairing != "interleaved":
        raise ValueError(
            "cfg must be the one-layer model of THEORY §1 (no norm, MLP, q/k/v biases, grouped kv heads, "
            f"read-out offset or branch scale; interleaved RoPE pairs); got deep options {deep}, "
            f"n_kv_heads={cfg.kv_heads}, branch_scale={cfg.branch_scale}, rope_pairing={cfg.rope_pairing!r}"
        )
    ap = {"E": to_arb(params["E"]), "W_Q": to_arb(params["W_Q"][0]), "W_K": to_arb(params["W_K"][0])}
    if cfg.merged_ov:
        ap["W_OV"] = to_arb(params["W_OV"][0])
    else:
        ap["W_V"], ap["W_O"] = to_arb(params["W_V"][0]), to_arb(params["W_O"][0])
        ap["W_OV"] = [_matmul(O, V) for O, V in zip(ap["W_O"], ap["W_V"], strict=False)]
    ap["U"] = ap["E"][: cfg.vocab] if cfg.tied else to_arb(params["U"])
    if cfg.pos == "t5":
        ap["t5_bias"] = to_arb(params["t5_bias"][0])
    if cfg.pos == "absolute" and cfg.absolute_kind == "learned":
        ap["P"] = to_arb(params["P"])
    return ap


def inputs(ap: dict, cfg, tokens) -> list:
    """Layer input x_j (T lists of d balls): E[t_j], plus p_j under absolute positions
    (sinusoidal p_{j,2m} = √(2/d) sin(j ω_m), p_{j,2m+1} = √(2/d) cos(j ω_m), ω_m = 10⁴^(−2m/d))."""
    x = [list(ap["E"][t]) for t in tokens]
    if cfg.pos != "absolute":
        return x
    d = cfg.d_model
    for j in range(len(tokens)):
        if cfg.absolute_kind == "learned":
            p = ap["P"][j]
        else:
            scale = (arb(2) / d).sqrt()
            p = []
            for e in range(d):
                omega = arb(10000) ** (arb(-(e - e % 2)) / d)
                s, c = (j * omega).sin_cos()
                p.append(scale * (s if e % 2 == 0 else c))
        x[j] = [a + b for a, b in zip(x[j], p, strict=False)]
    return x


def _rotate(k: list, delta: int, base: float) -> list:
    """R_δ k: pair (k_{2l}, k_{2l+1}) rotated counterclockwise by δ θ_l, θ_l = base^(−2l/d_k) (exact)."""
    d = len(k)
    out = []
    for l in range(d // 2):
        s, c = (delta * arb(base) ** (arb(-2 * l) / d)).sin_cos()
        e, o = k[2 * l], k[2 * l + 1]
        out += [c * e - s * o, s * e + c * o]
    return out


def _bias(ap: dict, cfg, h: int, i: int, j: int):
    if cfg.pos == "alibi":  # −m_h |j − i|, m_h = 2^(−8(h+1)/H)
        return -(arb(2) ** (arb(-8 * (h + 1)) / cfg.n_heads)) * abs(j - i)
    if cfg.pos == "t5":
        return ap["t5_bias"][h][j - i + cfg.max_len - 1]
    return arb(0)


@dataclass(frozen=True)
class ArbQuery:
    """One query evaluated in ball arithmetic at its slot: every field a (list of) ``arb``."""

    query: Query
    inputs: list  # (T, d) layer input
    attn: list  # (H, T) attention of the query slot (exact 0 where causally masked)
    context: list  # (H, d) c^h = Σ_j α^h_j x_j
    logits: list  # (V,)
    logp: list  # (V,)
    p: list  # (V,) exp(log p)
    resid: list  # (V,) p − y
    g: list  # (d,) Uᵀ(p − y): ∂L/∂W_OV^h = g (c^h)ᵀ
    hidden: list = field(default_factory=list)  # (d,) h = x_i + Σ_h W_OV^h c^h, so that z = U h

    def token_attention(self, n_tokens: int) -> list:
        """α^h(t) = Σ_{j: t_j = t} α^h_j, (H, n_tokens)."""
        out = []
        for row in self.attn:
            a = [arb(0)] * n_tokens
            for t, v in zip(self.query.tokens, row, strict=False):
                a[t] = a[t] + v
            out.append(a)
        return out

    def gradient(self) -> list:
        """G = ∂(−log p(target))/∂W_OV, (H, d, d) nested lists: G^h_{ab} = g_a c^h_b."""
        return [[[ga * cb for cb in c] for ga in self.g] for c in self.context]


def evaluate_query(ap: dict, cfg, query, W_OV: list | None = None) -> ArbQuery:
    """The exact model at ``query``'s slot in ball arithmetic (current precision); ``W_OV`` (H, d, d)
    replaces the stored value matrices (e.g. after an exact storage step)."""
    tokens, i = [int(t) for t in query.tokens], int(query.slot)
    T, H, d = len(tokens), cfg.n_heads, cfg.d_model
    x = inputs(ap, cfg, tokens)
    W = ap["W_OV"] if W_OV is None else W_OV
    keys = range(i + 1) if cfg.attention == "causal" else range(T)
    inv = arb(cfg.d_head).rsqrt()
    attn, context = [], []
    h_vec = list(x[i]) if cfg.residual else [arb(0)] * d
    for h in range(H):
        q = _matvec(ap["W_Q"][h], x[i])
        scores = []
        for j in keys:
            k = _matvec(ap["W_K"][h], x[j])
            if cfg.pos == "rope":
                k = _rotate(k, j - i, cfg.rope_base)
            scores.append(_dot(q, k) * inv + _bias(ap, cfg, h, i, j))
        a = softmax(scores) + [arb(0)] * (T - len(scores))
        c = [arb(0)] * d
        for j in keys:
            c = _axpy(c, a[j], x[j])
        attn.append(a)
        context.append(c)
        h_vec = [u + v for u, v in zip(h_vec, _matvec(W[h], c), strict=False)]
    U = ap["U"]
    z = _matvec(U, h_vec)
    logp = log_softmax(z)
    p = [v.exp() for v in logp]
    resid = [pv - (1 if v == query.target else 0) for v, pv in enumerate(p)]
    g = [_dot([U[v][e] for v in range(cfg.vocab)], resid) for e in range(d)]
    return ArbQuery(query, x, attn, context, z, logp, p, resid, g, h_vec)


def storage_step(ap: dict, G: list, eta) -> list:
    """W_OV − η G exactly in ball arithmetic, (H, d, d)."""
    eta = arb(float(eta)) if not isinstance(eta, type(arb(0))) else eta
    return [
        [[w - eta * gv for w, gv in zip(wr, gr, strict=False)] for wr, gr in zip(Wh, Gh, strict=False)]
        for Wh, Gh in zip(ap["W_OV"], G, strict=False)
    ]


def context_overlap(f: ArbQuery, r: ArbQuery):
    """S = Σ_h c_f^hᵀ c_r^h (exact; equals the token-aligned Σ_h Σ_t α^f_h(t) α^r_h(t) under H-orth)."""
    return sum((_dot(a, b) for a, b in zip(f.context, r.context, strict=False)), arb(0))


def storage_inner_product(f: ArbQuery, r: ArbQuery):
    """⟨G_f, G_r⟩_F = (g_fᵀ g_r) Σ_h c_f^hᵀ c_r^h (exact for any parameters)."""
    return _dot(f.g, r.g) * context_overlap(f, r)


def parameter_gradient(ap: dict, cfg, ex: ArbQuery) -> dict:
    """∇_θ(−log p(target)) for every parameter of the one-layer model, exactly: reverse mode written out in
    ball arithmetic (current precision) from the evaluated query ``ex``. Entries are nested lists shaped like
    the float64 tensors without the layer axis (``W_Q``: (H, d_k, d); ``t5_bias``: (H, 2 max_len − 1); ``P``:
    (max_len, d); ``E``, ``U`` as stored). With δh = g = Uᵀ(p − y) (z = U h, h = x_i + Σ_h W_OV^h c^h):

        ∂U = (p − y) hᵀ (tied: added to E's first V rows),   ∂W_OV^h = g c^hᵀ,   δc^h = W_OV^hᵀ g,
        c^h = Σ_j α_j x_j:        δα_j = δc^hᵀ x_j,   δx_j += α_j δc^h,
        softmax:                  δs_j = α_j (δα_j − Σ_k α_k δα_k),
        s_j = qᵀ R_{j−i} k_j /√d_k + b(j − i):   δq = Σ_j δs_j R_{j−i} k_j /√d_k,   δk_j = R_{i−j} q δs_j /√d_k,
        q = W_Q^h x_i, k_j = W_K^h x_j:   ∂W_Q^h = δq x_iᵀ,   ∂W_K^h = Σ_j δk_j x_jᵀ,   δx += W^hᵀ δ(·),
        x_j = E[t_j] (+ P[j]):    ∂E[t_j] += δx_j,   ∂P[j] += δx_j;   ∂b_h(j − i) += δs_j (t5);
        factored value path W_OV^h = W_O^h W_V^h:   ∂W_V^h = W_O^hᵀ ∂W_OV^h,   ∂W_O^h = ∂W_OV^h W_V^hᵀ."""
    tokens, i = [int(t) for t in ex.query.tokens], int(ex.query.slot)
    T, H, d, V = len(tokens), cfg.n_heads, cfg.d_model, cfg.vocab
    keys = range(i + 1) if cfg.attention == "causal" else range(T)
    inv = arb(cfg.d_head).rsqrt()
    x, g = ex.inputs, ex.g
    dx = [[arb(0)] * d for _ in range(T)]
    if cfg.residual:
        dx[i] = list(g)
    grads: dict = {"E": _zeros((V + 1, d)), "W_Q": [], "W_K": [], "W_OV": []}
    dU = _outer(ex.resid, ex.hidden)
    if cfg.pos == "t5":
        grads["t5_bias"] = _zeros((H, 2 * cfg.max_len - 1))
    for h in range(H):
        c, a = ex.context[h], ex.attn[h]
        grads["W_OV"].append(_outer(g, c))
        dc = _matvec_t(ap["W_OV"][h], g)
        q = _matvec(ap["W_Q"][h], x[i])
        k = {j: _matvec(ap["W_K"][h], x[j]) for j in keys}
        kr = {j: (_rotate(k[j], j - i, cfg.rope_base) if cfg.pos == "rope" else k[j]) for j in keys}
        da = {j: _dot(dc, x[j]) for j in keys}
        mean = sum((a[j] * da[j] for j in keys), arb(0))
        ds = {j: a[j] * (da[j] - mean) for j in keys}
        dq = [arb(0)] * cfg.d_head
        dWK = _zeros((cfg.d_head, d))
        for j in keys:
            dx[j] = _axpy(dx[j], a[j], dc)
            dq = _axpy(dq, ds[j] * inv, kr[j])
            dkr = [ds[j] * inv * qe for qe in q]
            dk = _rotate(dkr, i - j, cfg.rope_base) if cfg.pos == "rope" else dkr
            dWK = _add_to(dWK, _outer(dk, x[j]))
            dx[j] = [u + v for u, v in zip(dx[j], _matvec_t(ap["W_K"][h], dk), strict=False)]
            if cfg.pos == "t5":
                grads["t5_bias"][h][j - i + cfg.max_len - 1] += ds[j]
        grads["W_Q"].append(_outer(dq, x[i]))
        grads["W_K"].append(dWK)
        dx[i] = [u + v for u, v in zip(dx[i], _matvec_t(ap["W_Q"][h], dq), strict=False)]
    for j, t in enumerate(tokens):
        grads["E"][t] = [u + v for u, v in zip(grads["E"][t], dx[j], strict=False)]
    if cfg.pos == "absolute" and cfg.absolute_kind == "learned":
        grads["P"] = _zeros((cfg.max_len, d))
        for j in range(T):
            grads["P"][j] = list(dx[j])
    if cfg.tied:
        for v in range(V):
            grads["E"][v] = [u + w for u, w in zip(grads["E"][v], dU[v], strict=False)]
    else:
        grads["U"] = dU
    if not cfg.merged_ov:
        G = grads.pop("W_OV")
        grads["W_V"] = [
            _matmul([list(col) for col in zip(*O, strict=False)], Gh) for O, Gh in zip(ap["W_O"], G, strict=False)
        ]
        grads["W_O"] = [
            _matmul(Gh, [list(col) for col in zip(*Vh, strict=False)]) for Gh, Vh in zip(G, ap["W_V"], strict=False)
        ]
    return grads


def gradient_inner(a: dict, b: dict, names=None):
    """Σ over parameters (``names``, default all of ``a``) of the entrywise products: ⟨a, b⟩ on θ."""
    return sum(
        (x * y for n in (a if names is None else names) for x, y in zip(_flatten(a[n]), _flatten(b[n]), strict=False)),
        arb(0),
    )


# ---------------------------------------------------------------------------------------------
# closed forms of the claims


def c3_values(ap: dict, cfg, fq, rq) -> dict:
    """Balls for C3: ip = ⟨G_f, G_r⟩ (exact), P = (p_f − y)ᵀ(p_r − y), S = Σ_h Σ_t α^f_h(t) α^r_h(t)
    (token-aligned), the closed form F = P S and the lower bound LB = (1 − p_f(A))(1 − p_r(A)) S."""
    f, r = evaluate_query(ap, cfg, fq), evaluate_query(ap, cfg, rq)
    n = cfg.vocab + 1
    tf, tr = f.token_attention(n), r.token_attention(n)
    S = sum((_dot(a, b) for a, b in zip(tf, tr, strict=False)), arb(0))
    P = _dot(f.resid, r.resid)
    LB = f.resid[fq.target] * r.resid[rq.target] * S
    return {"ip": storage_inner_product(f, r), "P": P, "S": S, "F": P * S, "LB": LB, "f": f, "r": r}


def c1b_values(ap: dict, cfg, fq, B: int, eta: float) -> dict:
    """Balls (per head) for C1b: Δε_h = −η u_Aᵀ G^h x_B = −η (u_Aᵀg)(c^hᵀx_B) (exact: ε is linear in
    W_OV) and the closed form η (1 − p_f(A)) α^f_h(B)."""
    f = evaluate_query(ap, cfg, fq)
    A, e = fq.target, arb(float(eta))
    uA_g = _dot(ap["U"][A], f.g)
    delta = [-e * uA_g * _dot(c, ap["E"][B]) for c in f.context]
    alpha_B = [a[B] for a in f.token_attention(cfg.vocab + 1)]
    formula = [e * (-f.resid[A]) * aB for aB in alpha_B]
    return {"delta": delta, "formula": formula, "f": f}


def logit_direction(ap: dict, cfg, f: ArbQuery, r: ArbQuery) -> list:
    """a (V,) with z_r(W_OV − η G_f) = z_r + η a exactly: a = −U Σ_h G_f^h c_r^h = −(U g_f) S."""
    S = context_overlap(f, r)
    return [-_dot(u, f.g) * S for u in ap["U"]]


def c4a_values(ap: dict, cfg, fq, rq, etas) -> dict:
    """Balls for C4a: ip, spread(a), η* = 8 ip/spread², φ(0) and, per η of ``etas``, φ(η) (a fresh
    exact evaluation of the reverse query after the exact step W_OV − η G_f) and R(η) = φ(η) − φ(0) + η ip."""
    f, r = evaluate_query(ap, cfg, fq), evaluate_query(ap, cfg, rq)
    ip = storage_inner_product(f, r)
    a = logit_direction(ap, cfg, f, r)
    hi, lo = a[0], a[0]
    for v in a[1:]:
        hi, lo = hi.max(v), lo.min(v)
    spread = hi - lo
    A = rq.target
    phi0 = -r.logp[A]
    G = f.gradient()
    steps = []
    for eta in etas:
        r1 = evaluate_query(ap, cfg, rq, W_OV=storage_step(ap, G, eta))
        e = arb(float(eta))
        phi = -r1.logp[A]
        steps.append({"eta": float(eta), "phi": phi, "R": phi - phi0 + e * ip, "quad": e * e * spread * spread / 8})
    return {
        "ip": ip,
        "spread": spread,
        "eta_star": 8 * ip / (spread * spread),
        "phi0": phi0,
        "steps": steps,
        "f": f,
        "r": r,
    }


# ---------------------------------------------------------------------------------------------
# certificates


@dataclass(frozen=True)
class Certificate:
    """The outcome of certifying one statement on one draw."""

    claim: str
    statement: str
    status: str  # proved | refuted | undecided
    bits: int  # the precision at which the decision was made (the cap when undecided)
    value: float | None = None  # the certified bound (e.g. a lower bound of ⟨G_f, G_r⟩, of η*)
    details: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}; got {self.status!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        v = "" if self.value is None else f" (certified bound {self.value:.6g})"
        return f"{self.claim} {self.statement}: {self.status} at {self.bits} bits{v}"


def decide(claim: str, statement: str, evaluate, max_bits: int = PRECISIONS[-1]) -> Certificate:
    """Raise the precision along :data:`PRECISIONS` (up to ``max_bits``) until ``evaluate()`` —
    called inside :func:`precision` — returns a decided ``(status, value, details)``."""
    status, value, details, bits = "undecided", None, {}, PRECISIONS[0]
    for bits in _precisions(max_bits):
        with precision(bits):
            status, value, details = evaluate()
        if status != "undecided":
            break
    return Certificate(claim, statement, status, bits, value, details)


def _all(conds) -> str:
    """proved when every condition (True/False/None = undecided) is True, refuted when one is False."""
    conds = list(conds)
    if any(c is False for c in conds):
        return "refuted"
    return "proved" if all(c is True for c in conds) else "undecided"


def _sign(x, relation: str):
    """True / False when ``x <relation> 0`` is certain either way, None when the ball decides nothing."""
    holds = {">": x > 0, ">=": x >= 0, "<": x < 0, "<=": x <= 0}[relation]
    fails = {">": x <= 0, ">=": x < 0, "<": x >= 0, "<=": x > 0}[relation]
    return True if holds else (False if fails else None)


def certify_c3(params: dict, cfg, template, A: int, B: int, max_bits: int = PRECISIONS[-1]) -> Certificate:
    """C3 on one draw: ⟨G_f, G_r⟩ > 0 and ⟨G_f, G_r⟩ ≥ (1 − p_f(A))(1 − p_r(A)) Σ_t α^f(t)α^r(t), exactly."""
    from .storage import pair_queries

    ap = arb_params(params, cfg)
    fq, rq = pair_queries(template, A, B, cfg.vocab)

    def evaluate():
        v = c3_values(ap, cfg, fq, rq)
        ip, LB, F = v["ip"], v["LB"], v["F"]
        status = _all([_sign(ip, ">"), _sign(ip - LB, ">=")])
        return (
            status,
            lower(ip),
            {
                "ip": float(ip.mid()),
                "ip_lower": lower(ip),
                "lower_bound": float(LB.mid()),
                "gap_lower": lower(ip - LB),
                "closed_form": float(F.mid()),
                "orth_defect": upper(abs(ip - F)),
                "n_heads": cfg.n_heads,
                "pos": cfg.pos,
            },
        )

    return decide("C3", "⟨G_f, G_r⟩ ≥ (1 − p_f(A))(1 − p_r(A)) Σ_t α^f(t)α^r(t) and > 0", evaluate, max_bits)


def certify_c1b(params: dict, cfg, template, A: int, B: int, eta: float, max_bits: int = PRECISIONS[-1]) -> Certificate:
    """C1b on one draw: every head's Δε_h(A←B) = −η u_Aᵀ G^h x_B after the exact step is > 0."""
    from .facts import forward_query

    ap = arb_params(params, cfg)
    fq = forward_query(template, A, B, cfg.vocab)

    def evaluate():
        v = c1b_values(ap, cfg, fq, B, eta)
        status = _all(_sign(x, ">") for x in v["delta"])
        worst = min(lower(x) for x in v["delta"])
        return (
            status,
            worst,
            {
                "delta_eps": [float(x.mid()) for x in v["delta"]],
                "closed_form": [float(x.mid()) for x in v["formula"]],
                "orth_defect": max(upper(abs(x - y)) for x, y in zip(v["delta"], v["formula"], strict=False)),
                "eta": eta,
                "n_heads": cfg.n_heads,
                "pos": cfg.pos,
            },
        )

    return decide("C1b", "Δε_h(A←B) > 0 for every head", evaluate, max_bits)


C4A_ETAS = (1e-3, 1e-2, 0.1, 1.0)  # as claims.c4_reverse_loss_decrease.C4A_ETAS


def certify_c4a(
    params: dict, cfg, template, A: int, B: int, etas=C4A_ETAS, max_bits: int = PRECISIONS[-1]
) -> Certificate:
    """C4a on one draw: ⟨G_r, G_f⟩ > 0, hence (theorem: φ convex, φ'' ≤ spread(a)²/4) the reverse loss
    decreases for every 0 < η < η* = 8⟨G_r, G_f⟩/spread(a)²; the certified value is a lower bound of η*.
    The instance is confirmed at each η of ``etas``: 0 ≤ R(η) ≤ η² spread(a)²/8, and at η = η*_lo/2 and
    η*_lo(1 − 10⁻³): φ(η) < φ(0), each from an exact re-evaluation after the exact step."""
    from .storage import pair_queries

    ap = arb_params(params, cfg)
    fq, rq = pair_queries(template, A, B, cfg.vocab)

    def evaluate():
        v = c4a_values(ap, cfg, fq, rq, etas)
        ip, eta_star = v["ip"], v["eta_star"]
        positive = _sign(ip, ">")
        if positive is not True:
            return ("refuted" if positive is False else "undecided"), None, {"ip": float(ip.mid())}
        star = lower(eta_star)
        w = c4a_values(ap, cfg, fq, rq, (star / 2, star * (1 - 1e-3)))
        conds, rows = [positive], []
        for s in v["steps"]:
            lo_ok, hi_ok = _sign(s["R"], ">="), _sign(s["quad"] - s["R"], ">=")
            conds += [lo_ok, hi_ok]
            rows.append({"eta": s["eta"], "R": float(s["R"].mid()), "quad": float(s["quad"].mid())})
        for s in w["steps"]:
            conds.append(_sign(s["phi"] - w["phi0"], "<"))
            rows.append({"eta": s["eta"], "decrease": float((s["phi"] - w["phi0"]).mid())})
        return (
            _all(conds),
            star,
            {
                "ip": float(ip.mid()),
                "ip_lower": lower(ip),
                "spread": float(v["spread"].mid()),
                "eta_star": float(eta_star.mid()),
                "steps": rows,
                "n_heads": cfg.n_heads,
                "pos": cfg.pos,
            },
        )

    return decide("C4a", "⟨G_r, G_f⟩ > 0, η* > 0, 0 ≤ R(η) ≤ η² spread(a)²/8, decrease below η*", evaluate, max_bits)


# ---------------------------------------------------------------------------------------------
# the draws: exactly those of the float64 runners for the same seed


def claim_draws(claim: str, draws: int, seed: int) -> list:
    """[(case, η or None)]: the draws ``run_c1b_per_draw`` / ``run_c3_per_draw`` / ``run_c4a_per_draw`` make
    for ``seed`` (the per-draw reference runners; ``verify`` batches and splits draws over encodings)."""
    from .search import per_draw_cases
    from .strategies import N_HEADS, sample_case

    if claim not in CERTIFIABLE:
        raise ValueError(f"claim must be one of {', '.join(CERTIFIABLE)}; got {claim!r}")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be an integer >= 1; got {draws!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    if claim == "C1b":
        return list(per_draw_cases(draws, seed, step=True, n_heads=N_HEADS))
    rng = random.Random(seed)
    return [(sample_case(rng, n_heads=N_HEADS), None) for _ in range(draws)]


def certify_case(claim: str, case, eta=None, max_bits: int = PRECISIONS[-1]) -> Certificate:
    """Certify ``claim`` on one :class:`~mdm_props.strategies.Case` (η: the C1b step)."""
    args = (case.params("cpu"), case.cfg, case.template, case.A, case.B)
    if claim == "C3":
        return certify_c3(*args, max_bits=max_bits)
    if claim == "C1b":
        return certify_c1b(*args, eta, max_bits=max_bits)
    if claim == "C4a":
        return certify_c4a(*args, max_bits=max_bits)
    raise ValueError(f"claim must be one of {', '.join(CERTIFIABLE)}; got {claim!r}")


# ---------------------------------------------------------------------------------------------
# soundness of the float64 bounds: certified distance of each float64 result to the exact value


KIT_BOUNDS = ("attn", "context", "logits", "logprobs", "loss", "storage_gradient")
CLAIM_BOUNDS = (
    "C1b identity",
    "C3 identity",
    "C3 lower bound",
    "C3 positivity",
    "C4a lower",
    "C4a upper",
    "C4a decrease",
)
BOUND_SOURCES = {
    "attn": "forward_error_bounds['attn'] (query row)",
    "context": "forward_error_bounds['context'] (query row)",
    "logits": "forward_error_bounds['logits'] (query slot)",
    "logprobs": "forward_error_bounds['logprobs'] (query slot)",
    "loss": "query_loss_error_bound",
    "storage_gradient": "storage_gradient_error_bound",
    "C1b identity": "c1b_tolerance (check_c1b identity)",
    "C3 identity": "c3_tolerances[0] (check_c3 identity)",
    "C3 lower bound": "c3_tolerances[1] (check_c3 lower bound)",
    "C3 positivity": "2·storage_inner_product_error (check_c3 > 0)",
    "C4a lower": "c4a_tolerances[0] (0 ≤ R(η))",
    "C4a upper": "c4a_tolerances[1] (R(η) ≤ η² spread²/8)",
    "C4a decrease": "c4a_tolerances[1] (decrease at η*/2, η*(1 − 1e-3))",
}


def kit_ratios(params: dict, cfg, query, ap: dict | None = None) -> dict:
    """(true error)/(derived bound) for the rounding kit at one query: :func:`~mdm_props.rounding.
    forward_error_bounds` (attention, context, logits, log-probs; default FORWARD_SAFETY),
    :func:`~mdm_props.rounding.query_loss_error_bound` and :func:`~mdm_props.rounding.
    storage_gradient_error_bound` (autograd's ∂L/∂W_OV). The true error is the certified upper bound
    of |float64 − exact|; a ratio ≤ 1 means the bound is sound on this draw."""
    from . import rounding as tol
    from .model import forward
    from .storage import storage_gradient

    ap = arb_params(params, cfg) if ap is None else ap
    tokens, i = query.tensor("cpu"), query.slot
    out = forward(params, cfg, tokens)
    b = tol.forward_error_bounds(params, cfg, tokens)
    G, _ = storage_gradient(params, cfg, query)
    logp = torch.log_softmax(out.logits[i], dim=-1)
    with precision(SOUNDNESS_BITS):
        ex = evaluate_query(ap, cfg, query)
        return {
            "attn": enclosure_ratio(out.attn[0, :, i], ex.attn, b["attn"][0, :, i]),
            "context": enclosure_ratio(out.context[0, :, i], ex.context, b["context"][0, :, i]),
            "logits": enclosure_ratio(out.logits[i], ex.logits, b["logits"][i]),
            "logprobs": enclosure_ratio(logp, ex.logp, b["logprobs"][i]),
            "loss": enclosure_ratio(
                -logp[query.target], -ex.logp[query.target], tol.query_loss_error_bound(params, cfg, query)
            ),
            "storage_gradient": enclosure_ratio(G, ex.gradient(), tol.storage_gradient_error_bound(params, cfg, query)),
        }


def _ratio(true_error: float, tolerance: float) -> float:
    return true_error / tolerance if tolerance > 0 else (0.0 if true_error == 0 else math.inf)


def claim_ratios(params: dict, cfg, template, A: int, B: int, eta: float, ap: dict | None = None) -> dict:
    """(true error)/(tolerance) for the claim tolerances of C1b, C3 and C4a on one H-orth draw, from
    the project's own float64 checkers. Each tolerance is derived as a sum of bounds on its parts
    (the observed value's rounding, the formula's rounding, H-orth's defect); the true error is the
    sum of the certified parts: |observed − exact| + |exact − closed form| + |formula − exact closed
    form| (identities, lower-bound sides), and for C4a |R̂ − R_D| (+ the spread's excess for the upper
    side), R_D the exact remainder of the step actually taken, D = (W − Ŵ')/η."""
    from .claims.c1_reusable_evidence import check_c1b
    from .claims.c3_aligned_storage import check_c3
    from .claims.c4_reverse_loss_decrease import check_c4a
    from .storage import pair_queries, storage_gradient
    from .storage import storage_step as float_step

    ap = arb_params(params, cfg) if ap is None else ap
    fq, rq = pair_queries(template, A, B, cfg.vocab)
    c1b = check_c1b(params, cfg, template, A, B, eta)[0]
    c3 = check_c3(params, cfg, template, A, B)
    c4 = check_c4a(params, cfg, template, A, B)
    G_hat, _ = storage_gradient(params, cfg, fq)
    W = params["W_OV"][0]
    out: dict = {}
    with precision(SOUNDNESS_BITS):
        (k,) = c1b.details["index"]
        v = c1b_values(ap, cfg, fq, B, eta)
        out["C1b identity"] = _ratio(
            error_upper(c1b.observed, v["delta"][k])
            + upper(abs(v["delta"][k] - v["formula"][k]))
            + error_upper(c1b.reference, v["formula"][k]),
            c1b.tolerance,
        )
        v = c3_values(ap, cfg, fq, rq)
        e_ip, defect = error_upper(c3[0].observed, v["ip"]), upper(abs(v["ip"] - v["F"]))
        out["C3 identity"] = _ratio(e_ip + defect + error_upper(c3[0].reference, v["F"]), c3[0].tolerance)
        out["C3 lower bound"] = _ratio(e_ip + defect + error_upper(c3[1].reference, v["LB"]), c3[1].tolerance)
        out["C3 positivity"] = _ratio(e_ip, c3[2].tolerance)
        r = v["r"]
        phi0 = -r.logp[A]
        ratios = {"C4a lower": 0.0, "C4a upper": 0.0, "C4a decrease": 0.0}
        for res in c4:
            eta_k = res.details["eta"]
            e = arb(eta_k)
            W1 = float_step(params, G_hat, eta_k)["W_OV"][0]
            D = [
                [[(w - w1) / e for w, w1 in zip(a, b, strict=False)] for a, b in zip(Wh, W1h, strict=False)]
                for Wh, W1h in zip(to_arb(W), to_arb(W1), strict=False)
            ]
            gD = sum((_dot(r.g, _matvec(Dh, ch)) for Dh, ch in zip(D, r.context, strict=False)), arb(0))  # ⟨G_r, D⟩
            phi1 = -evaluate_query(ap, cfg, rq, W_OV=to_arb(W1)).logp[A]
            DC = [arb(0)] * cfg.d_model
            for Dh, ch in zip(D, r.context, strict=False):
                DC = [x + y for x, y in zip(DC, _matvec(Dh, ch), strict=False)]
            a_D = [-_dot(u, DC) for u in ap["U"]]
            hi, lo = a_D[0], a_D[0]
            for x in a_D[1:]:
                hi, lo = hi.max(x), lo.min(x)
            s_hat = arb(res.details["spread"])
            excess = max(0.0, upper(e * e * ((hi - lo) ** 2 - s_hat * s_hat) / 8))
            if res.relation == ">=":  # R ≥ 0
                key, true = "C4a lower", error_upper(res.observed, phi1 - phi0 + e * gD)
            elif "R(η) ≤" in res.quantity:
                key, true = "C4a upper", error_upper(res.observed, phi1 - phi0 + e * gD) + excess
            else:  # φ(η) − φ(0) ≤ −η ip + quad
                ip_hat = arb(res.details["inner_product"])
                key = "C4a decrease"
                true = error_upper(res.observed, phi1 - phi0) + upper(abs(e * ip_hat - e * gD)) + excess
            ratios[key] = max(ratios[key], _ratio(true, res.tolerance))
        out.update(ratios)
    return out


def soundness_draws(draws: int, seed: int) -> list:
    """[(case, η)]: ``draws`` broad draws for the rounding kit (every encoding incl. absolute, causal
    or bidirectional, orthonormal embeddings or not; η None) interleaved with ``draws`` claim draws
    (H-rel + H-orth + H-bi, 1–3 heads, η from the storage steps)."""
    from .model import ATTENTIONS, POSITIONAL_ENCODINGS
    from .strategies import ETAS, N_HEADS, sample_case

    rng = random.Random(seed)
    out: list = []
    for _ in range(draws):
        out.append(
            (
                sample_case(
                    rng,
                    pos=POSITIONAL_ENCODINGS,
                    orthonormal=rng.random() < 0.5,
                    attention=rng.choice(ATTENTIONS),
                    n_heads=N_HEADS,
                ),
                None,
            )
        )
        out.append((sample_case(rng, n_heads=N_HEADS), rng.choice(ETAS)))
    return out


def soundness_ratios(case, eta=None) -> dict:
    """Every applicable ratio on one draw: the kit on its forward and reverse queries (worst of the
    two), and with ``eta`` (a claim draw) the claim tolerances."""
    from .storage import pair_queries

    params, cfg = case.params("cpu"), case.cfg
    ap = arb_params(params, cfg)
    out: dict = {}
    for q in pair_queries(case.template, case.A, case.B, cfg.vocab):
        for k, v in kit_ratios(params, cfg, q, ap).items():
            out[k] = max(out.get(k, 0.0), v)
    if eta is not None:
        out.update(claim_ratios(params, cfg, case.template, case.A, case.B, eta, ap))
    return out


def soundness_table(draws: int, seed: int = 0) -> list[dict]:
    """Per bound: the draws it was measured on and the largest (true error)/(derived bound), with the
    worst draw's index. ≤ 1 everywhere means sound; the safety factor 2 of the bounds means a ratio
    above 1/2 would say the factor, not the first-order derivation, is doing the work."""
    rows = {
        k: {"bound": k, "source": BOUND_SOURCES[k], "draws": 0, "max_ratio": 0.0, "worst_draw": None}
        for k in KIT_BOUNDS + CLAIM_BOUNDS
    }
    for n, (case, eta) in enumerate(soundness_draws(draws, seed)):
        for k, v in soundness_ratios(case, eta).items():
            row: dict = rows[k]
            row["draws"] += 1
            if v >= row["max_ratio"]:
                row["max_ratio"], row["worst_draw"] = v, n
    return list(rows.values())


def format_soundness_table(rows: list[dict]) -> str:
    lines = [f"{'bound':<18} {'source':<52} {'draws':>6} {'max err/bound':>14}", "-" * 93]
    lines += [f"{r['bound']:<18} {r['source']:<52} {r['draws']:>6} {r['max_ratio']:>14.3g}" for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# certified negative controls: the counterexamples the searches find, re-checked exactly


def certify_alignment(params: dict, cfg, fq, rq, claim: str = "C3", max_bits: int = PRECISIONS[-1]) -> Certificate:
    """⟨G_f, G_r⟩ > 0 for any two queries (e.g. the ARM's, whose targets differ)."""
    ap = arb_params(params, cfg)

    def evaluate():
        f, r = evaluate_query(ap, cfg, fq), evaluate_query(ap, cfg, rq)
        ip = storage_inner_product(f, r)
        status = _all([_sign(ip, ">")])
        return (
            status,
            (upper(ip) if status == "refuted" else lower(ip)),
            {"ip": float(ip.mid()), "first_factor": float(_dot(f.resid, r.resid).mid())},
        )

    return decide(claim, "⟨G_f, G_r⟩ > 0", evaluate, max_bits)


def certify_c1a_forced(params: dict, cfg, template, A: int, B: int, max_bits: int = PRECISIONS[-1]) -> Certificate:
    """C1a's consequence: the reverse logits with the forward query's token-aligned attention imposed equal
    z_f. Balls cannot prove an equality: ``refuted`` when some entry certainly differs (the value is
    the largest certified |difference|), ``undecided`` otherwise (the exact H-rel identity)."""
    from .storage import aligned_positions, pair_queries

    ap = arb_params(params, cfg)
    fq, rq = pair_queries(template, A, B, cfg.vocab)
    align = aligned_positions(fq.tokens, rq.tokens)

    def evaluate():
        f = evaluate_query(ap, cfg, fq)
        x = inputs(ap, cfg, rq.tokens)
        h = list(x[rq.slot])
        for Wh, a in zip(ap["W_OV"], f.attn, strict=False):
            c = [arb(0)] * cfg.d_model
            for j, src in enumerate(align):
                c = _axpy(c, a[src], x[j])
            h = [u + v for u, v in zip(h, _matvec(Wh, c), strict=False)]
        diff = [zv - fv for zv, fv in zip(_matvec(ap["U"], h), f.logits, strict=False)]
        off = [lower(abs(v)) for v in diff if abs(v) > 0]
        return (
            ("refuted" if off else "undecided"),
            (max(off) if off else None),
            {"max_diff": max(float(abs(v).mid()) for v in diff)},
        )

    return decide("C1a", "reverse logits with α^r forced to α^f (token-aligned) = z_f", evaluate, max_bits)


def certify_c1c(params: dict, cfg, template, A: int, B: int, eta: float, max_bits: int = PRECISIONS[-1]) -> Certificate:
    """C1c on one draw: after the exact step every reverse margin grows, Δ(z_r(A) − z_r(v)) = η(a_A − a_v) > 0."""
    from .storage import pair_queries

    ap = arb_params(params, cfg)
    fq, rq = pair_queries(template, A, B, cfg.vocab)

    def evaluate():
        f, r = evaluate_query(ap, cfg, fq), evaluate_query(ap, cfg, rq)
        a, e = logit_direction(ap, cfg, f, r), arb(float(eta))
        dm = {v: e * (a[A] - a[v]) for v in range(cfg.vocab) if v != A}
        worst = min(dm, key=lambda v: float(dm[v].mid()))
        return _all(_sign(x, ">") for x in dm.values()), float(dm[worst].mid()), {"v": worst, "eta": eta}

    return decide("C1c", "Δ(z_r(A) − z_r(v)) > 0 for every v ≠ A", evaluate, max_bits)


def certify_storage_decrease(
    params: dict, cfg, fq, rq, eta: float, claim: str = "C4a", max_bits: int = PRECISIONS[-1]
) -> Certificate:
    """One exact storage step W_OV − η G_f (G_f of ``fq``) does not raise the loss of ``rq``."""
    ap = arb_params(params, cfg)

    def evaluate():
        f, r = evaluate_query(ap, cfg, fq), evaluate_query(ap, cfg, rq)
        r1 = evaluate_query(ap, cfg, rq, W_OV=storage_step(ap, f.gradient(), eta))
        delta = r.logp[rq.target] - r1.logp[rq.target]  # φ(η) − φ(0)
        return (
            {True: "proved", False: "refuted"}.get(_sign(delta, "<="), "undecided"),
            float(delta.mid()),
            {"eta": eta, "loss_change": float(delta.mid())},
        )

    return decide(claim, "φ(η) ≤ φ(0) after the exact storage step", evaluate, max_bits)


def certify_full_step(
    params: dict, cfg, fq, rq, eta: float, claim: str = "C4c", max_bits: int = PRECISIONS[-1]
) -> Certificate:
    """A full-parameter step θ − η ĝ_f (ĝ_f: autograd's float64 gradient of the loss of ``fq``, a concrete
    direction; the moved parameters rounded to float64 as the search took them) does not raise the
    exact loss of ``rq``."""
    from .claims.c4_reverse_loss_decrease import full_gradient

    g = full_gradient(params, cfg, fq)
    moved = {k: params[k] - eta * g[k] for k in params}
    ap0, ap1 = arb_params(params, cfg), arb_params(moved, cfg)

    def evaluate():
        l0 = -evaluate_query(ap0, cfg, rq).logp[rq.target]
        l1 = -evaluate_query(ap1, cfg, rq).logp[rq.target]
        delta = l1 - l0
        return (
            {True: "proved", False: "refuted"}.get(_sign(delta, "<="), "undecided"),
            float(delta.mid()),
            {"eta": eta, "loss_change": float(delta.mid())},
        )

    return decide(claim, "L_r(θ − η ĝ_f) ≤ L_r(θ)", evaluate, max_bits)


def certify_value_alignment(
    params: dict, cfg, fq, rq, claim: str = "C3v", max_bits: int = PRECISIONS[-1]
) -> Certificate:
    """⟨G^V_f, G^V_r⟩ > 0 for the factored value path (G^V = ∂L/∂W_V = W_Oᵀ g cᵀ per head, exactly:
    :func:`parameter_gradient`); the value is a certified upper bound when refuted, else a lower bound."""
    if cfg.merged_ov:
        raise ValueError("cfg.merged_ov must be False: G^V is the gradient of the factored W_V")
    ap = arb_params(params, cfg)

    def evaluate():
        f, r = evaluate_query(ap, cfg, fq), evaluate_query(ap, cfg, rq)
        ip = gradient_inner(parameter_gradient(ap, cfg, f), parameter_gradient(ap, cfg, r), ("W_V",))
        status = _all([_sign(ip, ">")])
        return (
            status,
            (upper(ip) if status == "refuted" else lower(ip)),
            {"ip": float(ip.mid()), "ip_merged": float(storage_inner_product(f, r).mid()), "d_head": cfg.d_head},
        )

    return decide(claim, "⟨G^V_f, G^V_r⟩ > 0 (factored value path)", evaluate, max_bits)


def certify_full_alignment(
    params: dict, cfg, fq, rq, claim: str = "C4c", max_bits: int = PRECISIONS[-1]
) -> Certificate:
    """⟨g_r, g_f⟩ > 0 for the full gradients over every parameter (exact gradients of both losses,
    :func:`parameter_gradient`); the value is a certified upper bound when refuted, else a lower bound."""
    ap = arb_params(params, cfg)

    def evaluate():
        g_f = parameter_gradient(ap, cfg, evaluate_query(ap, cfg, fq))
        g_r = parameter_gradient(ap, cfg, evaluate_query(ap, cfg, rq))
        ip = gradient_inner(g_r, g_f)
        status = _all([_sign(ip, ">")])
        per = {n: float(gradient_inner(g_r, g_f, (n,)).mid()) for n in g_f}
        return status, (upper(ip) if status == "refuted" else lower(ip)), {"ip": float(ip.mid()), "per_parameter": per}

    return decide(claim, "⟨g_r, g_f⟩ > 0 (full gradient)", evaluate, max_bits)


def certify_linear_term(params: dict, cfg, fq, rq, claim: str = "C4b", max_bits: int = PRECISIONS[-1]) -> Certificate:
    """C4b with g_f in place of g_r in the linear term: R̃(η) = L_r(θ − η g_f) − L_r(θ) + η⟨g_f, g_f⟩ has
    R̃'(0) = ⟨g_f, g_f⟩ − ⟨g_r, g_f⟩ exactly (φ'(0) = −⟨g_r, g_f⟩), so R̃ = O(η²) only if that coefficient is 0.
    ``refuted`` when the ball of ⟨g_f, g_f − g_r⟩ excludes 0 (the value: a certified lower bound of its
    modulus): the remainder is then exactly first order."""
    ap = arb_params(params, cfg)

    def evaluate():
        g_f = parameter_gradient(ap, cfg, evaluate_query(ap, cfg, fq))
        g_r = parameter_gradient(ap, cfg, evaluate_query(ap, cfg, rq))
        c1 = gradient_inner(g_f, g_f) - gradient_inner(g_r, g_f)
        nonzero = c1 > 0 or c1 < 0
        return (
            ("refuted" if nonzero else "undecided"),
            (lower(abs(c1)) if nonzero else None),
            {"first_order_coefficient": float(c1.mid()), "ip": float(gradient_inner(g_r, g_f).mid())},
        )

    return decide(claim, "R̃(η) = O(η²) with g_f in the linear term, i.e. ⟨g_f, g_f − g_r⟩ = 0", evaluate, max_bits)


def certify_route_gradient(params: dict, cfg, template, A: int, B: int, max_bits: int = PRECISIONS[-1]) -> Certificate:
    """⟨∇S_f, ∇S_r⟩ > 0 over (W_Q, W_K) of head 0 for the model's scaled mask-to-B scores (C2b's inner
    product): forward s_ab = q_aᵀ R_{b−a} k_b/√d_k, reverse s_ba = q_bᵀ R_{a−b} k_a/√d_k with the mask's query
    and B's key, ∇_{W_Q} s_ij = (R_{j−i} k_j) x_iᵀ/√d_k, ∇_{W_K} s_ij = (R_{i−j} q_i) x_jᵀ/√d_k, exactly."""
    from .facts import forward_query, reverse_query

    if cfg.pos != "rope":
        raise ValueError(f"cfg.pos must be 'rope' (C2b concerns RoPE scores); got {cfg.pos!r}")
    ap = arb_params(params, cfg)
    a, b = template.a, template.b

    def evaluate():
        inv = arb(cfg.d_head).rsqrt()
        grads = []
        for query, i, j in (
            (forward_query(template, A, B, cfg.vocab), a, b),
            (reverse_query(template, A, B, cfg.vocab), b, a),
        ):
            x = inputs(ap, cfg, [int(t) for t in query.tokens])
            q, k = _matvec(ap["W_Q"][0], x[i]), _matvec(ap["W_K"][0], x[j])
            gq = _outer([inv * v for v in _rotate(k, j - i, cfg.rope_base)], x[i])
            gk = _outer([inv * v for v in _rotate(q, i - j, cfg.rope_base)], x[j])
            grads.append({"W_Q": gq, "W_K": gk})
        ip = gradient_inner(grads[0], grads[1])
        status = _all([_sign(ip, ">")])
        return status, (upper(ip) if status == "refuted" else lower(ip)), {"ip": float(ip.mid()), "d_k": cfg.d_head}

    return decide("C2b", "⟨∇S_f, ∇S_r⟩ > 0 (route gradients of the mask-to-B scores)", evaluate, max_bits)


def certify_score_correlation(d_k: int, base: float, delta: int, max_bits: int = PRECISIONS[-1]) -> Certificate:
    """C2a's closed form Corr(S_f, S_r) = tr(R_g)/d_k = (2/d_k) Σ_l cos(2Δ θ_l), θ_l = base^(−2l/d_k), is
    > 0: enclosed exactly (the identity Corr = tr(R_g)/d_k itself is the proof on the claim page)."""
    require_flint()

    def evaluate():
        rho = 2 * sum(((2 * delta) * arb(base) ** (arb(-2 * l) / d_k)).cos() for l in range(d_k // 2)) / d_k
        status = _all([_sign(rho, ">")])
        return status, (upper(rho) if status == "refuted" else lower(rho)), {"formula": float(rho.mid())}

    return decide("C2a", f"tr(R_g)/d_k > 0 (d_k = {d_k}, base {base:g}, Δ = {delta})", evaluate, max_bits)


def certify_anisotropic_correlation(
    d_k: int, base: float, delta: int, row_scales, max_bits: int = PRECISIONS[-1]
) -> Certificate:
    """C2a without H-iso: W_Q's rows scaled by D = diag(row_scales), W_Q = D G, G and W_K iid N(0, σ²). Then
    E[S_f S_r] = E[qᵀR_Δ kkᵀ R_Δ q] = σ²‖x_B‖² E[qᵀR_{2Δ}q] = σ⁴‖x_B‖²‖x_M‖² tr(D²R_g) and
    Var S_f = Var S_r = σ⁴‖x_B‖²‖x_M‖² tr(D²) (means 0), so Corr(S_f, S_r) = tr(D²R_g)/tr(D²) exactly, with
    tr(D²R_g) = Σ_l (s_2l² + s_2l+1²) cos(g θ_l) (interleaved pairs). ``refuted`` when that ball and C2a's
    tr(R_g)/d_k certainly differ (the value: a certified lower bound of |difference|)."""
    require_flint()
    if len(row_scales) != d_k:
        raise ValueError(f"row_scales must have d_k = {d_k} entries; got {len(row_scales)}")

    def evaluate():
        cos = [((2 * delta) * arb(base) ** (arb(-2 * l) / d_k)).cos() for l in range(d_k // 2)]
        sq = [arb(float(v)) ** 2 for v in row_scales]
        rho_D = sum((c * (sq[2 * l] + sq[2 * l + 1]) for l, c in enumerate(cos)), arb(0)) / sum(sq, arb(0))
        rho = 2 * sum(cos, arb(0)) / d_k
        diff = rho_D - rho
        differs = diff > 0 or diff < 0
        return (
            ("refuted" if differs else "undecided"),
            (lower(abs(diff)) if differs else None),
            {"anisotropic": float(rho_D.mid()), "formula": float(rho.mid())},
        )

    return decide("C2a", "Corr(S_f, S_r) = tr(R_g)/d_k (row-scaled W_Q)", evaluate, max_bits)


def certify_training_rise(example: dict, max_bits: int = PRECISIONS[-1]) -> Certificate:
    """C2c's per-seed statement, "forward-only training raises the reverse attention to B": the mean over the
    facts of the reverse query's attention from slot b to B (slot a), head 0, after training exceeds the mean
    before, evaluated exactly on the float64 parameters before and after the training run that the record
    names (re-trained from its seed and settings: the run is deterministic on the CPU)."""
    from .claims.c2_correlated_routes import forward_training_run
    from .facts import reverse_query

    settings = {k: example[k] for k in ("pos", "d_head", "absolute_kind") if k in example}
    if "seed" not in example:
        raise ValueError("example is missing the key 'seed' of the C2c control's record")
    run = forward_training_run(example["seed"], **settings)
    cfg, template, pairs = run["cfg"], run["template"], run["pairs"]
    queries = [reverse_query(template, A, B, cfg.vocab) for A, B in pairs]
    before, after = arb_params(run["before"], cfg), arb_params(run["after"], cfg)

    def mean_attention(ap):
        total = sum((evaluate_query(ap, cfg, q).attn[0][template.a] for q in queries), arb(0))
        return total / len(queries)

    def evaluate():
        rise = mean_attention(after) - mean_attention(before)
        status = _all([_sign(rise, ">")])
        return status, (upper(rise) if status == "refuted" else lower(rise)), {"rise": float(rise.mid()), **settings}

    return decide("C2c", "mean reverse attention to B after training > before", evaluate, max_bits)


CERTIFIED_CONTROLS = (
    "C1a~absolute",
    "C1b~non-orth",
    "C1c~non-orth",
    "C2a~d_k=2",
    "C2a~anisotropic",
    "C2b~d_k=2",
    "C2c~absolute",
    "C2c~d_k=2",
    "C3~arm",
    "C3~non-orth",
    "C3~absolute",
    "C3v~gaussian-W_O",
    "C4a~arm",
    "C4b~wrong-gradient",
    "C4c~arm",
)
ARM_CONTROLS = ("C3~arm", "C4a~arm", "C4c~arm")


def case_from_example(example: dict):
    """The :class:`~mdm_props.strategies.Case` a negative control's counterexample records
    (:func:`mdm_props.search.case_from_description`)."""
    from .search import case_from_description

    return case_from_description(example)


def certify_counterexample(control_id: str, example: dict, max_bits: int = PRECISIONS[-1]) -> Certificate:
    """Re-check a negative control's counterexample (``Counterexample.example``) in ball arithmetic;
    ``refuted`` certifies the violation for that draw (parameters re-drawn from the recorded seed, and
    re-descended when the search moved them: the descent is deterministic on the CPU)."""
    from .search import descend_alignment
    from .storage import arm_queries, pair_queries

    if control_id not in CERTIFIED_CONTROLS:
        raise ValueError(f"control_id must be one of {', '.join(CERTIFIED_CONTROLS)}; got {control_id!r}")
    if control_id == "C2a~d_k=2":
        missing = [k for k in ("d_k", "base", "delta") if k not in example]
        if missing:
            raise ValueError(f"example is missing the key {missing[0]!r} of the C2a control's record")
        return certify_score_correlation(example["d_k"], example["base"], example["delta"], max_bits)
    if control_id == "C2a~anisotropic":
        missing = [k for k in ("d_k", "base", "delta", "row_scales") if k not in example]
        if missing:
            raise ValueError(f"example is missing the key {missing[0]!r} of the C2a control's record")
        return certify_anisotropic_correlation(
            example["d_k"], example["base"], example["delta"], example["row_scales"], max_bits
        )
    if control_id == "C2b~d_k=2":
        return _certify_c2b_example(example, max_bits)
    if control_id in ("C2c~absolute", "C2c~d_k=2"):
        return certify_training_rise(example, max_bits)
    case = case_from_example(example)
    cfg, t, A, B = case.cfg, case.template, case.A, case.B
    params = case.params("cpu")
    fq, rq = (arm_queries if control_id in ARM_CONTROLS else pair_queries)(t, A, B, cfg.vocab)
    if example.get("stage") == "after descent":
        params = descend_alignment(params, cfg, fq, rq, tuple(example["moved"]))
    if control_id == "C1a~absolute":
        return certify_c1a_forced(params, cfg, t, A, B, max_bits)
    if control_id == "C1b~non-orth":
        return certify_c1b(params, cfg, t, A, B, example["eta"], max_bits)
    if control_id == "C1c~non-orth":
        return certify_c1c(params, cfg, t, A, B, example["eta"], max_bits)
    if control_id == "C3~arm":
        return certify_alignment(params, cfg, fq, rq, "C3", max_bits)
    if control_id in ("C3~non-orth", "C3~absolute"):
        return certify_c3(params, cfg, t, A, B, max_bits)
    if control_id == "C3v~gaussian-W_O":
        return certify_value_alignment(params, cfg, fq, rq, "C3v", max_bits)
    if control_id == "C4a~arm":
        return certify_storage_decrease(params, cfg, fq, rq, example["eta"], "C4a", max_bits)
    if control_id == "C4b~wrong-gradient":
        return certify_linear_term(params, cfg, fq, rq, "C4b", max_bits)
    # C4c~arm: the claim's statement ⟨g_r, g_f⟩ > 0 refuted exactly; the search's evidence (the exact loss
    # rises along the float64 step θ − η ĝ_f) certified beside it
    cert = certify_full_alignment(params, cfg, fq, rq, "C4c", max_bits)
    step = certify_full_step(params, cfg, fq, rq, example["eta"], "C4c", max_bits)
    return dataclasses.replace(cert, details={**cert.details, "full_step": step.to_dict()})


def _certify_c2b_example(example: dict, max_bits: int) -> Certificate:
    """The C2b control's draw (a one-layer RoPE model with d_head = 2, rebuilt from its record)."""
    from .facts import Template
    from .model import ModelConfig
    from .params import init_params

    try:
        cfg = ModelConfig(vocab=example["vocab"], d_model=example["d_model"], d_head=2, rope_base=example["base"])
        length, a, b, fillers = example["template"]
        template, A, B, seed = Template(length, a, b, tuple(fillers)), example["A"], example["B"], example["seed"]
    except KeyError as exc:
        raise ValueError(f"example is missing the key {exc.args[0]!r} of the C2b control's record") from None
    return certify_route_gradient(init_params(cfg, seed), cfg, template, A, B, max_bits)


def negative_controls() -> dict:
    """{id: NegativeControl} for the controls whose counterexamples are certified."""
    from .claims import (
        c1_reusable_evidence,
        c2_correlated_routes,
        c3_aligned_storage,
        c3v_separate_value_path,
        c4_reverse_loss_decrease,
    )

    modules = (
        c1_reusable_evidence,
        c2_correlated_routes,
        c3_aligned_storage,
        c3v_separate_value_path,
        c4_reverse_loss_decrease,
    )
    return {n.id: n for m in modules for n in m.NEGATIVE_CONTROLS if n.id in CERTIFIED_CONTROLS}


def certify_controls(seed: int = 0, max_bits: int = PRECISIONS[-1], ids=CERTIFIED_CONTROLS) -> list[dict]:
    """Run each negative control's seeded search and certify the counterexample it returns."""
    controls = negative_controls()
    rows = []
    for cid in ids:
        n = controls[cid]
        start = time.perf_counter()
        cx = n.run(n.default_draws, seed, "cpu")
        row = {"id": cid, "found": cx.found, "searched": cx.searched}
        if cx.found:
            cert = certify_counterexample(cid, cx.example, max_bits)
            row.update(
                status=cert.status, bits=cert.bits, value=cert.value, statement=cert.statement, details=cert.details
            )
        else:
            row.update(status="no-counterexample")
        row["seconds"] = round(time.perf_counter() - start, 3)
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# the `mdm-props certify` command


def add_certify_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mdm-props certify`` (the rules of :mod:`mdm_props.arguments`)."""
    from .arguments import BUDGETS, budget_type, int_type, seed_type

    parser.add_argument(
        "target",
        choices=CERTIFIABLE + ("controls", "soundness"),
        help="C1b, C3, C4a: certify the claim on the float64 runner's draws; controls: certify the "
        "negative controls' counterexamples; soundness: the (true error)/(bound) table",
    )
    parser.add_argument(
        "--seed", type=seed_type(), default=0, help="master seed (default 0; < 2**64): the runner's draws"
    )
    parser.add_argument(
        "--draws",
        type=budget_type("certify --draws"),
        default=100,
        help=f"draws (default 100, at most {BUDGETS['certify --draws']:,}; soundness: per bound)",
    )
    parser.add_argument(
        "--max-bits",
        type=int_type("--max-bits", PRECISIONS[0], PRECISIONS[-1]),
        default=PRECISIONS[-1],
        help=f"precision cap in bits, {PRECISIONS[0]} … {PRECISIONS[-1]} (default {PRECISIONS[-1]}; "
        f"tried: {', '.join(map(str, PRECISIONS))})",
    )
    parser.add_argument(
        "--json",
        metavar="PATH",
        help='also write the per-draw results as JSON to PATH (a .json file in an existing folder; "complete": '
        "false until the run ends, so an interrupted run keeps its finished certificates)",
    )


def _write_json(path, summary: dict, rows: list, complete: bool) -> None:
    """The JSON report, replaced atomically (an interrupted write leaves the previous one)."""
    import os

    doc = {"summary": summary, "rows": rows, "complete": complete, "flint": flint.__version__}
    tmp = f"{path}.part"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2, default=float)
    os.replace(tmp, path)


def run_certify(
    target: str, draws: int = 100, seed: int = 0, max_bits: int = PRECISIONS[-1], json_path: str | None = None, out=None
) -> int:
    """``mdm-props certify``: print per-draw statuses and a summary; return the exit status:
    0 every draw proved (controls: every counterexample certified ``refuted``; soundness: every ratio
    ≤ 1), 1 otherwise — a refuted or an ``undecided`` draw is not a pass — or python-flint missing.
    With ``json_path`` an interrupted run (an error, Ctrl-C) writes the rows that finished, marked
    ``"complete": false``, then re-raises."""
    from .progress import Progress

    out = out or sys.stdout
    if flint is None:
        print(f"mdm-props certify: {INSTALL_HINT}", file=sys.stderr)
        return 1
    _precisions(max_bits)
    torch.set_num_threads(1)  # tiny tensors: a second intra-op thread only waits
    start = time.perf_counter()
    rows: list = []
    summary: dict = {"target": target, "draws": draws, "seed": seed}
    try:
        if target == "soundness":
            rows = soundness_table(draws, seed)
            print(format_soundness_table(rows), file=out)
            bad = [r["bound"] for r in rows if not r["max_ratio"] <= 1]
            summary = {"target": target, "draws": draws, "seed": seed, "unsound": bad}
            print(
                f"\n{'every bound sound' if not bad else 'UNSOUND: ' + ', '.join(bad)} "
                f"({time.perf_counter() - start:.1f} s)",
                file=out,
            )
        elif target == "controls":
            summary = {"target": target, "seed": seed}
            with Progress(len(CERTIFIED_CONTROLS), "certify controls") as bar:
                for cid in CERTIFIED_CONTROLS:
                    (r,) = certify_controls(seed, max_bits, ids=(cid,))
                    rows.append(r)
                    v = "" if r.get("value") is None else f" value {r['value']:.6g}"
                    print(
                        f"{r['id']:<18} {r['status']:<18} {r.get('bits', '-'):>5} bits{v} ({r['seconds']:.2f} s)",
                        file=out,
                        flush=True,
                    )
                    bar.update(1, cid)
            bad = [r["id"] for r in rows if r["status"] != "refuted"]
            summary = {"target": target, "seed": seed, "not_certified": bad}
            print(
                f"\n{len(rows) - len(bad)}/{len(rows)} counterexamples certified (refuted)"
                f"{'' if not bad else '; NOT CERTIFIED: ' + ', '.join(bad)} ({time.perf_counter() - start:.1f} s)",
                file=out,
            )
        else:
            if draws >= 1000:  # the draws are built first (a few seconds for 10^5)
                print(f"certify {target}: drawing {draws} cases ...", file=sys.stderr, flush=True)
            with Progress(draws, f"certify {target}") as bar:
                for n, (case, eta) in enumerate(claim_draws(target, draws, seed)):
                    cert = certify_case(target, case, eta, max_bits)
                    rows.append({"draw": n, **cert.to_dict()})
                    v = "" if cert.value is None else f"  certified bound {cert.value:.6g}"
                    print(f"{target} draw {n:>4}: {cert.status:<9} {cert.bits:>5} bits{v}", file=out, flush=True)
                    bar.update(1, cert.status)
            counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
            bad = [r["draw"] for r in rows if r["status"] != "proved"]
            summary = {"target": target, "draws": draws, "seed": seed, **counts}
            print(
                f"\n{target}: {counts['proved']}/{draws} proved, {counts['refuted']} refuted, {counts['undecided']} "
                f"undecided (undecided is not a pass) ({time.perf_counter() - start:.1f} s)",
                file=out,
            )
    except BaseException:  # an error or Ctrl-C: keep the certificates that finished, marked incomplete
        if json_path:
            summary["seconds"] = round(time.perf_counter() - start, 3)
            _write_json(json_path, {**summary, "finished_rows": len(rows)}, rows, complete=False)
            print(f"interrupted after {len(rows)} rows; wrote them to {json_path}", file=sys.stderr)
        raise
    summary["seconds"] = round(time.perf_counter() - start, 3)
    if json_path:
        _write_json(json_path, summary, rows, complete=True)
    return 1 if bad else 0


def cmd_certify(args, parser) -> int:
    """Entry point for the ``certify`` subparser: the extra and ``--json`` checked before any work (exit 2)."""
    from .arguments import JSON_SUFFIX, require_extra, require_output_file

    try:
        json_path = None if args.json is None else require_output_file("--json", args.json, JSON_SUFFIX)
        require_extra("mdm-props certify", "certify")
    except ValueError as exc:
        parser.error(str(exc))
    return run_certify(args.target, args.draws, args.seed, args.max_bits, None if json_path is None else str(json_path))
