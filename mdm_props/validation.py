"""The validation vocabulary: every public entry point checks its arguments with these.

Each ``require_*`` returns the (normalised) value or raises a ``ValueError`` that names the argument
and says what is allowed. ``check_*`` names are reserved for claim checkers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def require_int(name: str, value, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (not a bool) in [minimum, maximum]."""
    low = "" if minimum is None else f" >= {minimum}"
    high = "" if maximum is None else f" <= {maximum}"
    both = " and" if low and high else ""
    if not _is_int(value) or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be an integer{low}{both}{high}; got {value!r}")
    return int(value)


def require_seed(name: str, value) -> int:
    """A seed: an integer >= 0 (a negative seed would alias a positive one in ``random.Random``)."""
    return require_int(name, value, 0)


def require_number(name: str, value, *, positive: bool = False, minimum: float | None = None,
                   exclusive_minimum: float | None = None, finite: bool = True) -> float:
    """A real number (int or float, not bool), finite unless ``finite=False``; ``positive`` means > 0."""
    if positive:
        exclusive_minimum = 0.0 if exclusive_minimum is None else max(exclusive_minimum, 0.0)
    rules = []
    if finite:
        rules.append("finite")
    what = "a " + " ".join(rules + ["number"])
    if exclusive_minimum is not None:
        what += f" > {exclusive_minimum:g}"
    if minimum is not None:
        what += f" >= {minimum:g}"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    ok = ok and (not finite or math.isfinite(value))
    ok = ok and (exclusive_minimum is None or value > exclusive_minimum) and (minimum is None or value >= minimum)
    if not ok:
        raise ValueError(f"{name} must be {what}; got {value!r}")
    return float(value)


def require_choice(name: str, value, allowed: Iterable):
    """One of ``allowed``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def require_subset(name: str, values, allowed: Iterable) -> tuple:
    """A non-empty sequence of distinct members of ``allowed`` (a lone string is refused)."""
    allowed = tuple(allowed)
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise ValueError(f"{name} must be a non-empty sequence of {', '.join(map(repr, allowed))}; got {values!r}")
    values = tuple(values)
    bad = [v for v in values if v not in allowed]
    if not values or bad or len(set(values)) != len(values):
        raise ValueError(f"{name} must be a non-empty sequence of distinct values from "
                         f"{', '.join(map(repr, allowed))}; got {values!r}")
    return values


def require_bool(name: str, value) -> bool:
    """True or False (not 0/1)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False; got {value!r}")
    return value
