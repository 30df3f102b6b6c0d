"""C6, C6a — per-layer storage alignment in the small-branch limit (THEORY §2b).

* C6 (asymptotic identity, per draw) — ``⟨G_f^ℓ, G_r^ℓ⟩ = ‖Jᵀ Uᵀ(p₀ − y)‖² Σ_h ⟨c_f^{ℓ,h}, c_r^{ℓ,h}⟩ + O(ε)``
  (:func:`leading_term`, from a forward pass at ε = 0, no autograd); the remainder has observed order 1
  over ε = 2^−k (:func:`check_c6`, the fitted-series test of :mod:`mdm_props.taylor`) and below a computed
  ε₀ the sign is positive.
* C6a (typical) — the ARM's rate of positive alignment at ε = 2^−12 is at most 10% (C6's control as a rate).

The deep draw, the branch scale and the per-layer storage gradients are :mod:`mdm_props.layer_storage`'s.
"""

from __future__ import annotations

import itertools
import math
import random

import torch

from .. import taylor
from ..checks import CheckResult, Counterexample, NegativeControl, inequality, not_applicable
from ..facts import Query, Template
from ..layer_storage import (
    QUERY_KINDS,
    StorageCase,
    _layer_inner_products,
    at_branch_scale,
    layer_inner_products,
    require_deep_storage_model,
    require_queries,
    sample_storage_case,
)
from ..model import ModelConfig, forward, unembedding
from ..params import resolve_device
from ..rounding import STORAGE_SAFETY, gram_defect, gram_defect_limit
from ..rounding_mode import with_error_bounds
from ..search import run_per_draw, search
from ..statistics import FALSE_ALARM, clopper_pearson
from ..validation import require_choice, require_int, require_seed

# ---------------------------------------------------------------------------------------------
# C6 — per-layer alignment in the small-branch limit (asymptotic identity, per draw)

C6_STARTS = (6, 9, 12, 15, 18, 21)  # ε = 2^−k: first exponents tried for the fit (taylor.fit_series)
C6_ORDER = "observed order log2(R(ε)/R(ε/2)) = 1, R = ⟨G_f^ℓ, G_r^ℓ⟩ − lead_ℓ"


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


def leading_scale(params: dict, cfg: ModelConfig, fq: Query, rq: Query) -> torch.Tensor:
    """|w_f||w_r| Σ_h ‖c_f^{ℓ,h}‖‖c_r^{ℓ,h}‖ per layer (L,): the Cauchy–Schwarz bound of |lead_ℓ|, the scale of the
    sign check's margin (a cosine-like number in [−1, 1])."""
    w_f, c_f = _leading_factors(params, cfg, fq)
    w_r, c_r = _leading_factors(params, cfg, rq)
    return w_f.norm() * w_r.norm() * (c_f.norm(dim=-1) * c_r.norm(dim=-1)).sum(-1)


def sign_hypothesis(params: dict, cfg: ModelConfig) -> tuple[str | None, str]:
    """Which sign C6 asserts for lead_ℓ on this draw: ("H-orth", …) with orthonormal embeddings (the Gram defect
    of E within :func:`mdm_props.rounding.gram_defect_limit`, rounding alone) and no pre-norm: Γ (the Gram
    matrix of the layer inputs M, r, B, … at ε = 0) is the identity, so Σ_h ⟨c_f^h, c_r^h⟩ = Σ_h Σ_t α_f^h(t)α_r^h(t')
    over equal tokens > 0 and lead_ℓ > 0; ("NoPE", …) under ``pos = "none"``: α_f = α_r per token (both queries
    are the mask over the same multiset of keys), Γ ⪰ 0, so lead_ℓ ≥ 0; (None, why) otherwise: the sign is not
    asserted and a non-positive lead_ℓ is not-applicable."""
    omega, limit = gram_defect(params["E"]), gram_defect_limit(cfg.d_model)
    if omega <= limit and cfg.norm == "none":
        return "H-orth", "orthonormal embeddings, no pre-norm"
    if cfg.pos == "none":
        return "NoPE", "pos = none: α_f = α_r, Γ ⪰ 0"
    why = [f"Gram defect of E ω = {omega:.3g} > {limit:.3g}"] if omega > limit else []
    why += [f"pre-norm {cfg.norm!r}"] if cfg.norm != "none" else []
    return None, "outside H-orth without pre-norm (" + ", ".join(why) + ")"


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
    :func:`mdm_props.taylor.series_band`, the series fitted at 2^−k₀ … 2^−(k₀+2),
    :func:`mdm_props.taylor.fit_series` from C6_STARTS; :func:`mdm_props.taylor.series_checks`), where
    x ≤ TAYLOR_WINDOW; (ii) where lead_ℓ > 0, ε₀ = min(2^−(k₀+2), lead_ℓ/(2(1 + TAYLOR_WINDOW)|c₁|)) (the remainder
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

    floor = c6_floor(params, cfg, fq, rq, 2.0 ** -(C6_STARTS[-1] + 9))
    _, e_lead = with_error_bounds(_leading_term, params, cfg, fq, rq)
    scale = leading_scale(params, cfg, fq, rq)
    hypothesis, why = sign_hypothesis(params, cfg)
    results = []
    for layer in range(cfg.n_layers):

        def R_at(k, layer=layer):
            return float(ip_at(k)[layer] - ld[layer])

        fit = taylor.fit_series(R_at, 1, C6_STARTS)
        k0, c = fit.k0, fit.coefficients
        fl = float(floor[layer])
        info = {"layer": layer, "lead": float(ld[layer]), "c1": c[0], "c2": c[1], "c3": c[2], "floor": fl, "fit_k": k0}
        results += taylor.series_checks("C6", C6_ORDER, R_at, fit, fl, **info)
        lead_l, e_l, sc = float(ld[layer]), float(e_lead[layer]), max(float(scale[layer]), 1e-300)
        if hypothesis == "H-orth":
            results.append(
                inequality("C6", "lead_ℓ > 0 (H-orth embeddings, no pre-norm)", lead_l, 0.0, ">", sc, e_l, **info)
            )
        elif hypothesis == "NoPE":
            results.append(inequality("C6", "lead_ℓ ≥ 0 (NoPE: α_f = α_r, Γ ⪰ 0)", lead_l, 0.0, ">=", sc, e_l, **info))
        elif not lead_l > e_l:
            reason = (
                f"{why}: lead_ℓ = {lead_l:.3g} is not positive beyond its rounding bound {e_l:.3g}; sign not asserted"
            )
            results.append(not_applicable("C6", "the sign of ⟨G_f^ℓ, G_r^ℓ⟩ below ε₀", reason, **info))
        if lead_l > e_l and c[0] != 0:
            eps0 = min(2.0 ** -(k0 + 2), float(ld[layer]) / (STORAGE_SAFETY * (1 + taylor.TAYLOR_WINDOW) * abs(c[0])))
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
    """C6 on ``draws`` seeded deep MDM draws (orthonormal and Gaussian embeddings in turn, every relative encoding,
    depth 1–4, pre-norm or none): :func:`mdm_props.search.run_per_draw` over
    :func:`mdm_props.layer_storage.sample_storage_case`. The sign is asserted under H-orth without pre-norm
    (and under NoPE); elsewhere a non-positive lead_ℓ is counted not-applicable (:func:`sign_hypothesis`)."""
    turn = itertools.count()
    return run_per_draw(
        check_c6, draws, seed, device, sample=lambda rng: sample_storage_case(rng, orthonormal=not next(turn) % 2)
    )


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
]


# ---------------------------------------------------------------------------------------------
# the registry rows (collected by mdm_props.registry)

from ..registry import STATED_FALSE_ALARM, Claim  # noqa: E402  (the rows sit at the end of the module)

_M = __name__ + ":"
CLAIMS = (
    Claim(
        id="C6",
        title="per-layer storage alignment in the small-branch limit, with its sign under H-orth without pre-norm",
        kind="per-draw",
        hypotheses=("H-rel", "H-bi"),
        statement="⟨G_f^ℓ, G_r^ℓ⟩ = ‖JᵀUᵀ(p₀ − y)‖² Σ_h ⟨c_f^{ℓ,h}, c_r^{ℓ,h}⟩ + O(ε) for every layer ℓ of a deep "
        "block with branch scale ε (remainder of observed order 1 over ε = 2^−k); lead_ℓ > 0 asserted under "
        "H-orth embeddings without pre-norm, lead_ℓ ≥ 0 under NoPE (elsewhere a non-positive lead_ℓ is "
        "not-applicable for the sign, counted); below a computed ε₀ the sign is positive where the leading term is.",
        doc="claims/C6-small-branch-alignment.md",
        checker=_M + "check_c6",
        runner=_M + "run_c6",
        bounds=("mdm_props.taylor:series_band", _M + "c6_floor", _M + "leading_scale"),
        tests="tests/test_c6.py",
        needs_negative_control=True,
        default_draws=50,
        counts_not_applicable=True,
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
        tests="tests/test_c6.py",
        needs_negative_control=True,
        default_draws=500,
        false_alarm=STATED_FALSE_ALARM,
    ),
)
