"""Intervals and tests with a stated false-alarm probability (scipy.stats underneath).

Distributional claims are tested at false-alarm probability ``alpha`` (default 1e-6): a correct
implementation fails such a test with probability at most ``alpha``. Typical claims are reported
as rates with a Clopper–Pearson interval at confidence ``1 − alpha``.
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
    atanh(r) ± z_{1−alpha/2}/√(n − 3), mapped back by tanh."""
    alpha = _alpha(alpha)
    if n < 4:
        raise ValueError(f"n must be >= 4 for the Fisher z interval; got {n}")
    if not -1 <= r <= 1:
        raise ValueError(f"r must lie in [-1, 1]; got {r}")
    half = stats.norm.isf(alpha / 2) / math.sqrt(n - 3)
    z = math.atanh(max(min(r, 1 - 1e-16), -1 + 1e-16))
    return math.tanh(z - half), math.tanh(z + half)


def fisher_z_statistic(r: float, rho: float, n: int) -> float:
    """|atanh(r) − atanh(rho)| √(n − 3): approximately |N(0, 1)| when the true correlation is rho."""
    clip = lambda x: max(min(x, 1 - 1e-16), -1 + 1e-16)  # noqa: E731
    return abs(math.atanh(clip(r)) - math.atanh(clip(rho))) * math.sqrt(n - 3)


def two_sided_critical(alpha: float = FALSE_ALARM) -> float:
    """z with P(|N(0,1)| > z) = alpha."""
    return float(stats.norm.isf(_alpha(alpha) / 2))
