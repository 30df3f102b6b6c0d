"""Re-checking a negative control's reported counterexample, as ``mdm-props verify`` does for every
control that reports "found": a report must carry its example (a non-empty dict), a finite observed
value, and, where the example describes a draw (the keys :func:`mdm_props.search.describe` writes),
that draw must re-create (:func:`mdm_props.search.case_from_description`) and describe itself the same
way, so that the failure can be replayed from the report alone.
"""

from __future__ import annotations

import math

from .checks import Counterexample
from .search import case_from_description, describe

DRAW_KEYS = (
    "pos",
    "vocab",
    "d_model",
    "d_head",
    "n_heads",
    "attention",
    "seed",
    "scale",
    "orthonormal",
    "template",
    "A",
    "B",
)


def recheck(cx: Counterexample) -> str | None:
    """None when the found counterexample ``cx`` re-checks, else the reason it does not."""
    if not cx.found:
        return "no counterexample was found"
    if not isinstance(cx.example, dict) or not cx.example:
        return "reported found without an example"
    if not (isinstance(cx.observed, (int, float)) and math.isfinite(cx.observed)):
        return f"reported found with a non-finite observed value {cx.observed!r}"
    if all(k in cx.example for k in DRAW_KEYS):
        try:
            case = case_from_description(cx.example)
        except (ValueError, TypeError) as exc:
            return f"the reported draw does not re-create: {exc}"
        again = describe(case)
        differ = [k for k in DRAW_KEYS if _norm(again[k]) != _norm(cx.example[k])]
        if differ:
            return f"the reported draw re-creates differently in {differ}"
    return None


def _norm(v):
    return tuple(_norm(x) for x in v) if isinstance(v, (list, tuple)) else v
