"""C8 — a forward storage step at one layer and the reverse loss (per draw; THEORY §2b).

The per-layer Taylor test of the forward storage step on the reverse loss (only W_OV^ℓ moves;
:func:`check_c8`, the fitted-series test of :mod:`mdm_props.taylor` at order 2) and, at the last layer
without final norm or MLP, C4a's explicit remainder ``0 ≤ φ(η) − φ(0) + η⟨G_r^L, G_f^L⟩ ≤ η² spread(a)²/8``.
The deep draw and the per-layer storage gradients are :mod:`mdm_props.layer_storage`'s.
"""

from __future__ import annotations

import itertools
import math
import random

import torch

from .. import taylor
from ..checks import CheckResult, Counterexample, NegativeControl, inequality, undecided
from ..facts import Query, Template
from ..layer_storage import (
    _layer_gradients,
    _slot_loss,
    layer_gradients,
    require_deep_storage_model,
    require_queries,
    sample_storage_case,
)
from ..model import ModelConfig, forward, unembedding
from ..params import resolve_device
from ..rounding import STORAGE_SAFETY, gamma
from ..rounding_mode import with_error_bounds
from ..search import run_per_draw, search
from ..storage import pair_queries
from ..strategies import ETAS
from ..validation import require_seed

# ---------------------------------------------------------------------------------------------
# C8 — a forward storage step at any layer lowers the reverse loss to first order (per draw)

C8_STARTS = (4, 7, 10, 13)  # η = 2^−k s (s = 2^−round(log2 ‖G_f^ℓ‖)): first exponents tried for the fit
C8_ETAS = ETAS  # the explicit C4a remainder at the last layer: C4a's step sizes
C8_ORDER = "observed order log2(R(η)/R(η/2)) = 2, only W_OV^ℓ moves"


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
      η = 2^−k₀ s … (:func:`mdm_props.taylor.fit_series`, order 2, from C8_STARTS), observed order
      log2(R(η)/R(η/2)) = 2 at k₀ + 4, k₀ + 8 within log2((1 + x)/(1 − x)) (:func:`mdm_props.taylor.series_checks`;
      x = :func:`mdm_props.taylor.series_band` with order 2; floor = :func:`mdm_props.taylor.taylor_floor` with
      running-error loss radii), where x ≤ TAYLOR_WINDOW.
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

        fit = taylor.fit_series(R_at, 2, C8_STARTS)
        k0, c = fit.k0, fit.coefficients
        eta_min = 2.0 ** -(k0 + 9) * s
        L1, e_L1 = loss_with_bound(layer_step(params, layer, D, eta_min), cfg, rq)
        floor = taylor.taylor_floor(e_L0, e_L1, L0, L1, eta_min, ip, [G_r[layer]], [D], [params["W_OV"][layer]])
        info = {"layer": layer, "A2_fit": c[0], "c3": c[1], "c4": c[2], "floor": floor, "step_unit": s, "fit_k": k0}
        # the series is fitted in ε = η/s = 2^−k (taylor.fit_series): R = c₁ε² + c₂ε³ + c₃ε⁴, so every band is in ε
        results += taylor.series_checks("C8", C8_ORDER, R_at, fit, floor, **info)
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
    """C8 on ``draws`` seeded deep MDM draws (Gaussian and orthonormal embeddings in turn, every relative
    encoding, depth 1–4): :func:`mdm_props.search.run_per_draw` over
    :func:`mdm_props.layer_storage.sample_storage_case`."""
    turn = itertools.count()
    return run_per_draw(
        check_c8, draws, seed, device, sample=lambda rng: sample_storage_case(rng, orthonormal=bool(next(turn) % 2))
    )


# ---------------------------------------------------------------------------------------------
# negative control


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


NEGATIVE_CONTROLS = [
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

from ..registry import Claim  # noqa: E402  (the rows sit at the end of the module)

_M = __name__ + ":"
CLAIMS = (
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
        bounds=("mdm_props.taylor:series_band", "mdm_props.taylor:taylor_floor", _M + "c8_c4a_tolerances"),
        tests="tests/test_c8.py",
        needs_negative_control=True,
        default_draws=3,
    ),
)
