"""The report of the reversal experiment (:mod:`mdm_props.reversal`): its markdown tables, CSV and
JSON files and signature figure, and the ``mdm-props experiment reversal`` command, whose flags are
derived from the fields of :class:`~mdm_props.reversal.ExperimentConfig`."""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from . import options
from .arguments import SEED_MAX, require_output_dir
from .params import resolve_device
from .reversal import (
    ENCODINGS,
    METRICS,
    REGIMES,
    SIGNATURES,
    ExperimentConfig,
    ExperimentResults,
    RunResult,
    run_reversal_experiment,
)
from .validation import require_seed

# ---------------------------------------------------------------------------------------------
# tables


def markdown(results: ExperimentResults) -> str:
    """The regime × encoding table: mean (min–max) over seeds."""
    c = results.config
    head = "| regime | encoding | forward acc | reverse acc | reverse log p(A) |\n|---|---|---|---|---|\n"
    body = ""
    for row in results.summary():
        cells = [
            f"{row[f'{m}_mean']:.{d}f} ({row[f'{m}_min']:.{d}f}–{row[f'{m}_max']:.{d}f})"
            for m, d in (("forward_acc", 2), ("reverse_acc", 2), ("reverse_logp", 2))
        ]
        enc = row["encoding"] + (f" ({row['diverged']}/{row['seeds']} diverged)" if row["diverged"] else "")
        body += f"| {row['regime']} | {enc} | " + " | ".join(cells) + " |\n"
    note = (
        f"\nmean (min–max) over {c.seeds} seeds; N = {c.pairs} pairs, d = {c.d_model}, d_k = {c.d_head}, "
        f"{c.steps} full-batch {c.optimizer} steps, lr {c.lr:g} ({c.schedule}), "
        f"{'tied' if c.tied else 'untied'} unembedding, float64 on {c.device}; "
        f"chance accuracy 1/V = {1 / (2 * c.pairs + 1):.3f}; a diverged run (non-finite loss) is counted, "
        f"not averaged\n"
    )
    return head + body + note


def _span(runs: list[RunResult], key: str, spec: str) -> str:
    """'first → last' logged value of ``key``, each a mean over the runs (seeds)."""
    first = statistics.fmean(r.history[0][key] for r in runs)
    last = statistics.fmean(r.history[-1][key] for r in runs)
    return f"{first:{spec}} → {last:{spec}}"


def signature_markdown(results: ExperimentResults) -> str:
    """The logged signatures per (regime, encoding), means over seeds: at initialisation → at the end."""
    head = (
        "| regime | encoding | attn→entity fwd | attn→entity rev | corr(S_f, S_r) | ⟨G_f, G_r⟩ | "
        "runs with ⟨G_f, G_r⟩ < 0 | ε(A←B) |\n|---|---|---|---|---|---|---|---|\n"
    )
    body = ""
    for regime in results.config.regimes:
        for encoding in results.config.encodings:
            runs = results.cell(regime, encoding)
            if not runs:
                continue
            negative = sum(any(h["storage_inner"] < 0 for h in r.history) for r in runs)
            body += (
                f"| {regime} | {encoding} | {_span(runs, 'attn_fwd', '.2f')} | {_span(runs, 'attn_rev', '.2f')} | "
                f"{_span(runs, 'score_corr', '.2f')} | {_span(runs, 'storage_inner', '.2g')} | "
                f"{negative}/{len(runs)} | {_span(runs, 'evidence', '.2f')} |\n"
            )
    note = "means over seeds, at step 0 → at the last step; ⟨G_f, G_r⟩ < 0 counted over all logged steps"
    return head + body + f"\n{note}\n"


# ---------------------------------------------------------------------------------------------
# outputs


def write_outputs(results: ExperimentResults, out_dir, *, plot: bool = True, complete: bool = True) -> dict[str, Path]:
    """Write ``runs.csv`` (one row per run), ``summary.csv``, ``signatures.csv`` (the logged
    histories), ``results.json`` (config, summary, runs with histories, ``complete``: False for the
    runs that finished before an interruption), ``table.md`` and, when ``plot`` and matplotlib is
    importable, ``signatures.png``. ``out_dir`` is created if missing (its parent must exist).
    Returns the paths written."""
    out = require_output_dir("out_dir", out_dir)
    out.mkdir(exist_ok=True)
    paths = {}
    run_fields = ["regime", "encoding", "seed", *METRICS, "final_loss", "diverged", "seconds"]
    run_rows = [{k: getattr(r, k) for k in run_fields} for r in results.runs]
    paths["runs.csv"] = _write_csv(out / "runs.csv", run_fields, run_rows)
    summary = results.summary()
    paths["summary.csv"] = _write_csv(out / "summary.csv", list(summary[0]), summary)
    hist_fields = ["regime", "encoding", "seed", "step", "loss", *METRICS, *SIGNATURES]
    hist = [{"regime": r.regime, "encoding": r.encoding, "seed": r.seed} | h for r in results.runs for h in r.history]
    paths["signatures.csv"] = _write_csv(out / "signatures.csv", hist_fields, hist)
    doc = {
        "complete": complete,
        "config": asdict(results.config),
        "seconds": results.seconds,
        "torch": torch.__version__,
        "summary": summary,
        "runs": [asdict(r) | {"diverged": r.diverged} for r in results.runs],
    }
    paths["results.json"] = out / "results.json"
    paths["results.json"].write_text(json.dumps(_finite_or_none(doc), indent=1, allow_nan=False) + "\n")
    paths["table.md"] = out / "table.md"
    incomplete = "" if complete else f"INCOMPLETE: interrupted after {len(results.runs)} runs\n\n"
    paths["table.md"].write_text(incomplete + markdown(results) + "\n" + signature_markdown(results))
    if plot:
        png = plot_signatures(results, out / "signatures.png")
        if png is not None:
            paths["signatures.png"] = png
    return paths


def _finite_or_none(x):
    """JSON has no NaN or infinity: a diverged run's non-finite numbers are written as null."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_or_none(v) for v in x]
    return x


def _write_csv(path: Path, fields: list[str], rows: list[dict]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return path


_PANELS = (
    ("reverse_acc", "reverse accuracy"),
    ("attn_fwd", "attention to entity, forward"),
    ("attn_rev", "attention to entity, reverse"),
    ("score_corr", "corr(S_f, S_r) across pairs"),
    ("storage_inner", "⟨G_f, G_r⟩ (mean over pairs)"),
    ("evidence", "ε(A←B) = u_Aᵀ W_OV x_B"),
)


def plot_signatures(results: ExperimentResults, path) -> Path | None:
    """A grid of the logged signatures against the training step, mean over seeds, one line per
    regime × encoding (colour = encoding, line style = regime). Returns None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    c = results.config
    fig, axes = plt.subplots(2, 3, figsize=(11, 6), sharex=True)
    styles = dict(zip(REGIMES, ("-", "--", ":"), strict=True))
    colours = dict(zip(ENCODINGS, ("C0", "C1", "C2", "C3", "C4"), strict=True))
    for ax, (key, title) in zip(axes.flat, _PANELS, strict=True):
        for regime in c.regimes:
            for encoding in c.encodings:
                runs = results.cell(regime, encoding)
                if not runs:
                    continue
                steps = [h["step"] for h in runs[0].history]
                mean = [statistics.fmean(r.history[i][key] for r in runs) for i in range(len(steps))]
                ax.plot(steps, mean, styles[regime], color=colours[encoding], lw=1.2, label=f"{regime}/{encoding}")
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        if key == "storage_inner":
            ax.set_yscale("symlog", linthresh=1e-3)
    for ax in axes[-1]:
        ax.set_xlabel("step", fontsize=8)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=7, frameon=False)
    fig.suptitle(
        f"one-layer reversal experiment: N = {c.pairs}, d = {c.d_model}, d_k = {c.d_head}, {c.optimizer}, "
        f"mean over {c.seeds} seeds",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.1, 1, 0.96))
    path = Path(path)
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# command line: `mdm-props experiment reversal ...`


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mdm-props experiment reversal``: one per field of ExperimentConfig (see
    :func:`mdm_props.options.add_arguments`), then where and how to report."""
    options.add_arguments(parser, ExperimentConfig)
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="write runs.csv, summary.csv, signatures.csv, results.json, table.md, signatures.png",
    )
    parser.add_argument("--no-plot", action="store_true", help="do not draw signatures.png")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """The configuration that parsed ``args`` describe (a ValueError names a bad field)."""
    return options.from_args(ExperimentConfig, args)


def prepare_out_dir(out) -> Path:
    """Check ``out`` as an output directory (:func:`mdm_props.arguments.require_output_dir`: not empty,
    not a file, its parent exists), create it if needed and check that files can be written into it,
    before any training: a ValueError names ``--out`` and the problem (e.g. a read-only disk)."""
    path = require_output_dir("--out", out)
    try:
        path.mkdir(exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ValueError(f"--out: cannot write into {str(path)!r} ({err.strerror or err})") from None
    return path


def check_seeds(config: ExperimentConfig) -> None:
    """Run i uses seed ``seed + i``: every one must be a 64-bit seed (``--seed`` at most 2**64 − seeds)."""
    require_seed("--seed", config.seed, maximum=SEED_MAX - (config.seeds - 1))


def run_from_args(args, parser: argparse.ArgumentParser | None = None) -> int:
    """Run the experiment described by parsed ``args``: progress on stderr, the table on stdout,
    files under ``--out`` (checked before any training). A refused configuration exits 2 with the
    subcommand's usage (``parser.error``; without a parser: a message and return 2). A run that
    diverges is reported as diverged; an interrupted experiment writes the runs that finished."""
    try:
        config = config_from_args(args)
        check_seeds(config)
        if config.device != "cpu":
            resolve_device(config.device)
        if args.out is not None:
            prepare_out_dir(args.out)
    except ValueError as err:
        if parser is not None:
            parser.error(str(err))
        print(f"mdm-props experiment reversal: error: {err}", file=sys.stderr)
        return 2

    finished: list[RunResult] = []

    def progress(i: int, n: int, run: RunResult) -> None:
        finished.append(run)
        if args.quiet:
            return
        state = "DIVERGED (non-finite loss), " if run.diverged else ""
        print(
            f"[{i:>3}/{n}] {run.regime:<11} {run.encoding:<8} seed {run.seed}: {state}loss {run.final_loss:.3g}, "
            f"forward acc {run.forward_acc:.2f}, reverse acc {run.reverse_acc:.2f} ({run.seconds:.1f} s)",
            file=sys.stderr,
            flush=True,
        )

    print(
        f"training {len(config.regimes) * len(config.encodings) * config.seeds} one-layer models "
        f"({config.optimizer}, {config.steps} full-batch steps, float64, {config.device})",
        file=sys.stderr,
    )
    start = time.perf_counter()
    try:
        results = run_reversal_experiment(config, progress=progress)
    except BaseException:  # an error or Ctrl-C: keep the runs that finished, then re-raise
        if args.out is not None and finished:
            partial = ExperimentResults(config, finished, time.perf_counter() - start)
            paths = write_outputs(partial, args.out, plot=False, complete=False)
            print(
                f'interrupted after {len(finished)} runs; wrote them (results.json: "complete": false) to '
                + ", ".join(str(p) for p in paths.values()),
                file=sys.stderr,
            )
        raise
    diverged = [r for r in results.runs if r.diverged]
    if diverged:
        print(
            f"warning: {len(diverged)}/{len(results.runs)} runs diverged (non-finite loss): "
            + ", ".join(f"{r.regime}/{r.encoding}/seed {r.seed}" for r in diverged),
            file=sys.stderr,
        )
    print(markdown(results))
    print(signature_markdown(results), end="")
    print(f"\nwall time {results.seconds:.1f} s")
    if args.out is not None:
        paths = write_outputs(results, args.out, plot=not args.no_plot)
        if not args.no_plot and "signatures.png" not in paths:
            print("note: matplotlib is not installed; signatures.png skipped (pip install mdm_props[plot])")
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
