"""Structure coverage for the claim runners: split a runner's draws over the structures its
property tests draw from (e.g. every positional encoding that satisfies the claim's hypotheses), so
that ``mdm-props verify`` examines each of them even with few draws.

:func:`split_draws` is pure: it only decides how many draws each structure gets and from which seed;
the runner passes each share to its usual seeded per-draw runner.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from .strategies import MAX_SEED
from .validation import require_int, require_seed


def split_draws(draws: int, seed: int, options: Sequence) -> list[tuple[object, int, int]]:
    """[(option, n, sub_seed)]: ``draws`` split as evenly as possible over ``options`` in order (the first
    ``draws mod len(options)`` get one more; an option with no draw is left out), each with its own seed
    drawn from ``seed`` (so two options never share a stream)."""
    require_int("draws", draws, 1)
    rng = random.Random(require_seed("seed", seed))
    if not options:
        raise ValueError("options must hold at least one structure")
    k = len(options)
    out = []
    for i, option in enumerate(options):
        sub_seed = rng.randrange(MAX_SEED)
        n = draws // k + (i < draws % k)
        if n:
            out.append((option, n, sub_seed))
    return out
