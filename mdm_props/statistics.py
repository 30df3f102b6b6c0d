"""Intervals and tests with a stated false-alarm probability (scipy.stats underneath).

Distributional claims are tested at false-alarm probability ``alpha`` (default 1e-6): a correct
implementation fails such a test with probability at most ``alpha``. Typical claims are reported
as rates with a Clopper–Pearson interval at confidence ``1 − alpha``. (Plain Fisher z is not offered:
the score pairs of C2a are not bivariate normal; its corrected test lives in that claim's module.)
"""

from __future__ import annotations

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
