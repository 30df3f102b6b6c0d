"""The validation vocabulary: each ``require_*`` returns its (normalised) value or raises a ValueError
that names the argument and what is allowed, e.g. ``steps must be an integer >= 1; got 0``.

``require_*`` validates an argument; ``check_*`` is reserved for claim checkers. A bool is never
accepted where a number is asked for (``True`` is an ``int`` to Python, not to a reader).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "SEED_MAX",
    "require_bool",
    "require_choice",
    "require_int",
    "require_number",
    "require_seed",
    "require_subset",
]

# The largest seed: torch.Generator.manual_seed takes a 64-bit unsigned integer, and every seed here
# reaches one (parameters are drawn from a Generator seeded by it).
SEED_MAX = 2**64 - 1


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _listing(allowed: Iterable[Any]) -> str:
    return ", ".join(str(a) for a in allowed)


def require_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (not a bool) in [minimum, maximum] (either end optional): ``{name} must be an integer >= minimum``."""
    low_ok = minimum is None or (_is_int(value) and value >= minimum)
    high_ok = maximum is None or (_is_int(value) and value <= maximum)
    if not (_is_int(value) and low_ok and high_ok):
        if minimum is not None and maximum is not None:
            what = f"an integer in [{minimum}, {maximum}]"
        elif minimum is not None:
            what = f"an integer >= {minimum}"
        elif maximum is not None:
            what = f"an integer <= {maximum}"
        else:
            what = "an integer"
        raise ValueError(f"{name} must be {what}; got {value!r}")
    return int(value)


def require_number(name: str, value: Any, *, positive: bool = False, finite: bool = True) -> float:
    """A real number (int or float, not a bool), > 0 if ``positive``, not NaN/±inf if ``finite``; returned as float."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok and finite and not math.isfinite(value):
        ok = False
    if ok and positive and not value > 0:  # NaN is not > 0
        ok = False
    if not ok:
        what = ("a finite number" if finite else "a number") + (" > 0" if positive else "")
        raise ValueError(f"{name} must be {what}; got {value!r}")
    return float(value)


def require_choice(name: str, value: Any, allowed: Sequence[Any]) -> Any:
    """One of ``allowed``: ``{name} must be one of a, b, c; got 'x'``."""
    try:
        ok = value in allowed
    except TypeError:  # an unhashable value against a set or mapping
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {_listing(allowed)}; got {value!r}")
    return value


def require_subset(name: str, values: Any, allowed: Sequence[Any]) -> tuple:
    """A non-empty, repetition-free selection from ``allowed`` (a lone string is one value); returned as a tuple."""
    if isinstance(values, str):
        values = (values,)
    elif isinstance(values, Iterable):
        values = tuple(values)
    else:
        raise ValueError(f"{name} must be a sequence of values from {_listing(allowed)}; got {values!r}")
    if not values:
        raise ValueError(f"{name} must name at least one of {_listing(allowed)}; got none")
    for v in values:
        if v not in allowed:
            raise ValueError(f"{name}: unknown value {v!r}; allowed values are {_listing(allowed)}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat a value; got {list(values)}")
    return values


def require_seed(name: str, value: Any, maximum: int = SEED_MAX) -> int:
    """A seed: an integer (not a bool) in [0, min(maximum, SEED_MAX)]: ``{name} must be a non-negative integer``."""
    top = min(maximum, SEED_MAX)
    if not (_is_int(value) and 0 <= value <= top):
        raise ValueError(f"{name} must be a non-negative integer <= {top} (64 bits); got {value!r}")
    return int(value)


def require_bool(name: str, value: Any) -> bool:
    """Exactly ``True`` or ``False`` (not 0, 1 or a string): ``{name} must be True or False``."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False; got {value!r}")
    return value
