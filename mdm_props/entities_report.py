"""E2's run, files and command: ``mdm-props experiment entities --out DIR``
(the experiment itself is :mod:`mdm_props.entities_experiment`).

Writes, under ``--out``: ``results.json`` (after every job, ``"complete": false`` until the grid is
done: one record per (k, regime, encoding, depth, seed) with the four reverse accuracies and their
Clopper–Pearson intervals, the forward exact accuracy and the logged per-layer history; a summary
per cell pooled over the seeds that did not diverge), ``table.md``, the figures ``accuracy_vs_k.png``
and ``layer_cosine.png`` (matplotlib, the ``plot`` extra) and ``checkpoints/`` (transformers
checkpoints of the RoPE runs: :mod:`mdm_props.checkpoints`; LLaDA format for the MDM regimes, a
plain Llama for the ARM, each with its initialisation beside it in ``<name>@init``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from . import options
from .checkpoints import save_checkpoint
from .entities_experiment import (
    ACCURACIES,
    CHECKPOINT_ENCODINGS,
    DEFAULT_KS,
    DEPTH_CHOICES,
    K_CHOICES,
    MDM_REGIMES,
    EntitiesConfig,
    RunRecord,
    run_job,
)
from .params import init_params, resolve_device
from .progress import Progress
from .reversal_report import prepare_out_dir
from .statistics import clopper_pearson

# ---------------------------------------------------------------------------------------------
# the grid


def checkpoint_name(r: RunRecord) -> str:
    return f"k{r.k}-{r.regime}-{r.encoding}-d{r.depth}-s{r.seed}"


def wants_checkpoint(config: EntitiesConfig, encoding: str, index: int) -> bool:
    """Saved: RoPE runs only (the formats express no other encoding), seed index 0 (``first-seed``) or all."""
    if config.checkpoints == "none" or encoding not in CHECKPOINT_ENCODINGS:
        return False
    return config.checkpoints == "all" or index == 0


def run_grid(config: EntitiesConfig, out: Path | None, on_job=None) -> list[RunRecord]:
    """Every job of ``config``; after each, ``on_job(records_so_far)``. Checkpoints go to ``out``."""
    records: list[RunRecord] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        for k, regime, encoding, depth in config.jobs:
            recs, params = run_job(config, k, regime, encoding, depth)
            cfg = config.model_config(k, regime, encoding, depth)
            for i, (rec, p) in enumerate(zip(recs, params, strict=True)):
                if out is not None and wants_checkpoint(config, encoding, i):
                    fmt = "llada" if regime in MDM_REGIMES else "llama"
                    path = out / "checkpoints" / checkpoint_name(rec)
                    save_checkpoint(path, p, cfg, fmt)
                    save_checkpoint(f"{path}@init", init_params(cfg, rec.seed), cfg, fmt)
                    rec.checkpoint = str(path.relative_to(out))
            records.extend(recs)
            if on_job is not None:
                on_job(records)
    finally:
        torch.set_num_threads(threads)
    return records


def summary(records: list[RunRecord]) -> list[dict]:
    """One row per (k, regime, encoding, depth): each reverse accuracy pooled over the seeds that did
    not diverge (successes and trials summed; Clopper–Pearson at 1e-6), and the forward exact mean."""
    cells: dict[tuple, list[RunRecord]] = {}
    for r in records:
        cells.setdefault((r.k, r.regime, r.encoding, r.depth), []).append(r)
    rows = []
    for (k, regime, encoding, depth), runs in cells.items():
        kept = [r for r in runs if not r.diverged]
        row: dict = {"k": k, "regime": regime, "encoding": encoding, "depth": depth, "seeds": len(runs)}
        row["diverged"] = len(runs) - len(kept)
        row["forward_exact"] = sum(r.forward_exact for r in kept) / len(kept) if kept else math.nan
        for a in ACCURACIES:
            s = sum(r.reverse[a]["successes"] for r in kept)
            n = sum(r.reverse[a]["trials"] for r in kept)
            row[a] = {"rate": s / n, "successes": s, "trials": n, "ci": list(clopper_pearson(s, n))} if n else None
        rows.append(row)
    return rows


def results_document(config: EntitiesConfig, records: list[RunRecord], seconds: float, complete: bool) -> dict:
    return {
        "experiment": "entities",
        "complete": complete,
        "config": asdict(config),
        "jobs": len(config.jobs),
        "jobs_done": len({(r.k, r.regime, r.encoding, r.depth) for r in records}),
        "seconds": seconds,
        "torch": torch.__version__,
        "checkpoints_note": (
            "transformers checkpoints are written for RoPE runs only: LLaDA's and Llama's configs and tensors "
            "express no ALiBi slopes, T5 buckets, learned absolute positions or position-free attention"
        ),
        "summary": summary(records),
        "records": [asdict(r) for r in records],
    }


def _finite_or_null(x):
    """Standard JSON: a NaN or infinite float (a diverged run, an undefined correlation) becomes null."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite_or_null(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_or_null(v) for v in x]
    return x


def write_results(out: Path, doc: dict) -> Path:
    """Write ``results.json`` atomically (a temporary file renamed over it); non-finite floats as null."""
    path = out / "results.json"
    tmp = out / ".results.json.tmp"
    tmp.write_text(json.dumps(_finite_or_null(doc), indent=1, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------------------------
# tables and figures


def _cell(stat: dict | None) -> str:
    if stat is None:
        return "–"
    lo, hi = stat["ci"]
    return f"{stat['rate']:.2f} [{lo:.2f}, {hi:.2f}]"


def markdown(config: EntitiesConfig, rows: list[dict], accuracy: str = "exact") -> str:
    """Per depth and encoding: regime × k of the pooled reverse ``accuracy`` [Clopper–Pearson 1e-6],
    with the forward exact accuracy in parentheses."""
    by = {(r["k"], r["regime"], r["encoding"], r["depth"]): r for r in rows}
    out = []
    for depth in config.depths:
        for enc in config.encodings:
            present = [(k, reg) for k in config.ks for reg in config.regimes if (k, reg, enc, depth) in by]
            if not present:
                continue
            out.append(f"\n**depth {depth}, {enc}**: reverse {accuracy} [99.9999% CI] (forward exact)\n")
            out.append("| regime | " + " | ".join(f"k = {k}" for k in config.ks) + " |")
            out.append("|---|" + "---|" * len(config.ks))
            for reg in config.regimes:
                cells = []
                for k in config.ks:
                    r = by.get((k, reg, enc, depth))
                    if r is None:
                        cells.append("")
                        continue
                    div = f" {r['diverged']} diverged" if r["diverged"] else ""
                    cells.append(f"{_cell(r[accuracy])} ({r['forward_exact']:.2f}){div}")
                out.append(f"| {reg} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def plot_figures(config: EntitiesConfig, records: list[RunRecord], rows: list[dict], out: Path) -> list[Path]:
    """``accuracy_vs_k.png`` (reverse exact against k, one line per regime, and dashed the reversed-order
    accuracy, rev(A); a panel per depth × encoding) and ``layer_cosine.png`` (per-layer storage-gradient
    cosine over training, mean over seeds, RoPE at the largest depth; a panel per regime × k). Needs
    matplotlib (the ``plot`` extra)."""
    from .plots import pyplot

    plt = pyplot()
    paths = []
    by = {(r["k"], r["regime"], r["encoding"], r["depth"]): r for r in rows}
    nd, ne = len(config.depths), len(config.encodings)
    fig, axes = plt.subplots(nd, ne, figsize=(3 * ne, 2.6 * nd), squeeze=False, sharey=True)
    for i, depth in enumerate(config.depths):
        for j, enc in enumerate(config.encodings):
            ax = axes[i][j]
            for reg in config.regimes:
                ks = [k for k in config.ks if by.get((k, reg, enc, depth)) and by[(k, reg, enc, depth)]["exact"]]
                ys = [by[(k, reg, enc, depth)]["exact"]["rate"] for k in ks]
                (line,) = ax.plot(ks, ys, marker="o", label=reg)
                rs = [by[(k, reg, enc, depth)]["reversed"]["rate"] for k in ks]
                ax.plot(ks, rs, marker="x", ls="--", color=line.get_color())
            ax.set_title(f"{enc}, depth {depth}", fontsize=9)
            ax.set_ylim(-0.05, 1.05)
            ax.set_xticks(list(config.ks))
            if i == nd - 1:
                ax.set_xlabel("entity length k")
            if j == 0:
                ax.set_ylabel("reverse acc. (dashed: rev(A))")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    paths.append(out / "accuracy_vs_k.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    enc = "rope" if "rope" in config.encodings else config.encodings[0]
    depth = max(config.depths)
    nk, nr = len(config.ks), len(config.regimes)
    fig, axes = plt.subplots(nk, nr, figsize=(3 * nr, 2.3 * nk), squeeze=False, sharey=True)
    for i, k in enumerate(config.ks):
        for j, reg in enumerate(config.regimes):
            ax = axes[i][j]
            runs = [
                r
                for r in records
                if (r.k, r.regime, r.encoding, r.depth) == (k, reg, enc, depth) and not r.diverged and r.history
            ]
            if runs:
                steps = [h["step"] for h in runs[0].history]
                for layer in range(depth):
                    ys = [
                        sum(r.history[t]["cos"][layer] for r in runs) / len(runs) for t in range(len(runs[0].history))
                    ]
                    ax.plot(steps, ys, label=f"layer {layer + 1}")
            ax.axhline(0, color="grey", lw=0.5)
            ax.set_title(f"{reg}, k = {k}", fontsize=9)
            if i == nk - 1:
                ax.set_xlabel("step")
            if j == 0:
                ax.set_ylabel("cos(∇S f, ∇S r)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"storage-gradient cosine of the forward and reverse queries per layer ({enc}, depth {depth})")
    fig.tight_layout()
    paths.append(out / "layer_cosine.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


# ---------------------------------------------------------------------------------------------
# the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mdm-props experiment entities``: ``--ks``, ``--depths``, one flag per other
    field of EntitiesConfig (:func:`mdm_props.options.add_arguments`), ``--out``, ``--no-plot``, ``--quiet``."""
    parser.add_argument(
        "--ks",
        type=int,
        nargs="+",
        choices=K_CHOICES,
        default=list(DEFAULT_KS),
        metavar="K",
        help="entity lengths k (default 1 2 3)",
    )
    parser.add_argument(
        "--depths",
        type=int,
        nargs="+",
        choices=DEPTH_CHOICES,
        default=[1, 2, 4],
        metavar="L",
        help="depths of the LLaDA-like block (default 1 2 4)",
    )
    options.add_arguments(parser, EntitiesConfig)
    parser.add_argument("--out", metavar="DIR", required=True, help="results.json, table.md, figures, checkpoints/")
    parser.add_argument("--no-plot", action="store_true", help="do not draw the figures")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def config_from_args(args: argparse.Namespace) -> EntitiesConfig:
    kwargs = {f: getattr(args, f) for f in ("ks", "depths")}
    fields = {f.name for f in EntitiesConfig.__dataclass_fields__.values() if f.metadata.get("flag") is not None}
    kwargs |= {name: getattr(args, name) for name in fields if hasattr(args, name)}
    return EntitiesConfig(**kwargs)


def run_from_args(args, parser: argparse.ArgumentParser | None = None) -> int:
    """Validate everything (exit 2 before any training), run the grid with a progress bar, write the
    files; a diverged run is reported and the others kept; Ctrl-C leaves ``results.json`` with
    ``"complete": false`` and exits 130 with one line."""
    try:
        config = config_from_args(args)
        if config.device != "cpu":
            resolve_device(config.device)
        out = prepare_out_dir(args.out)
    except ValueError as err:
        if parser is not None:
            parser.error(str(err))
        print(f"mdm-props experiment entities: error: {err}", file=sys.stderr)
        return 2
    jobs = config.jobs
    start = time.perf_counter()
    records: list[RunRecord] = []
    bar = Progress(len(jobs), "entities", quiet=args.quiet)

    def on_job(done: list[RunRecord]) -> None:
        records[:] = done
        write_results(out, results_document(config, done, time.perf_counter() - start, complete=False))
        last = done[-1]
        bar.update(1, f"k={last.k} {last.regime} {last.encoding} depth {last.depth}")

    try:
        with bar:
            run_grid(config, out, on_job)
    except KeyboardInterrupt:
        write_results(out, results_document(config, records, time.perf_counter() - start, complete=False))
        print(
            f"interrupted: {len({(r.k, r.regime, r.encoding, r.depth) for r in records})}/{len(jobs)} cells done; "
            f"{out / 'results.json'} is marked incomplete",
            file=sys.stderr,
        )
        return 130
    seconds = time.perf_counter() - start
    doc = results_document(config, records, seconds, complete=True)
    write_results(out, doc)
    diverged = [r for r in records if r.diverged]
    if diverged:
        print(
            f"warning: {len(diverged)}/{len(records)} runs diverged (non-finite loss or parameters), "
            "kept in results.json and left out of the summary: "
            + ", ".join(f"k={r.k}/{r.regime}/{r.encoding}/depth {r.depth}/seed {r.seed}" for r in diverged),
            file=sys.stderr,
        )
    table = markdown(config, doc["summary"])
    (out / "table.md").write_text(table)
    print(table)
    if not args.no_plot:
        try:
            for p in plot_figures(config, records, doc["summary"], out):
                print(f"wrote {p}", file=sys.stderr)
        except ImportError as err:
            print(f"no figures: {err}", file=sys.stderr)
    print(f"{len(records)} runs, {len(jobs)} cells, wall time {seconds:.1f} s; results in {out / 'results.json'}")
    return 0
