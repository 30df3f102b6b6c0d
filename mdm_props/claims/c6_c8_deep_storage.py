"""C6, C7, C8 — per-layer storage alignment and the forward storage step in a deep block (THEORY §2b).

One module for the three families: they read the same per-layer storage gradients
``G^ℓ = ∂L/∂W_OV^ℓ`` (merged value path, :func:`layer_gradients`) of the same deep draws
(:func:`storage_case`), and C8 builds on C6's leading term.

Branch scale ε. The model multiplies every residual branch by ``cfg.branch_scale``; THEORY's equivalent
form ``W_OV^ℓ = ε Ŵ^ℓ`` (and ``W_down = ε Ŵ_down``) is used here (:func:`at_branch_scale`): G^ℓ is the
gradient with respect to the *effective* W_OV^ℓ = εŴ^ℓ, which is O(1) as ε → 0 (the gradient with
respect to Ŵ is ε G^ℓ). With ε = 2^−k both forms are the same float64 numbers (scaling by a power of 2
is exact).

* C6 (asymptotic identity, per draw) — ``⟨G_f^ℓ, G_r^ℓ⟩ = ‖Jᵀ Uᵀ(p₀ − y)‖² Σ_h ⟨c_f^{ℓ,h}, c_r^{ℓ,h}⟩ + O(ε)``
  (:func:`leading_term`, from a forward pass at ε = 0, no autograd); the remainder has observed order 1
  over ε = 2^−k (:func:`check_c6`) and below a computed ε₀ the sign is positive.
* C7 (typical) — at branch scale 1 and Gaussian embeddings the rate of ``cos(G_f^ℓ, G_r^ℓ) > 0`` of the
  MDM (each relative encoding) is separated from the ARM's (:func:`check_c7`).
* C8 (per draw) — the per-layer Taylor test of the forward storage step on the reverse loss (only W_OV^ℓ
  moves; :func:`check_c8`) and, at the last layer without final norm or MLP, C4a's explicit remainder
  ``0 ≤ φ(η) − φ(0) + η⟨G_r^L, G_f^L⟩ ≤ η² spread(a)²/8``.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass

import torch

from ..checks import CheckResult, Counterexample, NegativeControl, identity, inequality, undecided
from ..facts import Query, Template, check_query
from ..model import RELATIVE_ENCODINGS, ModelConfig, forward, preset, unembedding
from ..params import check_params, init_params, resolve_device
from ..rounding import STORAGE_SAFETY, gamma
from ..rounding_mode import with_error_bounds
from ..search import search
from ..statistics import FALSE_ALARM, clopper_pearson
from ..storage import arm_queries, pair_queries
from ..strategies import ETAS
from ..taylor import taylor_floor
from ..validation import require_choice, require_int, require_seed

MAX_SEED = 2**32 - 1
BLOCKS = ("plain", "llada-like", "dream-like", "smdm-like")
QUERY_KINDS = ("mdm", "arm")


# ---------------------------------------------------------------------------------------------
# shared machinery: the deep draw, the branch scale, per-layer storage gradients


def require_deep_storage_model(cfg: ModelConfig) -> None:
    """The deep storage claims move the merged W_OV^ℓ and read the prediction at the query slot."""
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"cfg must be a ModelConfig; got {type(cfg).__name__}")
    if not cfg.merged_ov:
        raise ValueError("cfg.merged_ov must be True: G^ℓ = ∂L/∂W_OV^ℓ is the merged value path's gradient")
    if cfg.branch_scale != 1.0:
        raise ValueError(f"cfg.branch_scale must be 1: ε enters as W_OV = εŴ (at_branch_scale); got {cfg.branch_scale}")
    if not cfg.relative:
        raise ValueError(f"cfg.pos must be a relative encoding ({', '.join(RELATIVE_ENCODINGS)}); got {cfg.pos!r}")


def at_branch_scale(params: dict, eps: float) -> dict:
    """The parameters with every branch output weight scaled by ε: W_OV ← εŴ_OV, W_down ← εŴ_down
    (the model at ``branch_scale = ε``, with the effective W_OV as the parameter)."""
    out = dict(params)
    for name in ("W_OV", "W_down"):
        if name in params:
            out[name] = eps * params[name]
    return out


def require_queries(params: dict, cfg: ModelConfig, *queries: Query) -> None:
    """The parameters (names, shapes, float64, finite) and the queries, checked once: the functions below
    with a leading underscore evaluate without checking again (inside the loops over ε and η, and under
    :mod:`mdm_props.rounding_mode`, where every check is a handful of traced operations)."""
    check_params(params, cfg)
    for q in queries:
        check_query(q, cfg)


def _slot_loss(params: dict, cfg: ModelConfig, query: Query) -> torch.Tensor:
    """−log p(target) at the query slot: :func:`mdm_props.facts.query_loss`'s operations, unchecked."""
    out = forward(params, cfg, query.tensor(params["E"].device), checked=True)
    return -torch.log_softmax(out.logits[query.slot], dim=-1)[query.target]


def _layer_gradients(params: dict, cfg: ModelConfig, query: Query) -> torch.Tensor:
    W = params["W_OV"].detach().requires_grad_(True)
    with torch.enable_grad():
        (G,) = torch.autograd.grad(_slot_loss({**params, "W_OV": W}, cfg, query), W)
    return G


def _layer_inner_products(params: dict, cfg: ModelConfig, fq: Query, rq: Query) -> torch.Tensor:
    return (_layer_gradients(params, cfg, fq) * _layer_gradients(params, cfg, rq)).sum((1, 2, 3))


def layer_gradients(params: dict, cfg: ModelConfig, query: Query) -> torch.Tensor:
    """G^ℓ = ∂(−log p(target))/∂W_OV^ℓ for every layer by autograd: (L, H, d, d)."""
    require_queries(params, cfg, query)
    return _layer_gradients(params, cfg, query)


def layer_inner_products(params: dict, cfg: ModelConfig, fq: Query, rq: Query) -> torch.Tensor:
    """⟨G_f^ℓ, G_r^ℓ⟩_F for every layer ℓ: (L,)."""
    require_queries(params, cfg, fq, rq)
    return _layer_inner_products(params, cfg, fq, rq)


def layer_cosines(params: dict, cfg: ModelConfig, fq: Query, rq: Query) -> torch.Tensor:
    """cos(G_f^ℓ, G_r^ℓ) for every layer ℓ: (L,)."""
    G_f, G_r = layer_gradients(params, cfg, fq), layer_gradients(params, cfg, rq)
    return (G_f * G_r).sum((1, 2, 3)) / (G_f.flatten(1).norm(dim=1) * G_r.flatten(1).norm(dim=1))


@dataclass(frozen=True)
class StorageCase:
    """A deep draw for C6–C8: structure, parameter seed, init scale, orthonormal embeddings or not, a
    template and a pair A ≠ B; ``kind`` "mdm" (bidirectional, masked queries) or "arm" (causal, next-token
    queries at slot b − 1)."""

    cfg: ModelConfig
    seed: int
    scale: float
    orthonormal: bool
    template: Template
    A: int
    B: int
    kind: str = "mdm"

    def params(self, device="cpu") -> dict:
        return init_params(self.cfg, self.seed, scale=self.scale, orthonormal=self.orthonormal, device=device)

    def queries(self) -> tuple[Query, Query]:
        pair = arm_queries if self.kind == "arm" else pair_queries
        return pair(self.template, self.A, self.B, self.cfg.vocab)

    def describe(self, **more) -> dict:
        c = self.cfg
        return {
            "kind": self.kind,
            "pos": c.pos,
            "n_layers": c.n_layers,
            "n_heads": c.n_heads,
            "n_kv_heads": c.kv_heads,
            "norm": c.norm,
            "final_norm": c.final_norm,
            "mlp": c.mlp,
            "qk_bias": c.qk_bias,
            "rope_pairing": c.rope_pairing,
            "vocab": c.vocab,
            "d_model": c.d_model,
            "d_head": c.d_head,
            "tied": c.tied,
            "seed": self.seed,
            "scale": self.scale,
            "orthonormal": self.orthonormal,
            "template": (self.template.length, self.template.a, self.template.b, self.template.fillers),
            "A": self.A,
            "B": self.B,
            **more,
        }


def storage_case(
    choose,
    seed: int,
    *,
    kind: str = "mdm",
    pos=RELATIVE_ENCODINGS,
    max_layers: int = 4,
    orthonormal: bool = True,
    final_norm=(False, True),
    mlp=("none", "swiglu"),
    scale=(0.5, 1.0, 2.0),
    tied=(True, False),
) -> StorageCase:
    """A deep draw: ``choose(options)`` picks one of a sequence (``random.Random.choice``, or a
    Hypothesis ``sampled_from``); ``seed`` seeds the parameters. Depth 1 … ``max_layers``, 1 or 2 query
    heads with every GQA ratio, RMSNorm pre-norm or none, the final norm, MLP and head (tied or not) options
    given, q/k biases, either RoPE pairing, a template "A r₁ … B" of length 3–5 (A in slot 0, B last).
    ``orthonormal``: orthonormal embeddings (H-orth, d_model = 12 ≥ V + 1), else Gaussian."""
    require_choice("kind", kind, QUERY_KINDS)
    n_heads = choose((1, 2))
    V = choose((4, 5, 6))
    cfg = ModelConfig(
        vocab=V,
        d_model=12 if orthonormal else choose((8, 12)),
        d_head=choose((2, 4)),
        n_heads=n_heads,
        n_kv_heads=choose(tuple(k for k in (1, 2) if n_heads % k == 0)),
        n_layers=choose(tuple(range(1, max_layers + 1))),
        pos=choose(tuple(pos)),
        rope_base=choose((1e4, 100.0)),
        attention="causal" if kind == "arm" else "bidirectional",
        tied=choose(tuple(tied)),
        norm=choose(("none", "rms")),
        final_norm=choose(tuple(final_norm)),
        mlp=choose(tuple(mlp)),
        d_mlp=8,
        qk_bias=choose((False, True)),
        rope_pairing=choose(("interleaved", "half-split")),
    )
    A = choose(tuple(range(V)))
    B = choose(tuple(t for t in range(V) if t != A))
    free = tuple(t for t in range(V) if t not in (A, B))
    T = choose((3, 4, 5))
    template = Template(T, 0, T - 1, tuple(choose(free) for _ in range(T - 2)))
    return StorageCase(cfg, seed, choose(tuple(scale)), orthonormal, template, A, B, kind)


def sample_storage_case(rng: random.Random, **kwargs) -> StorageCase:
    """:func:`storage_case` driven by a ``random.Random``."""
    return storage_case(rng.choice, rng.randint(0, MAX_SEED), **kwargs)


# ---------------------------------------------------------------------------------------------
# C7 — alignment at standard initialisation (typical)

C7_SCALES = (1.0, 3.0, 10.0)  # init scales of the depth figure


def c7_case(rng: random.Random, *, kind: str, pos: str, block: str, n_layers: int, scale: float = 1.0) -> StorageCase:
    """A C7 draw: Gaussian embeddings, branch scale 1, the canonical template "A r B" with A, B, r
    distinct; ``block`` "plain" (V = 8, d = 16, d_k = 4, 2 heads, no norm, no MLP) or a preset
    (model.preset, V = 8, d = 16, d_k = 4, 4 heads, RMSNorm, SwiGLU, half-split RoPE) with the merged value
    path (G^ℓ = ∂L/∂W_OV^ℓ), no value bias and read-out at the slot (offset 0, also for dream-like)."""
    require_choice("kind", kind, QUERY_KINDS)
    require_choice("block", block, BLOCKS)
    attention = "causal" if kind == "arm" else "bidirectional"
    if block == "plain":
        cfg = ModelConfig(vocab=8, d_model=16, d_head=4, n_heads=2, n_layers=n_layers, pos=pos, attention=attention)
    else:
        if pos != "rope":
            raise ValueError(f"pos must be 'rope' for the preset block {block!r} (the presets use RoPE); got {pos!r}")
        cfg = preset(block, n_layers=n_layers, attention=attention, merged_ov=True, v_bias=False, readout_offset=0)
    A, B, r = rng.sample(range(cfg.vocab), 3)
    return StorageCase(cfg, rng.randint(0, MAX_SEED), scale, False, Template(3, 0, 2, (r,)), A, B, kind)


def c7_group_cases(draws: int, seed: int, *, kind: str, pos: str, scale: float = 1.0, n_layers=None):
    """``draws`` seeded C7 draws of one group (MDM with encoding ``pos``, or the ARM with ``pos``): depth
    uniform on 1–4 (or ``n_layers``); blocks: plain, and for RoPE the three presets too (uniform)."""
    rng = random.Random(require_seed("seed", seed))
    blocks = BLOCKS if pos == "rope" else ("plain",)
    for _ in range(require_int("draws", draws, 1)):
        L = rng.randint(1, 4) if n_layers is None else n_layers
        yield c7_case(rng, kind=kind, pos=pos, block=rng.choice(blocks), n_layers=L, scale=scale)


def alignment_signs(
    draws: int, seed: int, device: str = "cpu", *, kind: str, pos, scale: float = 1.0, n_layers=None
) -> dict:
    """One group's outcomes: ``per_layer`` {ℓ: [positive, draws]} over every layer of every draw, and the
    asserted statistic ``chosen`` [positive, draws]: per draw the sign of cos(G_f^ℓ, G_r^ℓ) at one layer ℓ
    drawn uniformly (one independent Bernoulli outcome per draw, as Clopper–Pearson needs). ``pos``: one
    encoding, or a tuple taken in turn (the ARM pools the encodings)."""
    resolve_device(device)
    encodings = (pos,) if isinstance(pos, str) else tuple(pos)
    per_layer: dict[int, list[int]] = {}
    per_encoding: dict[str, list[int]] = {}
    chosen = [0, 0]
    rng = random.Random(require_seed("seed", seed) + 7)
    for i, enc in enumerate(encodings):
        n = draws // len(encodings) + (i < draws % len(encodings))
        if n == 0:
            continue
        for case in c7_group_cases(n, seed + i, kind=kind, pos=enc, scale=scale, n_layers=n_layers):
            fq, rq = case.queries()
            cos = layer_cosines(case.params(device), case.cfg, fq, rq)
            for layer, c in enumerate(cos.tolist(), 1):
                cell = per_layer.setdefault(layer, [0, 0])
                cell[0] += c > 0
                cell[1] += 1
            pick = rng.randrange(case.cfg.n_layers)
            chosen[0] += bool(cos[pick] > 0)
            chosen[1] += 1
            cell = per_encoding.setdefault(enc, [0, 0])
            cell[0] += bool(cos[pick] > 0)
            cell[1] += 1
    return {"per_layer": {k: per_layer[k] for k in sorted(per_layer)}, "chosen": chosen, "per_encoding": per_encoding}


def c7_alpha(comparisons: int = 1, alpha: float = FALSE_ALARM) -> float:
    """Bonferroni: each comparison "lower(MDM_e) > upper(ARM)" uses two-sided (1 − α_c) intervals,
    α_c = alpha/comparisons. A false separation needs the MDM interval to miss above (prob. ≤ α_c/2) or
    the ARM's to miss below (≤ α_c/2): ≤ α_c per comparison, ≤ alpha over all of them."""
    return alpha / require_int("comparisons", comparisons, 1)


def check_c7(groups: dict, alpha: float = FALSE_ALARM) -> list[CheckResult]:
    """C7 on the outcomes of :func:`alignment_signs`: ``groups`` = {"arm": …, encoding: … (MDM)}. For each
    MDM encoding: Clopper–Pearson lower bound of its rate > the ARM's upper bound (:func:`c7_alpha`)."""
    if "arm" not in groups:
        raise ValueError(f"groups must hold the 'arm' outcomes; got keys {sorted(groups)}")
    mdm = [e for e in groups if e != "arm"]
    if not mdm:
        raise ValueError(f"groups must hold at least one MDM group besides 'arm'; got keys {sorted(groups)}")
    a = c7_alpha(len(mdm), alpha)
    k_arm, n_arm = groups["arm"]["chosen"]
    arm_lo, arm_hi = clopper_pearson(k_arm, n_arm, a)
    out = []
    for e in mdm:
        k, n = groups[e]["chosen"]
        lo, hi = clopper_pearson(k, n, a)
        rates = lambda g: {layer: (c[0] / c[1], c[1]) for layer, c in g["per_layer"].items()}  # noqa: E731
        out.append(
            inequality(
                "C7",
                f"lower CP bound of P(cos(G_f^ℓ, G_r^ℓ) > 0), MDM ({e}), > the ARM's upper bound",
                lo,
                arm_hi,
                ">",
                1.0,
                mdm_rate=k / n,
                mdm_interval=(lo, hi),
                arm_rate=k_arm / n_arm,
                arm_interval=(arm_lo, arm_hi),
                alpha=alpha,
                alpha_per_comparison=a,
                comparisons=len(mdm),
                mdm_per_layer=rates(groups[e]),
                arm_per_layer=rates(groups["arm"]),
                mdm_per_encoding=groups[e].get("per_encoding"),
                arm_per_encoding=groups["arm"].get("per_encoding"),
            )
        )
    return out


def c7_groups(
    draws: int, seed: int, device: str = "cpu", *, per_encoding: bool = False, scale: float = 1.0, n_layers=None
) -> dict:
    """The outcomes of the groups, ``draws`` draws each: the ARM (encodings in turn) and the MDM, either
    pooled over the relative encodings (one group "relative", encodings in turn; one comparison) or one
    group per encoding (``per_encoding``; four comparisons, Bonferroni in :func:`c7_alpha`)."""
    if per_encoding:
        groups = {
            e: alignment_signs(draws, seed + 101 * i, device, kind="mdm", pos=e, scale=scale, n_layers=n_layers)
            for i, e in enumerate(RELATIVE_ENCODINGS)
        }
    else:
        groups = {
            "relative": alignment_signs(
                draws, seed, device, kind="mdm", pos=RELATIVE_ENCODINGS, scale=scale, n_layers=n_layers
            )
        }
    groups["arm"] = alignment_signs(
        draws, seed + 997, device, kind="arm", pos=RELATIVE_ENCODINGS, scale=scale, n_layers=n_layers
    )
    return groups


def run_c7(draws: int, seed: int, device: str = "cpu") -> list[CheckResult]:
    """C7 with ``draws`` draws per group: the MDM pooled over the relative encodings (each encoding's rate
    reported) against the ARM; one comparison at false alarm 1e-6."""
    return check_c7(c7_groups(draws, seed, device))


def depth_rates(
    draws: int,
    seed: int,
    device: str = "cpu",
    scales=C7_SCALES,
    depths=(1, 2, 3, 4),
    pos: str = "rope",
    *,
    progress=None,
) -> dict:
    """{(kind, depth, scale): rate of cos > 0 over every layer} for the depth figure (plain and preset
    blocks, MDM with ``pos`` and the ARM); ``progress(k, n)`` is called after each of the n points."""
    out: dict = {}
    total = len(QUERY_KINDS) * len(depths) * len(scales)
    for kind in QUERY_KINDS:
        for L in depths:
            for s in scales:
                g = alignment_signs(draws, seed, device, kind=kind, pos=pos, scale=s, n_layers=L)
                k = sum(c[0] for c in g["per_layer"].values())
                n = sum(c[1] for c in g["per_layer"].values())
                out[(kind, L, s)] = k / n
                if progress:
                    progress(len(out), total)
    return out


# ---------------------------------------------------------------------------------------------
# C6 — per-layer alignment in the small-branch limit (asymptotic identity, per draw)

C6_WINDOW = 0.1  # the asymptotic window: neglected terms + floor ≤ 10% of the leading remainder term


def final_norm_vjp(params: dict, cfg: ModelConfig, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Jᵀv for J the Jacobian of the final norm at x (identity without one). RMSNorm N(x) = g ⊙ x/r,
    r = √(mean(x²) + eps): ∂N_i/∂x_j = g_i(δ_ij/r − x_i x_j/(d r³)), so Jᵀv = (g⊙v)/r − x xᵀ(g⊙v)/(d r³)."""
    if not cfg.final_norm:
        return v
    g, d = params["norm_final"], x.shape[-1]
    r = torch.sqrt(x.pow(2).mean() + cfg.norm_eps)
    gv = g * v
    return gv / r - x * (x @ gv) / (d * r**3)


def leading_factors(params: dict, cfg: ModelConfig, query: Query) -> tuple[torch.Tensor, torch.Tensor]:
    """(w, c) of one query at ε = 0, without autograd: a forward pass with every branch output weight
    zero (W_OV = 0, W_down = 0, i.e. ε = 0) leaves each layer's input equal to the embeddings, so its
    ``context`` is c^{ℓ,h} = Σ_t α^{ℓ,h}(t) N^ℓ(x_t) (L, H, d) with layer ℓ's attention at ε = 0; the
    read-out position holds x = x_{token at the slot}, p₀ = softmax(U N_final(x)) and w = Jᵀ Uᵀ(p₀ − y) (d,)."""
    require_queries(params, cfg, query)
    return _leading_factors(params, cfg, query)


def _leading_factors(params: dict, cfg: ModelConfig, query: Query) -> tuple[torch.Tensor, torch.Tensor]:
    zero = {**params, **{n: torch.zeros_like(params[n]) for n in ("W_OV", "W_down") if n in params}}
    out = forward(zero, cfg, query.tensor(params["E"].device))
    i = max(query.slot - cfg.readout_offset, 0)
    x = out.inputs[i]
    U = unembedding(params, cfg)
    h = out.hidden[i]
    p0 = torch.softmax(U @ h, dim=-1)
    y = torch.zeros_like(p0)
    y[query.target] = 1.0
    return final_norm_vjp(params, cfg, x, U.T @ (p0 - y)), out.context[:, :, i]


def leading_term(params: dict, cfg: ModelConfig, fq: Query, rq: Query) -> torch.Tensor:
    """lead_ℓ = (w_fᵀ w_r) Σ_h ⟨c_f^{ℓ,h}, c_r^{ℓ,h}⟩ for every layer (L,) (:func:`leading_factors`). For
    the MDM both slots hold the mask, so w_f = w_r: the first factor is the square ‖JᵀUᵀ(p₀ − y)‖²."""
    require_queries(params, cfg, fq, rq)
    return _leading_term(params, cfg, fq, rq)


def _leading_term(params: dict, cfg: ModelConfig, fq: Query, rq: Query) -> torch.Tensor:
    w_f, c_f = _leading_factors(params, cfg, fq)
    w_r, c_r = _leading_factors(params, cfg, rq)
    return (w_f @ w_r) * (c_f * c_r).sum((1, 2))


def remainder_series(eps: list[float], R: list[float], order: int = 1) -> tuple[float, float, float]:
    """(c₁, c₂, c₃) of r(ε) = R(ε)/ε^order = c₁ + c₂ε + c₃ε² through the three points given (exact
    quadratic interpolation in ε: Richardson extrapolation of r to ε = 0). C6: order 1; C8: order 2."""
    if len(eps) != 3 or len(R) != 3:
        raise ValueError(f"eps and R must hold 3 values each; got {len(eps)} and {len(R)}")
    import numpy as np

    e = np.asarray(eps, dtype=float)
    coef = np.linalg.solve(np.vander(e, 3, increasing=True), np.asarray(R, dtype=float) / e**order)
    return float(coef[0]), float(coef[1]), float(coef[2])


def c6_relative_band(c: tuple[float, float, float], floor: float, eps: float, order: int = 1) -> float:
    """x(ε) with |R(ε)/ε^order − c₁| ≤ x(ε)|c₁|, R = ip − lead computed in float64 (C6, order 1; C8 uses
    it with order 2 for the Taylor remainder of the loss).

    Assumption (stated): on ε ≤ 2^−k₀ the series r(ε) = c₁ + c₂ε + c₃ε² + … is dominated by the terms
    fitted at ε = 2^−k₀ … 2^−(k₀+2) (:func:`fitted_window`); the terms not fitted are covered by
    STORAGE_SAFETY = 2 on the fitted ones: x = (2(|c₂|ε + |c₃|ε²) + floor/ε^order)/|c₁|, ``floor`` the float64
    error of R̂ (running-error radii of ip and lead, :func:`c6_floor`)."""
    c1, c2, c3 = c
    if c1 == 0:
        return math.inf
    return (STORAGE_SAFETY * (abs(c2) * eps + abs(c3) * eps**2) + floor / eps**order) / abs(c1)


FIT_STARTS = (6, 9, 12, 15, 18, 21)  # first exponents tried for the fit (C6; C8 has its own)


def fitted_window(R_at, order: int, starts=FIT_STARTS) -> tuple[int, tuple[float, float, float], float]:
    """(k₀, (c₁, c₂, c₃), x₀): the first k₀ of ``starts`` at which the series fitted through ε = 2^−k₀, 2^−(k₀+1),
    2^−(k₀+2) (:func:`remainder_series`) says its own fit points lie in the asymptotic window (the fitted
    correction x₀ = 2(|c₂|ε + |c₃|ε²)/|c₁| ≤ C6_WINDOW/2 at ε = 2^−k₀); the last start when none does (then
    x₀ > C6_WINDOW/2, which the checkers report as a failure: a remainder of the wrong order never settles).
    ``R_at(k)`` gives the remainder at ε = 2^−k (scaled by the caller)."""
    for k0 in starts:
        ks = (k0, k0 + 1, k0 + 2)
        eps = [2.0**-k for k in ks]
        c = remainder_series(eps, [R_at(k) for k in ks], order)
        x0 = c6_relative_band(c, 0.0, eps[0], order)
        if x0 <= C6_WINDOW / 2:
            break
    return k0, c, x0


def fit_uncertainty(eps: list[float], floor: float, order: int) -> tuple[float, float, float]:
    """(Δ₁, Δ₂, Δ₃) with |ĉ_j − c_j| ≤ Δ_j for the series fitted through ε_i (:func:`remainder_series`) when
    every R(ε_i) is off by at most ``floor``: the fit is linear, ĉ = V⁻¹ r with V the Vandermonde matrix of the
    ε_i and r_i = R(ε_i)/ε_i^order, so |ĉ − c| ≤ |V⁻¹| (floor/ε_i^order) entrywise."""
    import numpy as np

    e = np.asarray(eps, dtype=float)
    delta = np.abs(np.linalg.inv(np.vander(e, 3, increasing=True))) @ (floor / e**order)
    return float(delta[0]), float(delta[1]), float(delta[2])


def settled_within_floor(c: tuple[float, float, float], delta: tuple[float, float, float], eps0: float, order: int):
    """The smallest fitted correction x₀ (:func:`c6_relative_band` without floor, at ε₀) of any series within
    ``delta`` of ``c`` (:func:`fit_uncertainty`): (|c₁| + Δ₁, max(|c₂| − Δ₂, 0), max(|c₃| − Δ₃, 0))."""
    low = (abs(c[0]) + delta[0], max(abs(c[1]) - delta[1], 0.0), max(abs(c[2]) - delta[2], 0.0))
    return c6_relative_band(low, 0.0, eps0, order)


def window_result(claim: str, x0: float, floor_share: float, x0_floor: float = math.inf, **info) -> list[CheckResult]:
    """The fit found an asymptotic window: x₀ ≤ C6_WINDOW/2 (:func:`fitted_window`). When it did not, and
    either the float64 floor is ≥ C6_WINDOW/2 of the fitted leading term at the last fit start
    (``floor_share``) or a series within the floor's reach of the fitted one would settle (``x0_floor``
    ≤ C6_WINDOW/2, :func:`settled_within_floor`: the fitted corrections are rounding noise), the regime lies
    below what float64 resolves: ``undecided`` with the reason (counted, never a pass), as
    :func:`mdm_props.taylor.taylor_test` reports it."""
    if x0 > C6_WINDOW / 2 and (floor_share >= C6_WINDOW / 2 or x0_floor <= C6_WINDOW / 2):
        reason = (
            f"no fit start settles (x₀ = {x0:.3g}); at the last start the float64 floor is {floor_share:.3g} of "
            f"the fitted leading term and within the floor's reach the fit settles to x₀ = {x0_floor:.3g}: the "
            f"regime lies below what float64 resolves"
        )
        return [undecided(claim, "the remainder's fitted series settles", reason, **info)]
    return [
        inequality(
            claim,
            "the remainder's fitted series settles (x₀ ≤ C6_WINDOW/2 at some fit start)",
            x0 if math.isfinite(x0) else 1e300,
            C6_WINDOW / 2,
            "<=",
            C6_WINDOW / 2,
            **info,
        )
    ]


def c6_floor(params: dict, cfg: ModelConfig, fq: Query, rq: Query, eps: float) -> torch.Tensor:
    """Per layer, a bound on |fl(ip(ε)) − ip(ε)| + |fl(lead) − lead| (:mod:`mdm_props.rounding_mode`,
    × its SAFETY), evaluated at the smallest ε of the scan and used for every ε of the scan: the radii
    scale with the magnitudes of the computed values, which change by O(ε) ≤ 2^−10 relative over it."""
    require_queries(params, cfg, fq, rq)
    _, e_ip = with_error_bounds(_layer_inner_products, at_branch_scale(params, eps), cfg, fq, rq)
    _, e_lead = with_error_bounds(_leading_term, params, cfg, fq, rq)
    return e_ip + e_lead


def check_c6(
    params: dict,
    cfg: ModelConfig,
    template: Template,
    A: int,
    B: int,
    *,
    kind: str = "mdm",
    lead: torch.Tensor | None = None,
) -> list[CheckResult]:
    """C6 on one draw, every layer: (i) the remainder R(ε) = ⟨G_f^ℓ, G_r^ℓ⟩ − lead_ℓ has observed order
    log2(R(ε)/R(ε/2)) = 1 at ε = 2^−(k₀+4), 2^−(k₀+8) (pairs with ε/2) within log2((1 + x)/(1 − x)) (x =
    :func:`c6_relative_band`, the series fitted at 2^−k₀ … 2^−(k₀+2), :func:`fitted_window`), where
    x ≤ C6_WINDOW; (ii) where lead_ℓ > 0, ε₀ = min(2^−(k₀+2), lead_ℓ/(2(1 + C6_WINDOW)|c₁|)) (the remainder
    is ≤ (1 + x)|c₁|ε < lead_ℓ/2 below it:
    safety 2) and ⟨G_f^ℓ, G_r^ℓ⟩ > 0 beyond its floor at ε₀/2.

    ``kind`` "arm" takes the ARM's queries; ``lead`` replaces the leading term (a wrong one leaves an O(1)
    remainder: order 0, rejected)."""
    require_deep_storage_model(cfg)
    require_choice("kind", kind, QUERY_KINDS)
    case = StorageCase(cfg, 0, 1.0, False, template, A, B, kind)
    fq, rq = case.queries()
    require_queries(params, cfg, fq, rq)
    ld = _leading_term(params, cfg, fq, rq) if lead is None else lead
    cache: dict[int, torch.Tensor] = {}

    def ip_at(k):
        if k not in cache:
            cache[k] = _layer_inner_products(at_branch_scale(params, 2.0**-k), cfg, fq, rq)
        return cache[k]

    floor = c6_floor(params, cfg, fq, rq, 2.0 ** -(FIT_STARTS[-1] + 9))
    results = []
    for layer in range(cfg.n_layers):

        def R_at(k, layer=layer):
            return float(ip_at(k)[layer] - ld[layer])

        k0, c, x0 = fitted_window(R_at, 1)
        fl = float(floor[layer])
        info = {"layer": layer, "lead": float(ld[layer]), "c1": c[0], "c2": c[1], "c3": c[2], "floor": fl, "fit_k": k0}
        x0_floor = settled_within_floor(c, fit_uncertainty([2.0**-k for k in (k0, k0 + 1, k0 + 2)], fl, 1), 2.0**-k0, 1)
        share = fl / (2.0**-k0 * abs(c[0])) if c[0] else math.inf
        results += window_result("C6", x0, share, x0_floor, **info)
        for k in (k0 + 4, k0 + 8):
            x = max(c6_relative_band(c, fl, 2.0**-k), c6_relative_band(c, fl, 2.0 ** -(k + 1)))
            if x > C6_WINDOW:
                continue
            ratio = R_at(k) / R_at(k + 1)
            order = math.log2(ratio) if ratio > 0 else math.nan
            results.append(
                identity(
                    "C6",
                    "observed order log2(R(ε)/R(ε/2)) = 1, R = ⟨G_f^ℓ, G_r^ℓ⟩ − lead_ℓ",
                    order,
                    1.0,
                    math.log2((1 + x) / (1 - x)),
                    k=k,
                    x=x,
                    **info,
                )
            )
        if ld[layer] > 0 and c[0] != 0:
            eps0 = min(2.0 ** -(k0 + 2), float(ld[layer]) / (STORAGE_SAFETY * (1 + C6_WINDOW) * abs(c[0])))
            mantissa, exponent = math.frexp(eps0 / 2)  # a power of two 2^−k: the scan's evaluation, shared
            at = (
                ip_at(1 - exponent)
                if mantissa == 0.5
                else _layer_inner_products(at_branch_scale(params, eps0 / 2), cfg, fq, rq)
            )
            ip = float(at[layer])
            results.append(
                inequality("C6", "⟨G_f^ℓ, G_r^ℓ⟩ > 0 at ε = ε₀/2", ip, fl, ">", float(ld[layer]), eps0=eps0, **info)
            )
    return results


def run_c6(draws: int, seed: int, device: str = "cpu") -> list[CheckResult]:
    """C6 on ``draws`` seeded deep MDM draws (H-orth embeddings, every relative encoding, depth 1–4)."""
    resolve_device(device)
    rng = random.Random(require_seed("seed", seed))
    out = []
    for _ in range(require_int("draws", draws, 1)):
        case = sample_storage_case(rng)
        res = check_c6(case.params(device), case.cfg, case.template, case.A, case.B)
        out += [dataclasses.replace(r, details={**r.details, "draw": case.describe()}) for r in res]
    return out


# ---------------------------------------------------------------------------------------------
# C6a — the ARM's rate of positive alignment in the small-branch limit (typical: C6's control as a rate)

C6A_EPS = 2.0**-12  # the small-branch regime (the ε of the C6~arm control)
C6A_BOUND = 0.10  # issue 10: the ARM's rate of positive alignment is at most 10%


def alignment_signs_small_branch(
    draws: int,
    seed: int,
    device: str = "cpu",
    *,
    kind: str = "arm",
    eps: float = C6A_EPS,
    tied=(True,),
    final_norm=(False,),
) -> dict:
    """Signs of ⟨G_f^ℓ, G_r^ℓ⟩ at branch scale ``eps`` over ``draws`` seeded C6 draws (:func:`storage_case`:
    orthonormal embeddings, depth 1–4, every relative encoding, pre-norm or none, SwiGLU or none) with the
    ``kind`` queries; by default under H-orth's head (tied, no final norm: U Uᵀ = I, J = I).

    ``chosen`` [positive, draws]: per draw the sign at one layer drawn uniformly (one independent Bernoulli
    outcome a draw, as Clopper–Pearson needs); ``per_layer`` {ℓ: [positive, n]} and ``per_norm`` {norm:
    [positive, n]} over every layer of every draw (reported, not asserted)."""
    require_choice("kind", kind, QUERY_KINDS)
    resolve_device(device)
    rng = random.Random(require_seed("seed", seed))
    pick = random.Random(seed + 7)
    chosen = [0, 0]
    per_layer: dict[int, list[int]] = {}
    per_norm: dict[str, list[int]] = {}
    for _ in range(require_int("draws", draws, 1)):
        case = sample_storage_case(rng, kind=kind, tied=tied, final_norm=final_norm)
        fq, rq = case.queries()
        positive = (layer_inner_products(at_branch_scale(case.params(device), eps), case.cfg, fq, rq) > 0).tolist()
        for layer, pos in enumerate(positive, 1):
            for cell in (per_layer.setdefault(layer, [0, 0]), per_norm.setdefault(case.cfg.norm, [0, 0])):
                cell[0] += pos
                cell[1] += 1
        chosen[0] += positive[pick.randrange(case.cfg.n_layers)]
        chosen[1] += 1
    return {
        "chosen": chosen,
        "per_layer": {k: per_layer[k] for k in sorted(per_layer)},
        "per_norm": per_norm,
        "kind": kind,
        "eps": eps,
    }


def check_c6a(outcomes: dict, bound: float = C6A_BOUND, alpha: float = FALSE_ALARM) -> list[CheckResult]:
    """C6a on the outcomes of :func:`alignment_signs_small_branch`: the rate p of positive alignment is at
    most ``bound``, shown by the upper end of its two-sided (1 − alpha) Clopper–Pearson interval lying below
    ``bound``. Were p ≥ bound, that happens with probability ≤ alpha/2: the error probability of the
    assertion. The rate and interval are reported (a typical claim: never asserted per draw)."""
    k, n = outcomes["chosen"]
    lo, hi = clopper_pearson(k, n, alpha)
    rates = lambda t: {key: (c[0] / c[1], c[1]) for key, c in t.items()}  # noqa: E731
    return [
        inequality(
            "C6a",
            f"upper CP bound of P(⟨G_f^ℓ, G_r^ℓ⟩ > 0), {outcomes.get('kind', 'arm')} at ε = {outcomes.get('eps')}, "
            f"< {bound}",
            hi,
            bound,
            "<",
            bound,
            rate=k / n,
            positive=k,
            draws=n,
            interval=(lo, hi),
            alpha=alpha,
            per_layer=rates(outcomes["per_layer"]),
            per_norm=rates(outcomes["per_norm"]),
        )
    ]


def run_c6a(draws: int, seed: int, device: str = "cpu") -> list[CheckResult]:
    """C6a: the ARM's rate of positive alignment at ε = 2^−12 under H-orth is ≤ 10% (false alarm 1e-6).
    Seed 0: 14/500 (2.8%), interval [0.005, 0.082]; 48/2000 (2.4%), [0.011, 0.045]."""
    return check_c6a(alignment_signs_small_branch(draws, seed, device))


# ---------------------------------------------------------------------------------------------
# C8 — a forward storage step at any layer lowers the reverse loss to first order (per draw)

C8_STARTS = (4, 7, 10, 13)  # η = 2^−k s (s = 2^−round(log2 ‖G_f^ℓ‖)): first exponents tried for the fit
C8_ETAS = ETAS  # the explicit C4a remainder at the last layer: C4a's step sizes


def layer_step(params: dict, layer: int, D: torch.Tensor, eta: float) -> dict:
    """θ − η e_ℓ D: only W_OV^ℓ moves (D: (H, d, d))."""
    W = params["W_OV"].clone()
    W[layer] = W[layer] - eta * D
    return {**params, "W_OV": W}


def loss_with_bound(params: dict, cfg: ModelConfig, query: Query) -> tuple[float, float]:
    """(L, e_L): −log p(target) and its running-error radius (:mod:`mdm_props.rounding_mode`, × SAFETY)."""
    require_queries(params, cfg, query)
    v, e = with_error_bounds(_slot_loss, params, cfg, query)
    return float(v), float(e)


def reverse_state(params: dict, cfg: ModelConfig, rq: Query) -> dict:
    """The reverse query's loss, storage gradients and last-layer context at the slot, with running-error
    radii (one autograd pass under :mod:`mdm_props.rounding_mode`)."""

    def run():
        W = params["W_OV"].detach().requires_grad_(True)
        with torch.enable_grad():
            p = {**params, "W_OV": W}
            out = forward(p, cfg, rq.tensor(params["E"].device))
            loss = -torch.log_softmax(out.logits[rq.slot], dim=-1)[rq.target]
            (G,) = torch.autograd.grad(loss, W)
        return loss.detach(), G, out.context[-1, :, rq.slot].detach()

    (L, G, c), (e_L, e_G, e_c) = with_error_bounds(run)
    return {"L": float(L), "e_L": float(e_L), "G": G, "e_G": e_G, "c": c, "e_c": e_c}


def check_c8(
    params: dict, cfg: ModelConfig, template: Template, A: int, B: int, *, gradient: torch.Tensor | None = None
) -> list[CheckResult]:
    """C8 on one draw (MDM queries, branch scale 1), every layer ℓ:

    * Taylor test: R(η) = φ_ℓ(η) − φ_ℓ(0) + η⟨G_r^ℓ, G_f^ℓ⟩, φ_ℓ(η) = L_r(θ − η e_ℓ G_f^ℓ); R(η)/η² fitted at
      η = 2^−k₀ s … (:func:`fitted_window`, order 2), observed order log2(R(η)/R(η/2)) = 2 at k₀ + 4, k₀ + 8 within
      log2((1 + x)/(1 − x)) (x = :func:`c6_relative_band` with order 2; floor =
      :func:`mdm_props.taylor.taylor_floor` with running-error loss radii), where x ≤ C6_WINDOW.
    * Without final norm and MLP, at the last layer: the reverse logits are affine in W_OV^L, so C4a's
      explicit remainder 0 ≤ R(η) ≤ η² spread(a)²/8, a = −U Σ_h G_f^{L,h} c_r^{L,h} (c_r^L the attention-weighted
      normalised input of the last layer), at η in C8_ETAS (:func:`c8_c4a_tolerances`).

    ``gradient`` (L, H, d, d) replaces G_r in the linear term (a wrong one leaves a first-order remainder)."""
    require_deep_storage_model(cfg)
    fq, rq = pair_queries(template, A, B, cfg.vocab)
    require_queries(params, cfg, fq, rq)
    G_f = _layer_gradients(params, cfg, fq)
    rs = reverse_state(params, cfg, rq)
    G_r = rs["G"]
    linear = G_r if gradient is None else gradient
    L0, e_L0 = rs["L"], rs["e_L"]
    results = []
    for layer in range(cfg.n_layers):
        D = G_f[layer]
        norm = float(D.norm())
        if norm == 0:
            reason = (
                "the float64 forward gradient G_f^ℓ is exactly 0 (a saturated draw: p(B | forward query) = 1 "
                "in float64), so there is no step to take and no remainder to measure"
            )
            results.append(undecided("C8", "a forward storage step lowers the reverse loss", reason, layer=layer))
            continue
        s = 2.0 ** -round(math.log2(norm))
        ip = float((linear[layer] * D).sum())
        cache: dict[int, float] = {}

        def R_at(k, D=D, s=s, ip=ip, layer=layer, cache=cache):
            if k not in cache:
                eta = 2.0**-k * s
                cache[k] = (float(_slot_loss(layer_step(params, layer, D, eta), cfg, rq)) - L0) + eta * ip
            return cache[k]

        k0, c, x0 = fitted_window(lambda k: R_at(k), 2, starts=C8_STARTS)
        eta_min = 2.0 ** -(k0 + 9) * s
        L1, e_L1 = loss_with_bound(layer_step(params, layer, D, eta_min), cfg, rq)
        floor = taylor_floor(e_L0, e_L1, L0, L1, eta_min, ip, [G_r[layer]], [D], [params["W_OV"][layer]])
        info = {"layer": layer, "A2_fit": c[0], "c3": c[1], "c4": c[2], "floor": floor, "step_unit": s, "fit_k": k0}
        # the series is fitted in ε = η/s = 2^−k (fitted_window): R = c₁ε² + c₂ε³ + c₃ε⁴, so every band is in ε too
        eps = [2.0**-k for k in (k0, k0 + 1, k0 + 2)]
        x0_floor = settled_within_floor(c, fit_uncertainty(eps, floor, 2), eps[0], 2)
        share = floor / (eps[0] ** 2 * abs(c[0])) if c[0] else math.inf
        results += window_result("C8", x0, share, x0_floor, **info)
        for k in (k0 + 4, k0 + 8):
            x = max(c6_relative_band(c, floor, 2.0**-k, 2), c6_relative_band(c, floor, 2.0 ** -(k + 1), 2))
            if x > C6_WINDOW:
                continue
            ratio = R_at(k) / R_at(k + 1)
            order = math.log2(ratio) if ratio > 0 else math.nan
            results.append(
                identity(
                    "C8",
                    "observed order log2(R(η)/R(η/2)) = 2, only W_OV^ℓ moves",
                    order,
                    2.0,
                    math.log2((1 + x) / (1 - x)),
                    k=k,
                    x=x,
                    **info,
                )
            )
    if not cfg.final_norm and cfg.mlp == "none" and gradient is None:
        results += c8_last_layer(params, cfg, rq, G_f, rs)
    return results


def c8_c4a_tolerances(
    W: torch.Tensor,
    D: torch.Tensor,
    rs: dict,
    ip: float,
    eta: float,
    phi1: float,
    e_L1: float,
    U: torch.Tensor,
    spread: float,
) -> tuple[float, float]:
    """(lower, upper) rounding allowances, × STORAGE_SAFETY, for R̂ = fl(φ̂(η) − φ̂(0)) + η⟨Ĝ_r^L, Ĝ_f^L⟩
    against 0 ≤ R ≤ η² spread(â)²/8 (C4a's derivation, :func:`mdm_props.claims.c4_reverse_loss_decrease.c4a_tolerances`,
    with deep-block radii). The exact statement is for the step taken, D' = (W − Ŵ')/η, any direction:
    |D' − Ĝ_f| ≤ γ_2(|W|/η + 2|Ĝ_f|), so Ĝ_f's own error never enters.

    * φ̂(0), φ̂(η): running-error radii e_L0 (``rs``), e_L1.
    * linear term: η|⟨Ĝ_r − G_r, Ĝ_f⟩| ≤ η Σ e_Gr|Ĝ_f|; η|⟨G_r, Ĝ_f − D'⟩| ≤ Σ|Ĝ_r|γ_2(|W| + 2η|Ĝ_f|); the dot
      product η γ_N Σ|Ĝ_r||Ĝ_f|; the arithmetic γ_3(|φ̂(η)| + |φ̂(0)| + η|ip|).
    * upper only: |a_{D'} − â| ≤ δ = max_v Σ_h |U|(|D' − Ĝ_f| |c_r| + |Ĝ_f| e_c) + γ_{Hd}|U||Ĝ_f||c_r|, and
      spread(a_{D'})² ≤ spread(â)² + 4δ spread(â) + 4δ²."""
    G_r, e_G, c, e_c = rs["G"][-1], rs["e_G"][-1], rs["c"], rs["e_c"]
    N = D.numel()
    lin = (
        eta * float((e_G * D.abs()).sum())
        + float((G_r.abs() * gamma(2) * (W.abs() + 2 * eta * D.abs())).sum())
        + eta * gamma(N) * float((G_r.abs() * D.abs()).sum())
    )
    arith = gamma(3) * (abs(phi1) + abs(rs["L"]) + eta * abs(ip))
    lower = rs["e_L"] + e_L1 + lin + arith
    dD = gamma(2) * (W.abs() / eta + 2 * D.abs())
    v = (
        torch.einsum("hed,hd->e", dD, c.abs())
        + torch.einsum("hed,hd->e", D.abs(), e_c)
        + gamma(D.shape[0] * D.shape[1]) * torch.einsum("hed,hd->e", D.abs(), c.abs())
    )
    delta = float((U.abs() @ v).max())
    upper = lower + eta**2 * (4 * delta * spread + 4 * delta**2) / 8
    return STORAGE_SAFETY * lower, STORAGE_SAFETY * upper


def c8_last_layer(params: dict, cfg: ModelConfig, rq: Query, G_f: torch.Tensor, rs: dict) -> list[CheckResult]:
    """C4a's explicit remainder at the last layer (no final norm, no MLP: the reverse logits move by η a)."""
    layer = cfg.n_layers - 1
    D, W = G_f[layer], params["W_OV"][layer]
    U = unembedding(params, cfg)
    a = -U @ torch.einsum("hed,hd->e", D, rs["c"])
    spread = float(a.max() - a.min())
    ip = float((rs["G"][layer] * D).sum())
    out = []
    for eta in C8_ETAS:
        phi1, e_L1 = loss_with_bound(layer_step(params, layer, D, eta), cfg, rq)
        R = (phi1 - rs["L"]) + eta * ip
        quad = eta**2 * spread**2 / 8
        lo, hi = c8_c4a_tolerances(W, D, rs, ip, eta, phi1, e_L1, U, spread)
        info = {"layer": layer, "eta": eta, "inner_product": ip, "spread": spread}
        scale = max(quad, eta * abs(ip), 1e-300)
        out.append(inequality("C8", "R(η) ≥ 0 at the last layer (C4a)", R, 0.0, ">=", scale, lo, **info))
        out.append(inequality("C8", "R(η) ≤ η² spread(a)²/8 at the last layer (C4a)", R, quad, "<=", scale, hi, **info))
    return out


def run_c8(draws: int, seed: int, device: str = "cpu") -> list[CheckResult]:
    """C8 on ``draws`` seeded deep MDM draws (Gaussian or orthonormal embeddings alternately, every relative
    encoding, depth 1–4)."""
    resolve_device(device)
    rng = random.Random(require_seed("seed", seed))
    out = []
    for i in range(require_int("draws", draws, 1)):
        case = sample_storage_case(rng, orthonormal=bool(i % 2))
        res = check_c8(case.params(device), case.cfg, case.template, case.A, case.B)
        out += [dataclasses.replace(r, details={**r.details, "draw": case.describe()}) for r in res]
    return out


# ---------------------------------------------------------------------------------------------
# negative controls


def c6_arm(draws: int, seed: int, device: str = "cpu") -> Counterexample:
    """The ARM (causal, next-token targets): its first factor (p₀ − e_B)ᵀ U J Jᵀ Uᵀ (p₀ − e_A) is not a
    square, so lead_ℓ < 0 occurs and then ⟨G_f^ℓ, G_r^ℓ⟩ < 0 beyond rounding at small ε (here ε = 2^−12):
    C6's sign conclusion fails."""
    resolve_device(device)
    rng = random.Random(require_seed("seed", seed))

    def cases():
        while True:
            yield sample_storage_case(rng, kind="arm")

    def violation(case):
        params = case.params(device)
        fq, rq = case.queries()
        ld = leading_term(params, case.cfg, fq, rq)
        ip = layer_inner_products(at_branch_scale(params, 2.0**-12), case.cfg, fq, rq)
        floor = c6_floor(params, case.cfg, fq, rq, 2.0**-12)
        bad = [ell for ell in range(case.cfg.n_layers) if ld[ell] < 0 and ip[ell] < -floor[ell]]
        if not bad:
            return None
        ell = bad[0]
        return float(ip[ell]), case.describe(layer=ell, lead=float(ld[ell]), inner_product=float(ip[ell]), eps=2.0**-12)

    return search("C6", "H-bi (ARM: causal attention, next-token targets)", draws, cases(), violation)


def c7_arm_as_mdm(draws: int, seed: int, device: str = "cpu") -> Counterexample:
    """C7's separation with the ARM on both sides (H-bi dropped from the 'MDM' group): no separation."""
    resolve_device(device)
    n = max(draws, 1)
    groups = {
        "causal": alignment_signs(n, seed, device, kind="arm", pos=RELATIVE_ENCODINGS),
        "arm": alignment_signs(n, seed + 997, device, kind="arm", pos=RELATIVE_ENCODINGS),
    }
    r = check_c7(groups)[0]
    if r.holds:
        return Counterexample("C7", "H-bi (the MDM group replaced by causal ARM draws)", False, 2 * n)
    return Counterexample(
        "C7",
        "H-bi (the MDM group replaced by causal ARM draws)",
        True,
        2 * n,
        {
            "lower": r.observed,
            "arm_upper": r.reference,
            "rate": r.details["mdm_rate"],
            "arm_rate": r.details["arm_rate"],
        },
        float(r.observed - r.reference),
    )


def c8_wrong_gradient(draws: int, seed: int, device: str = "cpu") -> Counterexample:
    """The Taylor test's own control: G_f^ℓ in place of G_r^ℓ in the linear term leaves a first-order
    remainder (observed order ≈ 1), which the test rejects. RoPE and T5 only (under ALiBi and NoPE a
    mirror-symmetric template makes L_f and L_r one function, G_f = G_r)."""
    resolve_device(device)
    rng = random.Random(require_seed("seed", seed))

    def cases():
        while True:
            yield sample_storage_case(rng, pos=("rope", "t5"))

    def violation(case):
        params = case.params(device)
        fq, _ = case.queries()
        res = check_c8(params, case.cfg, case.template, case.A, case.B, gradient=layer_gradients(params, case.cfg, fq))
        failed = [r for r in res if r.status == "violated" and "order" in r.quantity]
        if not failed:
            return None
        r = failed[0]
        return r.error_ratio, case.describe(
            quantity=r.quantity, observed=r.observed, tolerance=r.tolerance, layer=r.details["layer"]
        )

    return search("C8", "the correct gradient (G_f^ℓ used in place of G_r^ℓ)", draws, cases(), violation)


def c6a_untied_final_norm(draws: int, seed: int, device: str = "cpu") -> Counterexample:
    """C6a with H-orth's head dropped (untied head and a final norm: U J Jᵀ Uᵀ ≠ I): the ARM's first factor
    is no longer ≈ −1/V, its rate of positive alignment is not below 10%."""
    out = alignment_signs_small_branch(max(draws, 1), seed, device, tied=(False,), final_norm=(True,))
    r = check_c6a(out)[0]
    dropped = "H-orth's head (untied head and a final norm)"
    if r.holds:
        return Counterexample("C6a", dropped, False, out["chosen"][1])
    example = {"rate": r.details["rate"], "interval": list(r.details["interval"]), "bound": C6A_BOUND}
    return Counterexample("C6a", dropped, True, out["chosen"][1], example, float(r.observed - r.reference))


NEGATIVE_CONTROLS = [
    NegativeControl(
        "C6~arm",
        "C6",
        "H-bi (ARM: causal attention, next-token targets)",
        "the ARM's first factor is not a square: lead_ℓ < 0 and ⟨G_f^ℓ, G_r^ℓ⟩ < 0 at small ε",
        c6_arm,
        20,
    ),
    NegativeControl(
        "C6a~untied",
        "C6a",
        "H-orth's head (untied head and a final norm)",
        "with U J Jᵀ Uᵀ ≠ I the ARM's first factor is not ≈ −1/V: its positive-alignment rate is not below 10%",
        c6a_untied_final_norm,
        60,
    ),
    NegativeControl(
        "C7~arm",
        "C7",
        "H-bi (both groups causal)",
        "with ARM draws in place of the MDM's the rates are not separated",
        c7_arm_as_mdm,
        40,
    ),
    NegativeControl(
        "C8~wrong-gradient",
        "C8",
        "the correct gradient in the linear term",
        "with G_f^ℓ in place of G_r^ℓ the remainder is first order: observed order ≈ 1",
        c8_wrong_gradient,
        10,
    ),
]


# ---------------------------------------------------------------------------------------------
# the registry rows (collected by mdm_props.registry)

from ..registry import STATED_FALSE_ALARM, Claim  # noqa: E402  (the rows sit at the end of the module)

_M = __name__ + ":"
CLAIMS = (
    Claim(
        id="C6",
        title="per-layer storage alignment in the small-branch limit",
        kind="per-draw",
        hypotheses=("H-rel", "H-bi"),
        statement="⟨G_f^ℓ, G_r^ℓ⟩ = ‖JᵀUᵀ(p₀ − y)‖² Σ_h ⟨c_f^{ℓ,h}, c_r^{ℓ,h}⟩ + O(ε) for every layer ℓ of a deep "
        "block with branch scale ε (remainder of observed order 1 over ε = 2^−k); below a computed ε₀ "
        "the sign is positive where the leading term is.",
        doc="claims/C6-small-branch-alignment.md",
        checker=_M + "check_c6",
        runner=_M + "run_c6",
        bounds=(_M + "c6_relative_band", _M + "c6_floor"),
        tests="tests/test_c6_c8.py",
        needs_negative_control=True,
        default_draws=2,
    ),
    Claim(
        id="C6a",
        title="the ARM's rate of positive alignment in the small-branch limit is at most 10%",
        kind="typical",
        hypotheses=("H-rel", "H-orth"),
        statement="For the ARM (causal, next-token targets B and A) at branch scale 2^−12 under H-orth (tied head, "
        "no final norm), P(⟨G_f^ℓ, G_r^ℓ⟩ > 0) ≤ 10%: the upper Clopper–Pearson bound (false alarm 1e-6) "
        "lies below 0.1; per-layer and per-norm rates reported.",
        doc="claims/C6-small-branch-alignment.md",
        checker=_M + "check_c6a",
        runner=_M + "run_c6a",
        bounds=("mdm_props.statistics:clopper_pearson",),
        tests="tests/test_c6_c8.py",
        needs_negative_control=True,
        default_draws=500,
        false_alarm=STATED_FALSE_ALARM,
    ),
    Claim(
        id="C7",
        title="per-layer alignment at standard initialisation: MDM against ARM",
        kind="typical",
        hypotheses=("H-rel", "H-bi"),
        statement="At branch scale 1 with Gaussian embeddings (depth 1–4, plain and preset blocks) the "
        "Clopper–Pearson lower bound of P(cos(G_f^ℓ, G_r^ℓ) > 0) for the MDM exceeds the ARM's upper "
        "bound (false alarm 1e-6); per-layer and per-encoding rates reported.",
        doc="claims/C7-alignment-at-init.md",
        checker=_M + "check_c7",
        runner=_M + "run_c7",
        bounds=("mdm_props.statistics:clopper_pearson", _M + "c7_alpha"),
        tests="tests/test_c6_c8.py",
        needs_negative_control=True,
        default_draws=120,
        false_alarm=STATED_FALSE_ALARM,
    ),
    Claim(
        id="C8",
        title="a forward storage step at any layer lowers the reverse loss to first order",
        kind="per-draw",
        hypotheses=("H-rel", "H-bi"),
        statement="φ_ℓ(η) = L_r(θ − η e_ℓ G_f^ℓ) (only W_OV^ℓ moves): φ_ℓ(η) − φ_ℓ(0) + η⟨G_r^ℓ, G_f^ℓ⟩ = O(η²), "
        "observed order 2; at the last layer without final norm or MLP, C4a's 0 ≤ R(η) ≤ η² spread(a)²/8.",
        doc="claims/C8-layer-step-decrease.md",
        checker=_M + "check_c8",
        runner=_M + "run_c8",
        bounds=(_M + "c6_relative_band", "mdm_props.taylor:taylor_floor", _M + "c8_c4a_tolerances"),
        tests="tests/test_c6_c8.py",
        needs_negative_control=True,
        default_draws=3,
    ),
)
