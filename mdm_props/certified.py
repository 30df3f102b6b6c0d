"""The ball-arithmetic backend: the exact one-layer reference model, generic certification of the
claims' declared exact values (:class:`mdm_props.claim.Certified`), the soundness table of the float64
bounds, and the certification of the negative controls' counterexamples (each control carries its own).
No claim is named here: a claim module declares what is certified.

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

from .arguments import EXTRAS
from .facts import Query
from .validation import require_int

try:  # optional extra
    import flint
    from flint import arb, arb_mat
except ImportError:  # pragma: no cover - exercised only where python-flint is absent
    flint = arb = arb_mat = None  # type: ignore[assignment,misc]  # require_flint() names the extra

# the requirement as pyproject states it, from its one copy in mdm_props.arguments.EXTRAS (tests/test_cli.py
# compares that with pyproject)
INSTALL_HINT = (
    "python-flint is needed for certified (ball-arithmetic) evaluation; install it with "
    'pip install -e ".[certify]"  (or: pip install ' + " ".join(f'"{r}"' for r in EXTRAS["certify"][1]) + ")"
)
PRECISIONS = (64, 128, 256, 512, 1024)  # bits, tried in order until the decision is made
SOUNDNESS_BITS = 128  # enclosures of the exact values for the soundness meta-test (radius ≪ u)
STATUSES = ("proved", "refuted", "undecided")


def require_flint() -> None:
    """Raise ImportError with the install command when python-flint is missing."""
    if flint is None:
        raise ImportError(INSTALL_HINT)


@contextmanager
def precision(bits: int):
    """Run a block at ``bits`` bits of working precision (restored afterwards)."""
    require_flint()
    require_int("bits", bits, 53)
    old = flint.ctx.prec
    flint.ctx.prec = bits
    try:
        yield
    finally:
        flint.ctx.prec = old


def _precisions(max_bits: int) -> tuple[int, ...]:
    require_int("max_bits", max_bits, PRECISIONS[0])
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
    resid: list  # (V,) y − p (as mdm_props.storage.QueryState.resid)
    g: list  # (d,) Uᵀ(p − y) = −Uᵀ resid: ∂L/∂W_OV^h = g (c^h)ᵀ
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
    resid = [(1 if v == query.target else 0) - pv for v, pv in enumerate(p)]
    g = [-_dot([U[v][e] for v in range(cfg.vocab)], resid) for e in range(d)]
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
    dU = _outer([-v for v in ex.resid], ex.hidden)  # (p − y) hᵀ
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


def dot(a, b):
    """Σ a_i b_i of two lists of balls."""
    return _dot(a, b)


def matvec(M, v):
    """M v for M given by rows (lists of balls)."""
    return _matvec(M, v)


def outer(a, b):
    """a bᵀ as nested lists."""
    return _outer(a, b)


def rotate(k: list, delta: int, base: float) -> list:
    """R_δ k (RoPE, interleaved pairs), exactly."""
    return _rotate(k, delta, base)


def token_overlap(f: ArbQuery, r: ArbQuery, n_tokens: int):
    """S = Σ_h Σ_t α^f_h(t) α^r_h(t), the token-aligned attention overlap (exact)."""
    return sum(
        (_dot(a, b) for a, b in zip(f.token_attention(n_tokens), r.token_attention(n_tokens), strict=False)), arb(0)
    )


def logit_direction(ap: dict, cfg, f: ArbQuery, r: ArbQuery) -> list:
    """a (V,) with z_r(W_OV − η G_f) = z_r + η a exactly: a = −U Σ_h G_f^h c_r^h = −(U g_f) S."""
    S = context_overlap(f, r)
    return [-_dot(u, f.g) * S for u in ap["U"]]


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


def sign(x, relation: str):
    """True / False when ``x <relation> 0`` is certain either way, None when the ball decides nothing."""
    return _sign(x, relation)


def all_hold(conds) -> str:
    """proved when every condition (True/False/None = undecided) is True, refuted when one is False."""
    return _all(conds)


def ratio(true_error: float, tolerance: float) -> float:
    """(certified true error)/(derived tolerance), 0/0 = 0."""
    return true_error / tolerance if tolerance > 0 else (0.0 if true_error == 0 else math.inf)


# ---------------------------------------------------------------------------------------------
# a declared claim in ball arithmetic (mdm_props.claim.Certified)


def certifiable() -> tuple[str, ...]:
    """The ids of the claims that declare a certified path (``SPEC.certified`` of their module)."""
    return tuple(c.id for c in _specs())


def _specs() -> list:
    """Every declared :class:`~mdm_props.claim.Spec` with a certified path, in registry order."""
    from .claim import specs

    return [s for s in specs() if s.certified is not None]


def spec_of(claim: str):
    """The certified :class:`~mdm_props.claim.Spec` of ``claim`` (ValueError naming the certifiable ids)."""
    for spec in _specs():
        if spec.id == claim:
            return spec
    raise ValueError(f"claim must be one of {', '.join(certifiable())}; got {claim!r}")


def _decisions(proofs, values: dict) -> list:
    out = []
    for p in proofs:
        v = values.get(p.quantity)
        balls = v if isinstance(v, list) else [v]
        out += [None if b is None else _sign(b, p.relation) for b in balls]
    return out


def _bound(x, refuted: bool) -> float | None:
    if x is None:
        return None
    balls = x if isinstance(x, list) else [x]
    return max(upper(b) for b in balls) if refuted else min(lower(b) for b in balls)


def certify(spec, draw, max_bits: int = PRECISIONS[-1]) -> Certificate:
    """The claim's certified statement on one :class:`~mdm_props.claim.Draw`: its declared exact values
    (``spec.certified.values``) on the draw's parameters as exact balls, proved when every declared
    :class:`~mdm_props.claim.Proof` holds on every point of its ball, refuted when one certainly fails, the
    precision raised along :data:`PRECISIONS` until decided. The value: a certified lower bound of the
    declared quantity (an upper bound when refuted)."""
    path = spec.certified
    if path is None:
        raise ValueError(f"{spec.id} declares no certified path")
    ap = arb_params(draw.params, draw.cfg)

    def evaluate():
        v = path.values(ap, draw)
        status = _all(_decisions(path.proofs, v))
        details = path.details(v, draw) if path.details is not None else {}
        return status, _bound(v.get(path.value), status == "refuted"), details

    return decide(spec.id, path.statement, evaluate, max_bits)


def claim_draws(claim: str, draws: int, seed: int) -> list:
    """[(case, η or None)]: the draws the claim's per-draw runner makes for ``seed``
    (:func:`mdm_props.claim.per_draw_cases`; ``verify`` batches and splits draws over encodings)."""
    return list(iter_claim_draws(claim, draws, seed))


def iter_claim_draws(claim: str, draws: int, seed: int):
    """:func:`claim_draws` one at a time (the arguments checked at once, each draw built when it is
    needed: ``certify --draws 100000`` starts certifying at once instead of building every draw first)."""
    from .search import per_draw_cases
    from .validation import require_int, require_seed

    spec = spec_of(claim)
    items = per_draw_cases(require_int("draws", draws, 1), require_seed("seed", seed), step=spec.step, **spec.sample)
    return (item if spec.step else (item, None) for item in items)


def certify_case(claim: str, case, eta=None, max_bits: int = PRECISIONS[-1]) -> Certificate:
    """Certify ``claim`` on one :class:`~mdm_props.strategies.Case` (η: the step, for a claim that takes one)."""
    from .claim import Draw

    return certify(spec_of(claim), Draw.from_case(case, "cpu", eta), max_bits)


# ---------------------------------------------------------------------------------------------
# soundness of the float64 bounds: certified distance of each float64 result to the exact value

KIT_BOUNDS = ("attn", "context", "logits", "logprobs", "loss", "storage_gradient")


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


def claim_bounds() -> tuple[str, ...]:
    """The claim tolerances the soundness table measures: "<id> <check key>" for every check key a
    certified path's ``soundness`` reports."""
    return tuple(f"{s.id} {k}" for s in _specs() if s.certified.soundness is not None for k in s.certified.sources)


def bound_sources() -> dict:
    """{bound: what it measures}: the kit's bounds and each claim's declared ``sources``."""
    out = {
        "attn": "forward_error_bounds['attn'] (query row)",
        "context": "forward_error_bounds['context'] (query row)",
        "logits": "forward_error_bounds['logits'] (query slot)",
        "logprobs": "forward_error_bounds['logprobs'] (query slot)",
        "loss": "query_loss_error_bound",
        "storage_gradient": "storage_gradient_error_bound",
    }
    for s in _specs():
        out.update({f"{s.id} {k}": v for k, v in s.certified.sources.items()})
    return out


def claim_ratios(draw, ap: dict | None = None) -> dict:
    """(true error)/(tolerance) for the tolerances of every certified claim on one H-orth draw (with its step
    η), each from the claim's declared ``soundness`` (the sum of the certified parts that its derivation
    bounds), keyed "<id> <check key>"."""
    ap = arb_params(draw.params, draw.cfg) if ap is None else ap
    out = {}
    with precision(SOUNDNESS_BITS):
        for s in _specs():
            if s.certified.soundness is not None:
                out.update({f"{s.id} {k}": v for k, v in s.certified.soundness(draw, ap).items()})
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
    from .claim import Draw
    from .storage import pair_queries

    params, cfg = case.params("cpu"), case.cfg
    ap = arb_params(params, cfg)
    out: dict = {}
    for q in pair_queries(case.template, case.A, case.B, cfg.vocab):
        for k, v in kit_ratios(params, cfg, q, ap).items():
            out[k] = max(out.get(k, 0.0), v)
    if eta is not None:
        out.update(claim_ratios(Draw.from_case(case, "cpu", eta), ap))
    return out


def soundness_table(draws: int, seed: int = 0) -> list[dict]:
    """Per bound: the draws it was measured on and the largest (true error)/(derived bound), with the
    worst draw's index. ≤ 1 everywhere means sound; the safety factor 2 of the bounds means a ratio
    above 1/2 would say the factor, not the first-order derivation, is doing the work."""
    sources = bound_sources()
    rows = {
        k: {"bound": k, "source": sources[k], "draws": 0, "max_ratio": 0.0, "worst_draw": None}
        for k in KIT_BOUNDS + claim_bounds()
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
# certified negative controls: each control carries its own certification (NegativeControl.certify)


def case_from_example(example: dict):
    """The :class:`~mdm_props.strategies.Case` a negative control's counterexample records
    (:func:`mdm_props.search.case_from_description`)."""
    from .search import case_from_description

    return case_from_description(example)


def example_draw(example: dict, queries) -> tuple:
    """(params, cfg, template, A, B, fq, rq) of a recorded counterexample: the case redrawn from its seed,
    ``queries(template, A, B, vocab)`` the control's pair (the MDM's or the ARM's), and the parameters
    re-descended when the search moved them (the descent is deterministic on the CPU)."""
    from .search import descend_alignment

    case = case_from_example(example)
    cfg, t, A, B = case.cfg, case.template, case.A, case.B
    params = case.params("cpu")
    fq, rq = queries(t, A, B, cfg.vocab)
    if example.get("stage") == "after descent":
        params = descend_alignment(params, cfg, fq, rq, tuple(example["moved"]))
    return params, cfg, t, A, B, fq, rq


def require_keys(example: dict, keys, what: str) -> None:
    """ValueError naming the first of ``keys`` missing from a control's record ``example``."""
    missing = [k for k in keys if k not in example]
    if missing:
        raise ValueError(f"example is missing the key {missing[0]!r} of the {what} control's record")


def negative_controls() -> dict:
    """{id: NegativeControl} for every registered control that carries its own certification."""
    import importlib

    from . import registry

    modules = dict.fromkeys(c.module for c in registry.CLAIMS)
    return {
        n.id: n
        for m in modules
        for n in getattr(importlib.import_module(m), "NEGATIVE_CONTROLS", ())
        if n.certify is not None
    }


def certify_counterexample(control_id: str, example: dict, max_bits: int = PRECISIONS[-1]) -> Certificate:
    """Re-check a negative control's counterexample (``Counterexample.example``) in ball arithmetic with the
    control's own certification; ``refuted`` certifies the violation for that draw."""
    controls = negative_controls()
    if control_id not in controls:
        raise ValueError(f"control_id must be one of {', '.join(controls)}; got {control_id!r}")
    return controls[control_id].certify(example, max_bits)


def certify_controls(seed: int = 0, max_bits: int = PRECISIONS[-1], ids=None) -> list[dict]:
    """Run each negative control's seeded search and certify the counterexample it returns (``ids``
    default: every control that carries a certification)."""
    controls = negative_controls()
    rows = []
    for cid in controls if ids is None else ids:
        n = controls[cid]
        start = time.perf_counter()
        cx = n.run(n.default_draws, seed, "cpu")
        row = {"id": cid, "found": cx.found, "searched": cx.searched}
        if cx.found:
            cert = n.certify(cx.example, max_bits)
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
        choices=certifiable() + ("controls", "soundness"),
        help=f"{', '.join(certifiable())}: certify the claim on the float64 runner's draws; controls: certify the "
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
            ids = tuple(negative_controls())
            with Progress(len(ids), "certify controls") as bar:
                for cid in ids:
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
            with Progress(draws, f"certify {target}") as bar:  # each draw built when it is certified
                for n, (case, eta) in enumerate(iter_claim_draws(target, draws, seed)):
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
