"""Intervals and tests with a stated false-alarm probability (scipy.stats underneath).

Distributional claims are tested at false-alarm probability ``alpha`` (default 1e-6): a correct
implementation fails such a test with probability at most ``alpha``. Typical claims are reported
as rates with a Clopper–Pearson interval at confidence ``1 − alpha``. Plain Fisher z
(:func:`fisher_z_interval`) assumes bivariate-normal pairs: the probe reports it with that caveat;
C2a, whose score pairs are not bivariate normal, carries its own corrected test.
"""

from __future__ import annotations

import math

from scipy import stats

FALSE_ALARM = 1e-6


def _alpha(alpha: float) -> float:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha!r}")
    return float(alpha)


def clopper_pearson(successes: int, trials: int, alpha: float = FALSE_ALARM) -> tuple[float, float]:
    """Exact two-sided (1 − alpha) interval for a binomial rate."""
    alpha = _alpha(alpha)
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials >= 1; got {successes}/{trials}")
    res = stats.binomtest(successes, trials).proportion_ci(confidence_level=1 - alpha, method="exact")
    return float(res.low), float(res.high)


def fisher_z_interval(r: float, n: int, alpha: float = FALSE_ALARM) -> tuple[float, float]:
    """Approximate (1 − alpha) interval for a Pearson correlation from n bivariate-normal pairs:
    atanh(r) ± z_{1−alpha/2}/√(n − 3), mapped back by tanh (valid only for bivariate-normal pairs)."""
    alpha = _alpha(alpha)
    if n < 4:
        raise ValueError(f"n must be >= 4 for the Fisher z interval; got {n}")
    if not -1 <= r <= 1:
        raise ValueError(f"r must lie in [-1, 1]; got {r}")
    half = stats.norm.isf(alpha / 2) / math.sqrt(n - 3)
    z = math.atanh(max(min(r, 1 - 1e-16), -1 + 1e-16))
    return math.tanh(z - half), math.tanh(z + half)


def reported_levels(results) -> list[float]:
    """The false-alarm levels that ``results`` (CheckResults) report having used: ``details["alpha"]`` of
    each statistical check (the level its interval or critical value was computed at), in order."""
    return [float(r.details["alpha"]) for r in results if "alpha" in r.details]


def level_problem(results, stated: float) -> str | None:
    """None when the claim's checks used its ``stated`` false-alarm level; otherwise why not: no check
    reports the level it used, or one used another level (relative difference > 1e-9)."""
    levels = reported_levels(results)
    if not levels:
        return f"the claim states false-alarm level {stated:g}, but none of its {len(results)} checks reports one"
    wrong = [a for a in levels if not math.isclose(a, stated, rel_tol=1e-9)]
    if wrong:
        used = ", ".join(f"{a:g}" for a in sorted(set(wrong)))
        return (
            f"{len(wrong)} of {len(levels)} statistical checks used false-alarm level {used}, not the stated {stated:g}"
        )
    return None
