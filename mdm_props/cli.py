"""The ``mdm-props`` command: executable claims on why masked diffusion models mitigate the reversal curse.

Subcommands: ``verify``, ``bench``, ``explain``, ``plot``, ``certify``, ``probe``, ``experiment``, ``report``.

Exit codes: 0 everything holds (and every negative control found its counterexample); 1 something
was violated (or a negative control found nothing, a checker raised, a runner drew outside its
claim's hypotheses: not-applicable, more than half of a row's decidable checks were undecided:
undecided, or a claim's statistical checks used another false-alarm level than the one the registry
states: wrong-level); 2 bad arguments (checked before any work, including that ``--json``/``--out``
can be written).

Selection: ``--claims`` takes claim ids and family ids; an exact claim id wins, so ``C3`` is the
claim C3 alone (C3v is selected by its own id), while ``C0``, ``C1``, ``C2``, ``C4`` (no claim has
those ids) select their families.
An *undecided* check (the checker could not decide, e.g. a Taylor test whose asymptotic regime
neither float64 nor the 50-digit oracle resolves) is counted, never a pass: the ``undec`` column counts
such checks and the reason is printed under the table; a row with more than half of its decidable checks
undecided (UNDECIDED_SHARE, derivation beside it) has status ``undecided`` and verify exits 1. The ``n/a``
column counts not-applicable checks.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from . import __version__, registry
from .arguments import (
    BUDGETS,
    JSON_SUFFIX,
    PNG_SUFFIX,
    budget_type,
    interruptible,
    require_extra,
    require_id_list,
    require_int_list,
    require_output_file,
    seed_type,
)

# Nothing imported at module level imports torch: ``mdm-props --help`` answers in a fraction of a second.
# A subcommand's heavy modules are imported when it runs, and the arguments of ``certify``,
# ``experiment reversal`` and ``probe`` (defined beside torch code) are added when that subcommand
# is parsed (:class:`LazyParser`).

STATUS_OK = ("holds", "counterexample-found", "skipped")
# A row is ``undecided`` (not a pass: exit 1) when more than this share of its decidable checks (those not
# not-applicable) are undecided. Derivation: a row reports "holds" for the whole claim on the evidence of its
# decided checks; with undecided > ½ of the decidable checks, the comparisons left open outnumber those made,
# so most of what the row set out to check was not checked and "holds" would report less than half of it.
# At ≤ ½ the decided checks are at least as many as the open ones (each counted, with its reason, in undec).
# ½ is the largest share with that property; any smaller share would fail rows whose decided checks already
# form the majority.
UNDECIDED_SHARE = 0.5


def _finite(x):
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def jsonable(x):
    """``x`` as plain JSON: tuples → lists, tensors and numpy scalars → numbers or lists, non-finite
    floats → None, anything else unknown → its str."""
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, int):
        return x
    if isinstance(x, float):
        return _finite(x)
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "tolist"):  # torch tensors, numpy arrays and scalars
        return jsonable(x.tolist())
    return str(x)


def _check_summary(r) -> dict:
    return {
        "quantity": r.quantity,
        "status": r.status,
        "observed": _finite(r.observed),
        "reference": _finite(r.reference),
        "error": _finite(r.error),
        "tolerance": _finite(r.tolerance),
        "margin": _finite(r.margin),
        "text": str(r),
    }


def _run_claim(claim, draws, seed, device) -> dict:
    from .checks import ClaimSkipped, summarize

    start = time.perf_counter()
    row = {
        "id": claim.id,
        "kind": claim.kind,
        "title": claim.title,
        "hypotheses": list(claim.hypotheses),
        "negative_control": False,
        **({"note": claim.note} if claim.note else {}),
        "draws": 0,
        "worst_margin": None,
        "worst_error_ratio": None,
    }
    try:
        results = claim.run(draws, seed, device)
        if not results:
            raise ClaimSkipped("the checker returned no comparisons")
        s = summarize(results)
        violated = [r for r in results if r.status == "violated"]
        outside = [r for r in results if r.status == "not-applicable"]
        undecided = [r for r in results if r.status == "undecided"]
        decided = [r for r in results if r.applicable and not r.undecided]
        # a not-applicable check fails the row, except for a claim asserted only where a per-check precondition
        # holds (Claim.counts_not_applicable, e.g. C8 at aligned layers): there it is counted, and the row fails
        # only when nothing was decided
        failing_outside = outside and (not claim.counts_not_applicable or not decided)
        status = (
            "violated"
            if violated
            else "not-applicable"
            if failing_outside
            else "undecided"
            if undecided_share(len(undecided), len(results) - len(outside)) > UNDECIDED_SHARE
            else "holds"
        )
        row.update(
            draws=draws,
            checks=s["draws"],
            worst_margin=_finite(s["worst_margin"]),
            worst_error_ratio=_finite(s["worst_error_ratio"]),
            status=status,
            undecided=len(undecided),
            not_applicable=len(outside),
        )
        if outside:
            row["not_applicable_reasons"] = not_applicable_reasons(outside)
        applicable = [r for r in results if r.applicable and not r.undecided and not math.isnan(r.margin)]
        if violated or failing_outside:
            pick = (violated or outside)[0]
        else:
            pick = min(applicable, key=lambda r: r.margin) if applicable else results[0]
        row["worst_check"] = _check_summary(pick)  # the failing check, else the one with the smallest margin
        row["draw"] = jsonable(pick.details.get("draw"))  # its draw (search.describe), for --replay; None if unrecorded
        if status == "undecided":
            row["reason"] = (
                f"{len(undecided)} of {len(results) - len(outside)} decidable checks undecided (more than "
                f"{UNDECIDED_SHARE:g}); first: {undecided[0]}"
            )
        elif status != "holds":
            row["reason"] = str(pick)
        elif undecided:
            row["reason"] = f"{len(undecided)} of {len(results)} checks undecided; first: {undecided[0]}"
        if status == "holds" and outside:
            counts = "; ".join(f"{n} {why}" for why, n in row["not_applicable_reasons"].items())
            note = f"{len(outside)} of {len(results)} checks not-applicable (counted, not judged: {counts})"
            row["reason"] = note + (f"; {row['reason']}" if "reason" in row else "")
        if claim.false_alarm is not None:  # the level the statistical checks used must be the one the claim states
            from .statistics import level_problem, reported_levels

            row["false_alarm"] = {"stated": claim.false_alarm, "used": sorted(set(reported_levels(results)))}
            problem = level_problem(results, claim.false_alarm)
            if problem is not None:
                row.update(status="wrong-level", reason=problem)
    except ClaimSkipped as exc:
        row.update(status="skipped", reason=str(exc))
    except Exception as exc:  # a checker that crashes is a failure, reported, not hidden
        row.update(status="error", reason=f"{type(exc).__name__}: {exc}")
    row["seconds"] = round(time.perf_counter() - start, 3)
    return row


def undecided_share(undecided: int, decidable: int) -> float:
    """The share of a row's decidable checks (all but the not-applicable ones) that are undecided (1 when the
    row has no decidable check: nothing was decided)."""
    return undecided / decidable if decidable else 1.0


def not_applicable_reasons(outside) -> dict[str, int]:
    """{reason: count} of the not-applicable checks, a reason cut at its first colon (its kind, e.g. "not
    aligned" for C8's layers), most frequent first."""
    counts: dict[str, int] = {}
    for r in outside:
        key = r.reason.split(":")[0].strip()
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _run_negative(control, draws, seed, device) -> dict:
    from .checks import ClaimSkipped
    from .recheck import recheck

    start = time.perf_counter()
    row = {
        "id": control.id,
        "kind": "negative-control",
        "title": control.description,
        "hypotheses": [f"drops {control.dropped}"],
        "negative_control": True,
        "claim": control.claim,
        "draws": 0,
        "worst_margin": None,
        "worst_error_ratio": None,
    }
    try:
        cx = control.run(draws, seed, device)
        row.update(
            draws=cx.searched,
            checks=1,
            status="counterexample-found" if cx.found else "no-counterexample",
            observed=_finite(cx.observed),
            counterexample=jsonable(cx.example) if cx.found else None,
        )
        if not cx.found:
            row["reason"] = str(cx)
        elif (problem := recheck(cx)) is not None:  # a "found" must carry a draw that re-checks
            row.update(status="unconfirmed", reason=f"{problem}: {cx}")
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
    header = (
        f"{'id':<20} {'kind':<16} {'hypotheses':<30} {'draws':>6} {'checks':>6} {'undec':>5} {'n/a':>5} {'margin':>10} "
        f"{'err/tol':>9} {'status':<21} {'s':>6}"
    )
    print(header, file=out)
    print("-" * len(header), file=out)
    for r in rows:
        hyp = ",".join(r["hypotheses"]) or "-"
        print(
            f"{r['id']:<20} {r['kind']:<16} {hyp[:30]:<30} {r['draws']:>6} {r.get('checks', 0):>6} "
            f"{r.get('undecided', 0):>5} {r.get('not_applicable', 0):>5} "
            f"{_fmt(r['worst_margin'], '10.3g')} {_fmt(r['worst_error_ratio'], '9.3g')} {r['status']:<21} "
            f"{r['seconds']:>6.2f}",
            file=out,
        )
    for r in rows:
        if r["status"] not in STATUS_OK[:2] or r.get("undecided") or r.get("not_applicable"):
            print(f"  {r['id']}: {r['status']}: {r.get('reason', '')}", file=out)
    for r in rows:
        if r.get("note"):
            print(f"  note: {r['id']}: {r['note']}", file=out)


def git_commit() -> str | None:
    """The git commit of the source tree the package runs from (None outside a git checkout),
    with ``+dirty`` when tracked files are modified."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: str, seed: int) -> dict:
    import hypothesis
    import mpmath
    import numpy
    import scipy
    import torch

    return {
        "mdm_props": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "mpmath": mpmath.__version__,
        "hypothesis": hypothesis.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "device": device,
        "seed": seed,
        "cuda_device": torch.cuda.get_device_name() if device.startswith("cuda") else None,
    }


def parse_claim_ids(text: str) -> list[str]:
    """``--claims`` as a list of ids (:func:`mdm_props.arguments.require_id_list`): comma-separated, blanks
    around commas ignored; an empty list, an empty item or a repeat is refused (``--claims ""`` would
    otherwise mean "everything")."""
    return require_id_list("--claims", text)


def write_report(path: Path, rows: list[dict], env: dict, complete: bool) -> None:
    """The JSON report (rewritten after every row, so an interrupted run keeps the rows that finished)."""
    doc = {"claims": rows, "environment": env, "complete": complete}
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(jsonable(doc), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


def cmd_replay(args, parser) -> int:
    """``verify --replay JSON ROW``: re-run the draw recorded in row ROW of a verify report with the
    claim's registered checker, print its results; exit 0 when they hold, 1 otherwise. The report is
    data (:mod:`mdm_props.recorded_draws`): every field is checked and nothing it names is imported;
    anything else exits 2."""
    from .recorded_draws import read_report, replay_arguments
    from .search import replay

    path, row_id = args.replay
    try:
        rows, seed = read_report(path)
        if row_id not in rows:
            raise ValueError(f"no row {row_id!r} in {path}; rows: {', '.join(rows) or 'none'}")
        row = rows[row_id]
        if row.get("negative_control"):
            raise ValueError(
                f"{row_id} is a negative control; its counterexample is in the report's 'counterexample' field"
            )
        claim = registry.get(row_id)  # a registered claim, or a ValueError
        if not row.get("draw"):
            raise ValueError(
                f"row {row_id} records no draw (its runner does not record per-draw descriptions; "
                f"re-run it with: mdm-props verify --claims {row_id} --seed {'S' if seed is None else seed})"
            )
        replay_arguments(claim, row["draw"])  # every field checked, before any work; nothing named is imported
    except ValueError as err:
        parser.error(f"--replay: {err}")
    results = replay(claim, row["draw"], args.device)  # the same checks again, then the claim's checker
    print(f"{row_id}: replaying draw {json.dumps(row['draw'])}")
    for r in results:
        print(f"  {r}")
    return 0 if results and all(r.holds for r in results) else 1


def cmd_verify(args, parser) -> int:
    import torch

    from .params import resolve_device

    # the checks use tiny tensors: a second intra-op thread only waits (measured ~2x CPU per check)
    torch.set_num_threads(1)
    try:
        resolve_device(args.device)
        if args.replay:
            if args.claims is not None or args.examples is not None or args.json is not None:
                raise ValueError("--replay re-runs one recorded draw: it takes no --claims, --examples or --json")
            return cmd_replay(args, parser)
        claims = (
            _selected("--claims", parse_claim_ids(args.claims)) if args.claims is not None else registry.select(None)
        )
        json_path = require_output_file("--json", args.json, JSON_SUFFIX) if args.json is not None else None
    except ValueError as exc:
        parser.error(str(exc))
    env = environment(args.device, args.seed)
    jobs = []
    for c in claims:
        jobs.append(("claim", c))
        jobs += [("negative", n) for n in c.negative_controls()]
    rows: list[dict] = []
    if json_path is not None:  # an interrupted run leaves a report, "complete": false, with the rows that finished
        write_report(json_path, rows, env, complete=False)
    for i, (what, job) in enumerate(jobs, 1):
        print(f"[{i:>2}/{len(jobs)}] {job.id} ...", end="", file=sys.stderr, flush=True)
        if what == "claim":
            row = _run_claim(job, args.examples or job.default_draws, args.seed, args.device)
        else:
            row = _run_negative(job, job.default_draws, args.seed, args.device)  # a search budget, not --examples
        print(f" {row['status']} ({row['seconds']:.2f} s)", file=sys.stderr, flush=True)
        rows.append(row)
        if json_path is not None:
            write_report(json_path, rows, env, complete=i == len(jobs))
    print_table(rows)
    bad = [r for r in rows if r["status"] not in STATUS_OK]
    undec = sum(r.get("undecided", 0) for r in rows)
    print(
        f"\n{len(rows) - len(bad)}/{len(rows)} rows hold or found their counterexample"
        f"{f'; {undec} checks undecided (counted; a row with more than half undecided fails)' if undec else ''}"
        f"{'' if not bad else '; FAILED: ' + ', '.join(r['id'] for r in bad)}"
    )
    return 1 if bad else 0


def cmd_bench(args, parser) -> int:
    from . import bench
    from .params import resolve_device

    try:
        benched = tuple(bench.BENCHED)
        claims = list(benched) if args.claims is None else require_id_list("--claims", args.claims, benched)
        swept = claims[0] if args.sweep is None else args.sweep
        if swept not in claims:
            raise ValueError(f"--sweep must be one of the benched claims {', '.join(claims)}; got {swept!r}")
        sizes = [] if args.sizes == "" else require_int_list("--sizes", args.sizes, 1, BUDGETS["bench --sizes"])
        plot: Path | None = None
        if args.plot is not None:
            plot = require_output_file("--plot", args.plot, PNG_SUFFIX)
            if not sizes:
                raise ValueError("--plot draws the batch-size sweep: it needs --sizes (e.g. --sizes 1,16,250)")
            require_extra("--plot", "plot")
        resolve_device(args.device)
    except ValueError as exc:
        parser.error(str(exc))
    bench.run(claims, args.draws, args.per_draw, args.seed, args.device, sizes, plot, sys.stdout, swept=swept)
    return 0


def _selected(name: str, ids: list[str]) -> list:
    """``registry.select(ids)``, its ValueError prefixed with the argument's name."""
    try:
        return registry.select(ids)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def cmd_explain(args, parser) -> int:
    try:
        claims = _selected("claim", [args.claim])
    except ValueError as exc:
        parser.error(str(exc))
    for i, claim in enumerate(claims):
        if i:
            print()
        explain_claim(claim)
    return 0


def explain_claim(claim) -> None:
    print(f"{claim.id}: {claim.title}")
    print(f"kind: {claim.kind}" + ("" if claim.false_alarm is None else f" (false-alarm level {claim.false_alarm:g})"))
    print("hypotheses:" + ("" if claim.hypotheses else " none"))
    for h in claim.hypotheses:
        print(f"  {h}: {registry.HYPOTHESES[h]}")
    print(f"statement: {claim.statement}")
    print(f"doc page: docs/{claim.doc}")
    controls = claim.negative_controls()
    print("negative controls:" + ("" if controls else " none"))
    for n in controls:
        print(f"  {n.id} (drops {n.dropped}): {n.description}")


def cmd_plot(args, parser) -> int:
    try:
        path = require_output_file("--out", args.out, PNG_SUFFIX)
        require_extra("mdm-props plot", "plot")
    except ValueError as exc:
        parser.error(str(exc))
    import torch

    from .claims.c2_correlated_routes import plot_correlation
    from .claims.c7_alignment_at_init import plot_depth

    torch.set_num_threads(1)  # tiny tensors: a second intra-op thread only waits (as in verify)
    path = plot_depth(path) if args.figure == "depth" else plot_correlation(path)
    print(f"wrote {path}")
    return 0


def cmd_certify(args, parser) -> int:
    from . import certified

    return certified.cmd_certify(args, parser)


def cmd_reversal(args, parser) -> int:
    from . import reversal_report

    return reversal_report.run_from_args(args, parser)


def cmd_entities(args, parser) -> int:
    from . import entities_report

    return entities_report.run_from_args(args, parser)


def cmd_report(args, parser) -> int:
    from .params import resolve_device
    from .report import copy_figures, render, verify_report

    try:
        out = require_output_file("--out", args.out, (".md",))
        experiments = {}
        for item in args.experiment:
            name, sep, folder = item.partition("=")
            if not sep or not name or not Path(folder).is_dir() or name in experiments:
                raise ValueError(f"--experiment must be NAME=DIR with a new NAME and an existing DIR; got {item!r}")
            experiments[name] = Path(folder)
        resolve_device(args.device)
    except ValueError as exc:
        parser.error(str(exc))
    doc = verify_report(args.seed, args.device)
    out.write_text(render(doc, experiments, copy_figures(experiments, out)))
    print(f"wrote {out}")
    return doc["exit_status"]


class LazyParser(argparse.ArgumentParser):
    """An argparse parser whose arguments may be added on first use (``populate(parser)``, called
    before it parses or prints its help), so that building the whole command tree imports no
    subcommand's module: ``mdm-props --help`` lists the subcommands without importing torch."""

    def __init__(self, *args, populate=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._populate = populate

    def _ready(self) -> None:
        populate, self._populate = self._populate, None
        if populate is not None:
            populate(self)

    def parse_known_args(self, args=None, namespace=None):
        self._ready()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._ready()
        return super().format_help()

    def format_usage(self) -> str:
        self._ready()
        return super().format_usage()


def _certify_arguments(parser: argparse.ArgumentParser) -> None:
    from . import certified

    certified.add_certify_arguments(parser)


def _reversal_arguments(parser: argparse.ArgumentParser) -> None:
    from . import reversal_report

    reversal_report.add_arguments(parser)


def _entities_arguments(parser: argparse.ArgumentParser) -> None:
    from . import entities_report

    entities_report.add_arguments(parser)


def _probe_arguments(parser: argparse.ArgumentParser) -> None:
    from .probe import add_probe_arguments

    class _This:  # add_probe_arguments makes its parser with subparsers.add_parser: hand it this one
        @staticmethod
        def add_parser(name, **kwargs):
            parser.description = parser.description or kwargs.get("description")
            return parser

    add_probe_arguments(_This())


def build_parser() -> argparse.ArgumentParser:
    parser = LazyParser(prog="mdm-props", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mdm_props {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    v = sub.add_parser("verify", help="check every registered claim and print a report")
    v.add_argument(
        "--claims",
        help="comma-separated claim ids or families, e.g. C1,C3 or C1b (default: all); "
        "an exact id wins: C3 is the claim C3 alone, C3v is selected by its own id",
    )
    v.add_argument(
        "--examples",
        type=budget_type("verify --examples"),
        help="draws per claim, at most {:,} (default: each claim's own default); negative controls keep their "
        "own search budget".format(BUDGETS["verify --examples"]),
    )
    v.add_argument(
        "--seed", type=seed_type(), default=0, help="master seed (default 0; < 2**64); same seed, same numbers"
    )
    v.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cpu (default) or cuda")
    v.add_argument(
        "--json",
        metavar="PATH",
        help="also write the report as JSON to PATH (a .json file in an existing folder, checked before any work; "
        'rewritten after every row, "complete": false until the last)',
    )
    v.add_argument(
        "--replay",
        nargs=2,
        metavar=("JSON", "ROW"),
        help="re-run the draw recorded in row ROW (a claim id) of a --json report and print its checks",
    )
    v.set_defaults(func=cmd_verify, subparser=v)

    b = sub.add_parser("bench", help="time the per-draw loop against the batched path, per claim (not run by CI)")
    b.add_argument(
        "--claims", default=None, help="comma-separated batched claim ids (default: every claim with a batched path)"
    )
    b.add_argument(
        "--sweep",
        default=None,
        metavar="CLAIM",
        help="the claim the --sizes sweep runs on (default: the first of --claims)",
    )
    b.add_argument(
        "--draws",
        type=budget_type("bench --draws"),
        default=10000,
        help="draws for the batched path (default 10000, at most {:,})".format(BUDGETS["bench --draws"]),
    )
    b.add_argument(
        "--per-draw",
        type=budget_type("bench --per-draw"),
        default=200,
        help="draws timed one by one (the first of the same draws; default 200, at most {:,})".format(
            BUDGETS["bench --per-draw"]
        ),
    )
    b.add_argument(
        "--sizes",
        default="",
        help="batch sizes to sweep, e.g. 1,4,16,64,250,1000 (default: none; each at most {:,})".format(
            BUDGETS["bench --sizes"]
        ),
    )
    b.add_argument(
        "--plot", metavar="PNG", help="draws/s against batch size, a .png file (needs --sizes and matplotlib)"
    )
    b.add_argument("--seed", type=seed_type(), default=0, help="master seed (default 0; < 2**64)")
    b.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    b.set_defaults(func=cmd_bench, subparser=b)

    e = sub.add_parser("explain", help="print a claim's statement, hypotheses, kind and doc page")
    e.add_argument("claim", help="claim id, e.g. C3, or a family, e.g. C1")
    e.set_defaults(func=cmd_explain, subparser=e)

    p = sub.add_parser("plot", help="draw a figure")
    p.add_argument(
        "figure",
        choices=("corr", "depth"),
        help="corr: C2a correlation tr(R_g)/d_k against d_k and offset; "
        "depth: C7 alignment rate against init scale, one line per depth, MDM and ARM",
    )
    p.add_argument("--out", required=True, help="output .png file, in an existing folder")
    p.set_defaults(func=cmd_plot, subparser=p)

    c = sub.add_parser(
        "certify",
        help="prove a claim on concrete draws in ball arithmetic (needs python-flint)",
        populate=_certify_arguments,
    )
    c.set_defaults(func=cmd_certify, subparser=c)

    x = sub.add_parser("experiment", help="run a controlled training experiment")
    xs = x.add_subparsers(dest="experiment", required=True)
    r = xs.add_parser(
        "reversal", help="MDM vs ARM reverse accuracy across positional encodings", populate=_reversal_arguments
    )
    r.set_defaults(func=cmd_reversal, subparser=r)

    e = xs.add_parser(
        "entities",
        help="E2: reverse accuracy of k-token facts against k, depth and masking",
        populate=_entities_arguments,
    )
    e.set_defaults(func=cmd_entities, subparser=e)

    rp = sub.add_parser("report", help="run verify and write the results page (docs/results.md), stamped")
    rp.add_argument("--out", default="docs/results.md", help="the .md file to write (default docs/results.md)")
    rp.add_argument("--seed", type=seed_type(), default=0, help="verify's master seed (default 0; < 2**64)")
    rp.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cpu (default) or cuda")
    rp.add_argument(
        "--experiment",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="an experiment's output folder whose table.md goes on the page (repeatable)",
    )
    rp.set_defaults(func=cmd_report, subparser=rp)

    sub.add_parser(
        "probe",
        help="the mechanism's signatures, layer by layer, in a bidirectional model",
        populate=_probe_arguments,
    )
    return parser


def main(argv=None) -> int:
    """Parse ``argv`` and run the subcommand; Ctrl-C exits 130 with one line (:func:`arguments.interruptible`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command = " ".join(["mdm-props", args.command] + ([args.experiment] if args.command == "experiment" else []))
    # errors print the subcommand's usage
    return interruptible(command, lambda: args.func(args, getattr(args, "subparser", parser)))
