"""Tightness of a derived bound: sound (every observed error ≤ its bound, checked by the claim rows)
and *not loose*: on a fixed set of draws the largest observed error/bound reaches a stated share.

A bound made ten times looser (a safety factor, a γ_n, a dropped term's replacement) still passes
every soundness check; only a tightness check sees it. Each share is stated next to the draws it
is measured on, with the measured value, and chosen so that the real bound passes with a margin
(share ≤ measured/2.5) while the same bound ten times looser fails (share > measured/10).
The draws are fixed (a constant seed), so the check is deterministic: it is not a statistical claim.
"""

from __future__ import annotations

from collections.abc import Iterable

from .checks import CheckResult, inequality

TIGHT_SEED = 20260511  # the fixed draws of every tightness check


def tightness_check(claim: str, quantity: str, ratios: Iterable[float], share: float, **details) -> CheckResult:
    """``max(ratios) ≥ share``: the largest observed error/bound over the fixed draws reaches ``share``
    (margin (max − share)/share). ``ratios`` are error/bound values of checks that hold (each ≤ 1)."""
    ratios = [float(r) for r in ratios]
    if not ratios:
        raise ValueError("ratios must hold at least one error/bound value")
    if not 0 < share < 1:
        raise ValueError(f"share must be in (0, 1); got {share}")
    worst = max(ratios)
    return inequality(
        claim,
        f"bound is tight: max error/bound over {len(ratios)} fixed draws ≥ {share:g} ({quantity})",
        worst,
        share,
        ">=",
        scale=share,
        draws=len(ratios),
        share=share,
        **details,
    )
