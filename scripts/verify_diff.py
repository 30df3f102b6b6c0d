"""Compare two `mdm-props verify --json` documents: same rows (ids) and statuses, margins equal within a
relative tolerance (default 1e-12). Prints a summary; exit 1 when they differ.

    python scripts/verify_diff.py BEFORE.json AFTER.json [--rel 1e-12]
"""

import argparse
import json
import math
import sys

NUMBERS = ("worst_margin", "worst_error_ratio")


def close(a, b, rel: float) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b or abs(a - b) <= rel * max(abs(a), abs(b))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--rel", type=float, default=1e-12)
    args = p.parse_args(argv)
    before, after = (json.load(open(f)) for f in (args.before, args.after))
    rows_b, rows_a = ({r["id"]: r for r in d["claims"]} for d in (before, after))
    problems = []
    if list(rows_b) != list(rows_a):
        problems.append(
            f"rows differ: only before {sorted(set(rows_b) - set(rows_a))}, only after "
            f"{sorted(set(rows_a) - set(rows_b))}, order {list(rows_b) != list(rows_a)}"
        )
    worst = 0.0
    for cid in rows_b.keys() & rows_a.keys():
        b, a = rows_b[cid], rows_a[cid]
        for key in ("status", "checks", "draws", "undecided"):
            if b.get(key) != a.get(key):
                problems.append(f"{cid}: {key} {b.get(key)!r} → {a.get(key)!r}")
        for key in NUMBERS:
            x, y = b.get(key), a.get(key)
            if not close(x, y, args.rel):
                problems.append(f"{cid}: {key} {x!r} → {y!r}")
            elif isinstance(x, float) and isinstance(y, float) and math.isfinite(x) and x != 0:
                worst = max(worst, abs(x - y) / abs(x))
    if before.get("complete") != after.get("complete"):
        problems.append(f"complete {before.get('complete')} → {after.get('complete')}")
    print(f"{len(rows_b)} rows before, {len(rows_a)} after; largest relative margin change {worst:.3g}")
    print(
        "\n".join(problems) if problems else f"same rows, statuses, checks and margins (within {args.rel:g} relative)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
