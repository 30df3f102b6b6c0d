"""The ``mdm-props`` command: ``verify``, ``explain``, ``plot``, ``certify`` and ``experiment``.

Exit codes: 0 everything holds (and every negative control found its counterexample); 1 something
was violated (or a negative control found nothing, or a checker raised); 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time

from . import __version__, registry
from .checks import ClaimSkipped, summarize
from .options import arg_type
from .validation import require_int, require_seed

STATUS_OK = ("holds", "counterexample-found", "skipped")


def _finite(x):
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def _run_claim(claim, draws, seed, device) -> dict:
    start = time.perf_counter()
    row = {"id": claim.id, "kind": claim.kind, "title": claim.title, "hypotheses": list(claim.hypotheses),
           "negative_control": False, "draws": 0, "worst_margin": None, "worst_error_ratio": None}
    try:
        results = claim.run(draws, seed, device)
        if not results:
            raise ClaimSkipped("the checker returned no comparisons")
        s = summarize(results)
        row.update(draws=draws, checks=s["draws"], worst_margin=_finite(s["worst_margin"]),
                   worst_error_ratio=_finite(s["worst_error_ratio"]), status="holds" if s["holds"] else "violated")
        if not s["holds"]:
            row["reason"] = str(next(r for r in results if not r.holds))
    except ClaimSkipped as exc:
        row.update(status="skipped", reason=str(exc))
    except Exception as exc:  # a checker that crashes is a failure, reported, not hidden
        row.update(status="error", reason=f"{type(exc).__name__}: {exc}")
    row["seconds"] = round(time.perf_counter() - start, 3)
    return row


def _run_negative(control, draws, seed, device) -> dict:
    start = time.perf_counter()
    row = {"id": control.id, "kind": "negative-control", "title": control.description,
           "hypotheses": [f"drops {control.dropped}"], "negative_control": True, "claim": control.claim,
           "draws": 0, "worst_margin": None, "worst_error_ratio": None}
    try:
        cx = control.run(draws, seed, device)
        row.update(draws=cx.searched, checks=1, status="counterexample-found" if cx.found else "no-counterexample",
                   observed=_finite(cx.observed))
        if not cx.found:
            row["reason"] = str(cx)
    except ClaimSkipped as exc:
        row.update(status="skipped", reason=str(exc))
    except Exception as exc:
        row.update(status="error", reason=f"{type(exc).__name__}: {exc}")
    row["seconds"] = round(time.perf_counter() - start, 3)
    return row


def _fmt(x, spec):
    width = int(spec.split(".")[0])
    return f"{'-':>{width}}" if x is None else format(x, spec)


def print_table(rows, out=None) -> None:
    out = out or sys.stdout
    header = f"{'id':<20} {'kind':<16} {'hypotheses':<30} {'draws':>6} {'checks':>6} {'margin':>10} {'err/tol':>9} {'status':<21} {'s':>6}"
    print(header, file=out)
    print("-" * len(header), file=out)
    for r in rows:
        hyp = ",".join(r["hypotheses"]) or "-"
        print(f"{r['id']:<20} {r['kind']:<16} {hyp[:30]:<30} {r['draws']:>6} {r.get('checks', 0):>6} {_fmt(r['worst_margin'], '10.3g')} "
              f"{_fmt(r['worst_error_ratio'], '9.3g')} {r['status']:<21} {r['seconds']:>6.2f}", file=out)
    for r in rows:
        if r["status"] not in STATUS_OK[:2]:
            print(f"  {r['id']}: {r['status']}: {r.get('reason', '')}", file=out)


def environment(device: str, seed: int) -> dict:
    import torch

    return {"mdm_props": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "device": device, "seed": seed,
            "cuda_device": torch.cuda.get_device_name() if device.startswith("cuda") else None}


def cmd_verify(args, parser) -> int:
    import torch

    from .params import resolve_device

    # the checks use tiny tensors: a second intra-op thread only waits (measured ~2x CPU per check)
    torch.set_num_threads(1)
    try:
        claims = registry.select(args.claims.split(",") if args.claims else None)
        resolve_device(args.device)
    except ValueError as exc:
        parser.error(str(exc))
    jobs = []
    for c in claims:
        jobs.append(("claim", c))
        jobs += [("negative", n) for n in c.negative_controls()]
    rows = []
    for i, (what, job) in enumerate(jobs, 1):
        print(f"[{i:>2}/{len(jobs)}] {job.id} ...", end="", file=sys.stderr, flush=True)
        if what == "claim":
            row = _run_claim(job, args.examples or job.default_draws, args.seed, args.device)
        else:
            row = _run_negative(job, job.default_draws, args.seed, args.device)  # a search budget, not --examples
        print(f" {row['status']} ({row['seconds']:.2f} s)", file=sys.stderr, flush=True)
        rows.append(row)
    print_table(rows)
    bad = [r for r in rows if r["status"] not in STATUS_OK]
    print(f"\n{len(rows) - len(bad)}/{len(rows)} rows hold or found their counterexample"
          f"{'' if not bad else '; FAILED: ' + ', '.join(r['id'] for r in bad)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"claims": rows, "environment": environment(args.device, args.seed)}, f, indent=2)
    return 1 if bad else 0


def cmd_explain(args, parser) -> int:
    try:
        claim = registry.get(args.claim)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"{claim.id}: {claim.title}")
    print(f"kind: {claim.kind}")
    print("hypotheses:" + ("" if claim.hypotheses else " none"))
    for h in claim.hypotheses:
        print(f"  {h}: {registry.HYPOTHESES[h]}")
    print(f"statement: {claim.statement}")
    print(f"doc page: docs/{claim.doc}")
    controls = claim.negative_controls()
    print("negative controls:" + ("" if controls else " none"))
    for n in controls:
        print(f"  {n.id} (drops {n.dropped}): {n.description}")
    return 0


def cmd_plot(args, parser) -> int:
    import torch

    from .plots import plot_correlation, plot_depth

    torch.set_num_threads(1)  # tiny tensors: a second intra-op thread only waits (as in verify)
    try:
        path = plot_depth(args.out) if args.figure == "depth" else plot_correlation(args.out)
    except ImportError as exc:  # matplotlib is an optional extra
        print(f"mdm-props plot: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mdm-props", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mdm_props {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    v = sub.add_parser("verify", help="check every registered claim and print a report")
    v.add_argument("--claims", help="comma-separated claim ids or families, e.g. C1,C3 or C1b (default: all)")
    v.add_argument("--examples", type=arg_type("examples", require_int, minimum=1),
                   help="draws per claim (default: each claim's own default); "
                   "negative controls keep their own search budget")
    v.add_argument("--seed", type=arg_type("seed", require_seed), default=0,
                   help="master seed (default 0); same seed, same numbers")
    v.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cpu (default) or cuda")
    v.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    v.set_defaults(func=cmd_verify)

    e = sub.add_parser("explain", help="print a claim's statement, hypotheses, kind and doc page")
    e.add_argument("claim", help="claim id, e.g. C3")
    e.set_defaults(func=cmd_explain)

    p = sub.add_parser("plot", help="draw a figure")
    p.add_argument("figure", choices=("corr", "depth"),
                   help="corr: C2a correlation tr(R_g)/d_k against d_k and offset; "
                   "depth: C7 alignment rate against init scale, one line per depth, MDM and ARM")
    p.add_argument("--out", required=True, help="output PNG path")
    p.set_defaults(func=cmd_plot)

    from . import certified

    c = sub.add_parser("certify", help="prove a claim on concrete draws in ball arithmetic (needs python-flint)")
    certified.add_certify_arguments(c)
    c.set_defaults(func=certified.cmd_certify)

    x = sub.add_parser("experiment", help="run a controlled training experiment")
    xs = x.add_subparsers(dest="experiment", required=True)
    r = xs.add_parser("reversal", help="MDM vs ARM reverse accuracy across positional encodings")
    from . import reversal_report

    reversal_report.add_arguments(r)
    r.set_defaults(func=lambda args, parser: reversal_report.run_from_args(args))
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args, parser)
