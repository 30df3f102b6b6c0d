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
