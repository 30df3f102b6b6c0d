"""The Taylor test, after pyadjoint's ``taylor_test(J, m, h)``: a first-order claim is checked by the
*rate* at which its remainder shrinks over η = 2^−k (observed order ≈ 2), and by R(η)/η² against
the second-order coefficient, inside a band derived from the next Taylor terms and the float64 floor.

* :func:`taylor_floor` — the float64 floor of a remainder R̂(η) = fl(L̂(θ̂') − L̂(θ) + η⟨ĝ, d⟩).
* :func:`taylor_radius`, :func:`taylor_relative_band`, :func:`taylor_order_band` — the acceptance bands.
* :func:`taylor_test` — the observed orders and ratios on the asymptotic window, as CheckResults.

Used by C4b (and every later Taylor claim).
"""

from __future__ import annotations

import math

from .checks import CheckResult, identity
from .rounding import STORAGE_SAFETY, gamma

def taylor_floor(e_L0: float, e_L1: float, L0: float, L1: float, eta: float, ip: float,
                 g_r: list, g: list, theta: list) -> float:
    """The float64 floor of the Taylor remainder R̂(η) = fl(L̂(θ̂') − L̂(θ) + η⟨ĝ_r, g⟩), θ̂' = fl(θ − fl(ηg)),
    × STORAGE_SAFETY: the two loss evaluations (forward bounds e_L0, e_L1); θ̂' differs from θ − ηg by
    γ_2(|θ| + 2η|g|) entrywise, which moves L by ≤ Σ|g_r| γ_2(|θ| + 2η|g|) (first order); the dot
    product ⟨ĝ_r, g⟩ of N entries γ_N Σ|g_r||g| (times η); the two additions γ_3(|L0| + |L1| + η|ip|).

    The linear term uses the computed gradient as given: an error in it is what a Taylor test detects
    (a remainder of order 1), so it is not part of the floor."""
    N = sum(t.numel() for t in g)
    s_theta = sum(float((a.abs() * (th.abs() + 2 * eta * b.abs())).sum()) for a, b, th in zip(g_r, g, theta))
    s_dot = sum(float((a.abs() * b.abs()).sum()) for a, b in zip(g_r, g))
    floor = e_L0 + e_L1 + gamma(2) * s_theta + gamma(3) * (abs(L0) + abs(L1) + eta * abs(ip)) + eta * gamma(N) * s_dot
    return STORAGE_SAFETY * floor


TAYLOR_WINDOW = 0.1  # the asymptotic window: neglected terms + floor ≤ 10% of the leading term
TAYLOR_RADIUS_FRACTION = 0.25  # and η ≤ ρ̂/4, ρ̂ the convergence radius suggested by the coefficients


def taylor_radius(A2: float, taylor: tuple[float, ...]) -> float:
    """ρ̂ = min_k (|c₂|/|c_k|)^{1/(k−2)} over the computed coefficients c_k = φ^(k)(0)/k! (``taylor`` =
    (c₃, c₄, …), c₂ = A2): the radius at which the computed terms reach the leading one (Cauchy-
    Hadamard, estimated from the terms at hand); inf when every c_k is 0."""
    rho = math.inf
    for k, c in enumerate(taylor, start=3):
        if c != 0:
            rho = min(rho, (abs(A2) / abs(c)) ** (1.0 / (k - 2)))
    return rho


def taylor_relative_band(A2: float, taylor: tuple[float, ...], floor: float, eta: float) -> float:
    """x(η) with |R(η)/η² − A2| ≤ x(η)|A2|, A2 = φ''(0)/2 = ½ g_fᵀH_r g_f, for η < ρ̂ (:func:`taylor_radius`).

    R(η)/η² = A2 + Σ_{k≥3} c_k η^{k−2}, c_k = φ^(k)(0)/k!; the computed terms (``taylor`` = (c₃, c₄, c₅),
    nested autograd along the line) are kept with their absolute values, and the rest is bounded
    under the stated assumption that the coefficients not computed grow no faster than the computed
    ones suggest, |c_k| ≤ |A2| ρ̂^{−(k−2)} (k ≥ 6): Σ_{k≥6} ≤ |A2| (η/ρ̂)⁴/(1 − η/ρ̂). STORAGE_SAFETY = 2
    multiplies both; the rounding floor adds floor/η²."""
    rho = taylor_radius(A2, taylor)
    if not eta < rho:
        return math.inf
    kept = sum(abs(c) * eta ** (k + 1) for k, c in enumerate(taylor))
    q = eta / rho
    tail = abs(A2) * q ** (len(taylor) + 1) / (1 - q)
    return (STORAGE_SAFETY * (kept + tail) + floor / eta**2) / abs(A2)


def taylor_order_band(x1: float, x2: float) -> float:
    """|log2(R(η)/R(η/2)) − 2| ≤ log2((1 + x)/(1 − x)), x = max(x(η), x(η/2)) < 1: the ratio of
    R(η)/η² ∈ A2(1 ± x(η)) and R(η/2)/(η/2)² ∈ A2(1 ± x(η/2))."""
    x = max(x1, x2)
    if not 0 <= x < 1:
        raise ValueError(f"the relative band must lie in [0, 1); got {x}")
    return math.log2((1 + x) / (1 - x))


def taylor_test(claim: str, rows: list[dict], A2: float, taylor: tuple[float, ...]) -> list[CheckResult]:
    """The observed orders (every consecutive pair) and the ratios R(η)/η² (every point) on the
    asymptotic window {η : x(η) ≤ TAYLOR_WINDOW} (:func:`taylor_relative_band`),
    each against its derived band. Without a window above the float64 floor — the regime where R is
    quadratic lies below what float64 resolves — there is nothing to compare: no result."""
    window = [row for row in rows if row["x"] <= TAYLOR_WINDOW]
    info = {"A2": A2, "window": [row["k"] for row in window], "taylor": taylor}
    by_k = {row["k"]: row for row in window}
    orders, ratios = [], []
    for row in window:
        ratios.append((row["R"] / row["eta"] ** 2, A2, row["x"] * abs(A2), row["k"]))
        nxt = by_k.get(row["k"] + 1)
        if nxt is not None:
            order = math.log2(row["R"] / nxt["R"]) if row["R"] / nxt["R"] > 0 else math.nan
            orders.append((order, taylor_order_band(row["x"], nxt["x"]), row["k"]))
    results = []
    if orders:
        worst = max(orders, key=lambda o: abs(o[0] - 2) / o[1] if math.isfinite(o[0]) else math.inf)
        results.append(identity(claim, "observed order log2(R(η)/R(η/2)) = 2", worst[0], 2.0, worst[1], k=worst[2],
                                orders=[round(o[0], 6) for o in orders], **info))
    if ratios:
        worst = max(ratios, key=lambda r: abs(r[0] - r[1]) / r[2])
        results.append(identity(claim, "R(η)/η² = ½ g_fᵀ H_r g_f", worst[0], worst[1], worst[2], k=worst[3], **info))
    return results
