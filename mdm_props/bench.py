"""``mdm-props bench``: the per-draw loop against the batched path, on the same draws, per claim.

For each batched claim the draws are those of :func:`mdm_props.batched.sample_batches` (a structure and K
parameter draws per batch); the batched checker runs on all of them, the per-draw checker on the first
``per_draw`` of them (the same cases, one call each). Times are CPU seconds of this process
(``time.process_time``: the machine may be shared) with one intra-op thread, as ``verify`` runs.
"""

from __future__ import annotations

import functools
import platform
import time

import torch

from . import batched, claim, registry
from .progress import Progress
from .search import case_args
from .strategies import N_HEADS


def _benched() -> dict[str, tuple]:
    """claim: (batched checker, per-draw checker, per-draw arguments of a Case, sample_batches options) for
    every claim declared as a :class:`~mdm_props.claim.Spec` (each has a batched path)."""
    return {
        s.id: (
            functools.partial(claim.check_batch, s),
            registry.resolve(registry.get(s.id).checker),
            s.case_args or case_args,
            {"step": s.step, **{k: v for k, v in s.sample.items() if k != "n_heads"}},
        )
        for s in claim.specs()
    }


BENCHED: dict[str, tuple] = _benched()


def machine() -> str:
    """A one-line description of this machine."""
    import os

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} intra-op thread), "
        f"Python {platform.python_version()}"
    )


def bench_claim(
    claim: str, draws: int, per_draw: int, seed: int = 0, batch_size: int = batched.BATCH_SIZE, device: str = "cpu"
) -> dict:
    """Draws/s of the per-draw loop (first ``per_draw`` draws) and of the batched path (all ``draws``)."""
    check_batch, check, args, options = BENCHED[claim]
    batches = list(batched.sample_batches(draws, seed, batch_size, n_heads=N_HEADS, **options))
    check_batch(batches[0], device)  # warm-up: first-call costs of vmap and grad are not per-draw work
    start = time.process_time()
    n = 0
    for b in batches:
        for i in range(b.size):
            if n == per_draw:
                break
            check(*args(b.case(i), device), *(() if b.etas is None else (b.etas[i],)))
            n += 1
    t_per = time.process_time() - start
    start = time.process_time()
    worst = min(check_batch(b, device).worst[1] for b in batches)
    t_bat = time.process_time() - start
    per_rate, bat_rate = n / t_per, draws / t_bat
    return {
        "claim": claim,
        "draws": draws,
        "batch_size": batch_size,
        "per_draw_draws": n,
        "per_draw_per_s": per_rate,
        "batched_per_s": bat_rate,
        "ratio": bat_rate / per_rate,
        "batched_seconds": t_bat,
        "worst_margin": worst,
    }


def sweep(claim: str, sizes, draws: int, seed: int = 0, device: str = "cpu") -> list[tuple[int, float]]:
    """(batch size, batched draws/s) for each batch size: ``draws`` draws each."""
    check_batch, _, _, options = BENCHED[claim]
    out = []
    check_batch(next(batched.sample_batches(4, seed, 4, n_heads=N_HEADS, **options)), device)  # warm-up
    for k in sizes:
        batches = list(batched.sample_batches(draws, seed, k, n_heads=N_HEADS, **options))
        start = time.process_time()
        for b in batches:
            check_batch(b, device)
        out.append((k, draws / (time.process_time() - start)))
    return out


def run(claims, draws: int, per_draw: int, seed: int, device: str, sizes, plot, out, swept=None) -> list[dict]:
    """The table of :func:`bench_claim` per claim, then the sweep over ``sizes`` of claim ``swept`` (default the first),
    drawn to the PNG file ``plot`` when given (the command checks it, and matplotlib, before any work)."""
    torch.set_num_threads(1)
    print(f"machine: {machine()}", file=out)
    rows = []
    print(
        f"{'claim':<6} {'draws':>7} {'per-draw/s':>11} {'batched/s':>10} {'ratio':>7} {'batched s':>10} "
        f"{'worst margin':>13}",
        file=out,
    )
    with Progress(len(claims) + (1 if sizes else 0), "bench") as bar:  # on stderr; the table goes to ``out``
        for c in claims:
            r = bench_claim(c, draws, per_draw, seed, device=device)
            rows.append(r)
            print(
                f"{c:<6} {draws:>7} {r['per_draw_per_s']:>11.1f} {r['batched_per_s']:>10.0f} {r['ratio']:>7.1f} "
                f"{r['batched_seconds']:>10.2f} {r['worst_margin']:>13.3g}",
                file=out,
                flush=True,
            )
            bar.update(1, c)
        swept_ids = [swept or claims[0]]
        curves = {c: sweep(c, sizes, 2 * max(sizes), seed, device) for c in swept_ids} if sizes else {}
        bar.update(1 if sizes else 0, "sweep")
    if sizes:
        for c, pts in curves.items():
            print(f"{c} draws/s by batch size: " + ", ".join(f"{k}: {v:.0f}" for k, v in pts), file=out)
        if plot:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(5, 3.5))
            for c, pts in curves.items():
                ax.plot([k for k, _ in pts], [v for _, v in pts], marker="o", label=c)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("batch size K (draws per structure)")
            ax.set_ylabel("batched draws per CPU second")
            ax.legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(plot, dpi=120)
            print(f"wrote {plot}", file=out)
    return rows
