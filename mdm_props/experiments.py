"""Controlled one-layer experiments: the reversal curse in a masked diffusion model versus an ARM.

``mdm-props experiment reversal`` trains small one-layer, one-head models (float64) on N synthetic
facts "A r B" (:func:`mdm_props.training.fact_pairs`: disjoint subjects and objects, one relation
token) under three regimes and five positional encodings, for several seeds:

* ``mdm-forward``: the masked loss of the forward configuration only, (M, r, B) → A at slot a;
  the reverse query (B, r, M) → A is never trained.
* ``mdm-full``: the masked-diffusion objective of "A r B" over all 7 masks, exactly, with the
  1/(k·C(L, k)) weights of THEORY C0.4 (B never sits in slot a, so the reverse query is not
  trained either).
* ``arm``: causal next-token training (``attention="causal"``, :func:`mdm_props.facts.arm_loss`).

It measures forward and reverse accuracy (argmax over the real tokens at the query slot), the mean
reverse log-probability log p(A), and logs the mechanism's signatures during training: token-aligned
attention to the given entity in both queries, the across-pair correlation of the forward and
reverse query→entity scores, the shared-storage inner product ⟨G_f, G_r⟩ (G = ∂L/∂W_OV by
autograd, per pair) and the stored evidence ε(A←B) = u_Aᵀ W_OV x_B. See ``docs/experiments.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .facts import (
    Template,
    all_masks,
    arm_forward_query,
    arm_loss,
    arm_reverse_query,
    batched_query_logprobs,
    canonical_template,
    forward_query,
    masked_token_nll,
    mdm_mask_weight,
    reverse_query,
    stack_queries,
)
from .model import POSITIONAL_ENCODINGS, ModelConfig, forward, unembedding
from .params import init_params, resolve_device
from .training import OPTIMIZERS, cosine_factor, fact_pairs, train

REGIMES = ("mdm-forward", "mdm-full", "arm")
ENCODINGS = POSITIONAL_ENCODINGS  # rope, alibi, t5, none, absolute (learned)
SIGNATURES = ("attn_fwd", "attn_rev", "score_corr", "storage_inner", "evidence")
METRICS = ("forward_acc", "reverse_acc", "reverse_logp")
SCHEDULES = ("cosine", "constant")


# ---------------------------------------------------------------------------------------------
# configuration


def _int_at_least(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return value


def _positive_number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return float(value)


def _subset(name: str, values, allowed) -> tuple[str, ...]:
    values = (values,) if isinstance(values, str) else tuple(values)
    if not values:
        raise ValueError(f"{name} must name at least one of {', '.join(allowed)}; got none")
    for v in values:
        if v not in allowed:
            raise ValueError(f"{name}: unknown value {v!r}; allowed values are {', '.join(allowed)}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat a value; got {list(values)}")
    return values


@dataclass(frozen=True)
class ExperimentConfig:
    """Every knob of the reversal experiment; validated on construction (ValueError names the field).

    Run ``(regime, encoding, i)`` initialises its parameters with seed ``seed + i``, so at a given
    ``i`` every regime and encoding starts from the same E, W_Q, W_K, W_OV (the parameters an
    encoding adds, ``t5_bias`` or ``P``, are drawn after them).
    """

    pairs: int = 64
    d_model: int = 64
    d_head: int = 64
    steps: int = 300
    lr: float = 0.05
    optimizer: str = "adam"
    schedule: str = "cosine"  # learning-rate schedule over the steps
    seeds: int = 3
    seed: int = 0
    regimes: tuple[str, ...] = REGIMES
    encodings: tuple[str, ...] = ENCODINGS
    log_every: int = 20
    init_scale: float = 1.0
    rope_base: float = 1e4
    tied: bool = True  # unembedding U tied to the embedding rows (False: U is its own parameter)
    device: str = "cpu"
    threads: int = 1  # torch CPU threads while training: one is fastest for these tiny shapes

    def __post_init__(self):
        _int_at_least("pairs", self.pairs, 2)
        _int_at_least("d_model", self.d_model, 1)
        _int_at_least("d_head", self.d_head, 1)
        _int_at_least("steps", self.steps, 1)
        _positive_number("lr", self.lr)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}")
        _int_at_least("seeds", self.seeds, 1)
        _int_at_least("seed", self.seed, 0)
        object.__setattr__(self, "regimes", _subset("regimes", self.regimes, REGIMES))
        object.__setattr__(self, "encodings", _subset("encodings", self.encodings, ENCODINGS))
        _int_at_least("log_every", self.log_every, 1)
        _positive_number("init_scale", self.init_scale)
        if not isinstance(self.rope_base, (int, float)) or isinstance(self.rope_base, bool) or not self.rope_base > 1:
            raise ValueError(f"rope_base must be a number > 1; got {self.rope_base!r}")
        if "rope" in self.encodings and self.d_head % 2:
            raise ValueError(f"d_head must be even when encodings include 'rope'; got {self.d_head}")
        _int_at_least("threads", self.threads, 1)
        if not isinstance(self.tied, bool):
            raise ValueError(f"tied must be True or False; got {self.tied!r}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be one of cpu, cuda; got {self.device!r}")

    def model_config(self, regime: str, encoding: str) -> ModelConfig:
        """One layer, one head, merged W_OV, tied unembedding unless ``tied=False``; causal for the ARM."""
        return ModelConfig(
            vocab=2 * self.pairs + 1,
            d_model=self.d_model,
            d_head=self.d_head,
            pos=encoding,
            rope_base=self.rope_base,
            attention="causal" if regime == "arm" else "bidirectional",
            max_len=3,
            tied=self.tied,
        )


# ---------------------------------------------------------------------------------------------
# one run


@dataclass
class RunResult:
    regime: str
    encoding: str
    seed: int
    forward_acc: float
    reverse_acc: float
    reverse_logp: float
    final_loss: float
    seconds: float
    history: list[dict] = field(default_factory=list)  # one row per logged step: step, loss, accuracies, SIGNATURES


@dataclass(frozen=True)
class Probe:
    """Stacked forward and reverse queries of one regime, and where the given entity sits in each.

    MDM: forward (M, r, B)@a → A, reverse (B, r, M)@b → A, entity B at slot b resp. a.
    ARM: forward (A, r)@1 → B, reverse (B, r)@1 → A, entity (A resp. B) at slot a in both.
    """

    fwd: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # tokens (N, T), slots (N,), targets (N,)
    rev: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    fwd_entity_slot: int
    rev_entity_slot: int


def make_probe(regime: str, template: Template, pairs: list[tuple[int, int]], vocab: int, device) -> Probe:
    if regime == "arm":
        fq = [arm_forward_query(template, A, B, vocab) for A, B in pairs]
        rq = [arm_reverse_query(template, A, B, vocab) for A, B in pairs]
        return Probe(stack_queries(fq, device), stack_queries(rq, device), template.a, template.a)
    fq = [forward_query(template, A, B, vocab) for A, B in pairs]
    rq = [reverse_query(template, A, B, vocab) for A, B in pairs]
    return Probe(stack_queries(fq, device), stack_queries(rq, device), template.b, template.a)


def mdm_full_loss(params: dict, cfg: ModelConfig, tokens: torch.Tensor) -> torch.Tensor:
    """Mean over the N sequences (N, L) of the exact 1/t-weighted masked loss
    Σ_{S≠∅} 1/(|S| C(L,|S|)) Σ_{i∈S} −log p(x_i | x_S masked) (THEORY C0.4), all masks batched."""
    N, L = tokens.shape
    masks = all_masks(L, tokens.device)
    weights = torch.tensor([mdm_mask_weight(L, int(m.sum())) for m in masks.cpu()], dtype=torch.float64)
    nll = masked_token_nll(params, cfg, tokens[:, None, :].expand(N, len(masks), L), masks.expand(N, -1, -1))
    return (nll * weights.to(nll.device)).sum(-1).mean()


def regime_loss(regime: str, cfg: ModelConfig, probe: Probe, sequences: torch.Tensor):
    """The training objective of ``regime`` as a function of the parameters."""
    if regime == "mdm-forward":
        tokens, slots, targets = probe.fwd
        rows = torch.arange(len(targets), device=targets.device)
        return lambda p: -batched_query_logprobs(p, cfg, tokens, slots)[rows, targets].mean()
    if regime == "mdm-full":
        return lambda p: mdm_full_loss(p, cfg, sequences)
    return lambda p: arm_loss(p, cfg, sequences).mean()


def per_pair_storage_grads(params: dict, cfg: ModelConfig, query) -> torch.Tensor:
    """G_n = ∂(−log p_n(target_n))/∂W_OV for every stacked query n, shape (N, H, d, d).

    One reverse-mode pass over the batch: autograd gives δ_{n,t} = ∂L/∂h_{n,t} at the layer output
    (L = Σ_n L_n; the queries are independent, so δ_{n,·} is ∂L_n/∂h_{n,·}), and since W_OV enters
    only through h_t = x_t + Σ_heads W_OV c_t (one layer), G_n = Σ_t δ_{n,t} c_{n,t}ᵀ per head —
    the per-example gradient of a linear map, exact, without one backward pass per pair.
    """
    if cfg.n_layers != 1 or not cfg.merged_ov:
        raise ValueError("per_pair_storage_grads needs a one-layer model with merged W_OV")
    tokens, slots, targets = query
    rows = torch.arange(len(slots), device=slots.device)
    with torch.enable_grad():  # also when called from a no_grad callback
        p = {k: v.detach().requires_grad_(k == "W_OV") for k, v in params.items()}
        out = forward(p, cfg, tokens)
        logp = torch.log_softmax(out["logits"][rows, slots], dim=-1)
        (delta,) = torch.autograd.grad(-logp[rows, targets].sum(), out["hidden"])
    return torch.einsum("nte,nhtd->nhed", delta, out["context"][:, 0].detach())


def _pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x - x.mean(), y - y.mean()
    den = float(torch.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum()) / den if den > 0 else math.nan


def accuracy_and_logp(params: dict, cfg: ModelConfig, query) -> tuple[float, float]:
    """(mean argmax accuracy, mean log p(target)) over stacked queries."""
    tokens, slots, targets = query
    logp = batched_query_logprobs(params, cfg, tokens, slots)
    rows = torch.arange(len(targets), device=targets.device)
    return float((logp.argmax(-1) == targets).double().mean()), float(logp[rows, targets].mean())


@torch.no_grad()
def _attention_and_scores(params, cfg, query, slot_entity):
    tokens, slots, _ = query
    out = forward(params, cfg, tokens)
    rows = torch.arange(len(slots), device=slots.device)
    attn = out["attn"][rows, 0, 0, slots, slot_entity]  # one layer, one head
    scores = out["scores"][rows, 0, 0, slots, slot_entity]
    return attn, scores


def signatures(params: dict, cfg: ModelConfig, probe: Probe, pairs: list[tuple[int, int]]) -> dict[str, float]:
    """The mechanism's signatures, means over pairs (THEORY C1b, C2c, C3):

    attn_fwd, attn_rev   attention from the query slot to the given entity (B for the MDM; A resp. B
                         for the ARM, whose forward query holds no B);
    score_corr           across-pair Pearson correlation of those two pre-softmax scores;
    storage_inner        ⟨G_f, G_r⟩_F with G = ∂(−log p(target))/∂W_OV per pair (autograd,
                         :func:`per_pair_storage_grads`);
    evidence             ε(A←B) = u_Aᵀ W_OV x_B (token embedding x_B, no position vector).
    """
    p = {k: v.detach() for k, v in params.items()}
    a_f, s_f = _attention_and_scores(p, cfg, probe.fwd, probe.fwd_entity_slot)
    a_r, s_r = _attention_and_scores(p, cfg, probe.rev, probe.rev_entity_slot)
    G_f = per_pair_storage_grads(p, cfg, probe.fwd)
    G_r = per_pair_storage_grads(p, cfg, probe.rev)
    A = torch.tensor([a for a, _ in pairs], device=p["E"].device)
    B = torch.tensor([b for _, b in pairs], device=p["E"].device)
    W = p["W_OV"][0, 0]
    U = unembedding(p, cfg)
    evidence = torch.einsum("nd,de,ne->n", U[A], W, p["E"][B])
    return {
        "attn_fwd": float(a_f.mean()),
        "attn_rev": float(a_r.mean()),
        "score_corr": _pearson(s_f, s_r),
        "storage_inner": float((G_f * G_r).sum(dim=tuple(range(1, G_f.dim()))).mean()),
        "evidence": float(evidence.mean()),
    }


def run_one(config: ExperimentConfig, regime: str, encoding: str, seed: int) -> RunResult:
    """Train one model of ``regime`` × ``encoding`` from ``init_params(cfg, seed)`` and measure it."""
    _subset("regime", (regime,), REGIMES), _subset("encoding", (encoding,), ENCODINGS)
    device = resolve_device(config.device)
    cfg = config.model_config(regime, encoding)
    vocab, relation, pairs = fact_pairs(config.pairs)
    template = canonical_template(relation)
    probe = make_probe(regime, template, pairs, vocab, device)
    sequences = torch.tensor([template.sequence(A, B) for A, B in pairs], dtype=torch.long, device=device)
    params = init_params(cfg, seed, scale=config.init_scale, device=device)
    history: list[dict] = []

    def log(step: int, p: dict, loss: float) -> None:
        if step % config.log_every and step != config.steps:
            return
        with torch.no_grad():
            fa, _ = accuracy_and_logp(p, cfg, probe.fwd)
            ra, rl = accuracy_and_logp(p, cfg, probe.rev)
        row = {"step": step, "loss": loss, "forward_acc": fa, "reverse_acc": ra, "reverse_logp": rl}
        history.append(row | signatures(p, cfg, probe, pairs))

    start = time.perf_counter()
    loss_fn = regime_loss(regime, cfg, probe, sequences)
    factor = cosine_factor(config.steps) if config.schedule == "cosine" else None
    params = train(params, loss_fn, steps=config.steps, lr=config.lr, optimizer=config.optimizer, callback=log,
                   lr_factor=factor)
    last = history[-1]
    return RunResult(
        regime,
        encoding,
        seed,
        last["forward_acc"],
        last["reverse_acc"],
        last["reverse_logp"],
        last["loss"],
        time.perf_counter() - start,
        history,
    )


# ---------------------------------------------------------------------------------------------
# the experiment


@dataclass
class ExperimentResults:
    config: ExperimentConfig
    runs: list[RunResult]
    seconds: float

    def summary(self) -> list[dict]:
        """One row per (regime, encoding): mean, std (population) and min/max over seeds of each metric."""
        rows = []
        for regime in self.config.regimes:
            for encoding in self.config.encodings:
                runs = [r for r in self.runs if r.regime == regime and r.encoding == encoding]
                row = {"regime": regime, "encoding": encoding, "seeds": len(runs)}
                for m in METRICS:
                    vals = [getattr(r, m) for r in runs]
                    row |= {
                        f"{m}_mean": statistics.fmean(vals),
                        f"{m}_std": statistics.pstdev(vals),
                        f"{m}_min": min(vals),
                        f"{m}_max": max(vals),
                    }
                rows.append(row)
        return rows

    def markdown(self) -> str:
        """The regime × encoding table: mean (min–max) over seeds."""
        c = self.config
        head = (
            "| regime | encoding | forward acc | reverse acc | reverse log p(A) |\n"
            "|---|---|---|---|---|\n"
        )
        body = ""
        for row in self.summary():
            cells = [
                f"{row[f'{m}_mean']:.{d}f} ({row[f'{m}_min']:.{d}f}–{row[f'{m}_max']:.{d}f})"
                for m, d in (("forward_acc", 2), ("reverse_acc", 2), ("reverse_logp", 2))
            ]
            body += f"| {row['regime']} | {row['encoding']} | " + " | ".join(cells) + " |\n"
        note = (
            f"\nmean (min–max) over {c.seeds} seeds; N = {c.pairs} pairs, d = {c.d_model}, d_k = {c.d_head}, "
            f"{c.steps} full-batch {c.optimizer} steps, lr {c.lr:g} ({c.schedule}), "
            f"{'tied' if c.tied else 'untied'} unembedding, float64 on {c.device}; "
            f"chance accuracy 1/V = {1 / (2 * c.pairs + 1):.3f}\n"
        )
        return head + body + note


    def signature_markdown(self) -> str:
        """The logged signatures per (regime, encoding), means over seeds: at initialisation → at the end."""
        head = (
            "| regime | encoding | attn→entity fwd | attn→entity rev | corr(S_f, S_r) | ⟨G_f, G_r⟩ | "
            "runs with ⟨G_f, G_r⟩ < 0 | ε(A←B) |\n|---|---|---|---|---|---|---|---|\n"
        )
        body = ""
        for regime in self.config.regimes:
            for encoding in self.config.encodings:
                runs = [r for r in self.runs if r.regime == regime and r.encoding == encoding]
                mean = lambda key, i: statistics.fmean(r.history[i][key] for r in runs)  # noqa: E731
                span = lambda key, f: f"{mean(key, 0):{f}} → {mean(key, -1):{f}}"  # noqa: E731
                negative = sum(any(h["storage_inner"] < 0 for h in r.history) for r in runs)
                body += (
                    f"| {regime} | {encoding} | {span('attn_fwd', '.2f')} | {span('attn_rev', '.2f')} | "
                    f"{span('score_corr', '.2f')} | {span('storage_inner', '.2g')} | {negative}/{len(runs)} | "
                    f"{span('evidence', '.2f')} |\n"
                )
        note = "means over seeds, at step 0 → at the last step; ⟨G_f, G_r⟩ < 0 counted over all logged steps"
        return head + body + f"\n{note}\n"


def run_reversal_experiment(config: ExperimentConfig, progress=None) -> ExperimentResults:
    """Every regime × encoding × seed of ``config``; ``progress(i, n, run)`` is called after each run."""
    if not isinstance(config, ExperimentConfig):
        raise TypeError(f"config must be an ExperimentConfig; got {type(config).__name__}")
    jobs = [(r, e, config.seed + i) for r in config.regimes for e in config.encodings for i in range(config.seeds)]
    start, runs = time.perf_counter(), []
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        for i, (regime, encoding, seed) in enumerate(jobs):
            runs.append(run_one(config, regime, encoding, seed))
            if progress is not None:
                progress(i + 1, len(jobs), runs[-1])
    finally:
        torch.set_num_threads(threads)
    return ExperimentResults(config, runs, time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------
# outputs


def write_outputs(results: ExperimentResults, out_dir, *, plot: bool = True) -> dict[str, Path]:
    """Write ``runs.csv`` (one row per run), ``summary.csv``, ``signatures.csv`` (the logged
    histories), ``results.json`` (config, summary, runs with histories), ``table.md`` and, when
    ``plot`` and matplotlib is importable, ``signatures.png``. Returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    run_fields = ["regime", "encoding", "seed", *METRICS, "final_loss", "seconds"]
    run_rows = [{k: getattr(r, k) for k in run_fields} for r in results.runs]
    paths["runs.csv"] = _write_csv(out / "runs.csv", run_fields, run_rows)
    summary = results.summary()
    paths["summary.csv"] = _write_csv(out / "summary.csv", list(summary[0]), summary)
    hist_fields = ["regime", "encoding", "seed", "step", "loss", *METRICS, *SIGNATURES]
    hist = [{"regime": r.regime, "encoding": r.encoding, "seed": r.seed} | h for r in results.runs for h in r.history]
    paths["signatures.csv"] = _write_csv(out / "signatures.csv", hist_fields, hist)
    doc = {
        "config": asdict(results.config),
        "seconds": results.seconds,
        "torch": torch.__version__,
        "summary": summary,
        "runs": [asdict(r) for r in results.runs],
    }
    paths["results.json"] = out / "results.json"
    paths["results.json"].write_text(json.dumps(_finite_or_none(doc), indent=1, allow_nan=False) + "\n")
    paths["table.md"] = out / "table.md"
    paths["table.md"].write_text(results.markdown() + "\n" + results.signature_markdown())
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
    styles = dict(zip(REGIMES, ("-", "--", ":")))
    colours = dict(zip(ENCODINGS, ("C0", "C1", "C2", "C3", "C4")))
    for ax, (key, title) in zip(axes.flat, _PANELS):
        for regime in c.regimes:
            for encoding in c.encodings:
                runs = [r for r in results.runs if r.regime == regime and r.encoding == encoding]
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


def _arg_type(name: str, check):
    def parse(text: str):
        kind = "a number" if check is _positive_number else "an integer"
        try:
            value = float(text) if check is _positive_number else int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {kind}; got {text!r}") from None
        try:
            return check(name, value) if check is _positive_number else check(name, value, _MINIMA[name])
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err).replace(f"{name} must", "must")) from None

    parse.__name__ = name
    return parse


_MINIMA = {"pairs": 2, "d_model": 1, "d_head": 1, "steps": 1, "seeds": 1, "seed": 0, "log_every": 1}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mdm-props experiment reversal``."""
    d = ExperimentConfig()
    numbers = [  # (flag, field, kind, help); kind "int" or "float"
        ("--pairs", "pairs", "int", "number of facts N >= 2"),
        ("--d-model", "d_model", "int", "model width d"),
        ("--d-head", "d_head", "int", "query/key width d_k, even for rope"),
        ("--steps", "steps", "int", "full-batch training steps"),
        ("--lr", "lr", "float", "learning rate (the peak, under the cosine schedule)"),
        ("--seeds", "seeds", "int", "seeds per regime x encoding"),
        ("--seed", "seed", "int", "first seed; run i uses seed + i"),
        ("--log-every", "log_every", "int", "log the signatures every k steps"),
        ("--init-scale", "init_scale", "float", "weight initialisation scale"),
    ]
    for flag, name, kind, text in numbers:
        check = _int_at_least if kind == "int" else _positive_number
        default = getattr(d, name)
        parser.add_argument(flag, type=_arg_type(name, check), default=default, help=f"{text} (default {default:g})")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer, help=f"default {d.optimizer}")
    parser.add_argument("--schedule", choices=SCHEDULES, default=d.schedule, help=f"lr schedule (default {d.schedule})")
    parser.add_argument("--regimes", nargs="+", choices=REGIMES, default=list(REGIMES), metavar="REGIME",
                        help=f"any of {', '.join(REGIMES)} (default: all)")
    parser.add_argument("--encodings", nargs="+", choices=ENCODINGS, default=list(ENCODINGS), metavar="ENCODING",
                        help=f"any of {', '.join(ENCODINGS)}; absolute = learned (default: all)")
    parser.add_argument("--untied", action="store_true", help="give the unembedding U its own parameter")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=d.device, help="default cpu")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="write runs.csv, summary.csv, signatures.csv, results.json, table.md, signatures.png")
    parser.add_argument("--no-plot", action="store_true", help="do not draw signatures.png")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def config_from_args(args) -> ExperimentConfig:
    return ExperimentConfig(
        pairs=args.pairs,
        d_model=args.d_model,
        d_head=args.d_head,
        steps=args.steps,
        lr=args.lr,
        optimizer=args.optimizer,
        schedule=args.schedule,
        seeds=args.seeds,
        seed=args.seed,
        regimes=tuple(args.regimes),
        encodings=tuple(args.encodings),
        log_every=args.log_every,
        init_scale=args.init_scale,
        tied=not args.untied,
        device=args.device,
    )


def run_from_args(args) -> int:
    """Run the experiment described by parsed ``args``: progress on stderr, the table on stdout,
    files under ``--out``. Returns 0, or 2 (with a message on stderr) for a refused configuration."""
    try:
        config = config_from_args(args)
        if config.device != "cpu":
            resolve_device(config.device)
    except ValueError as err:
        print(f"mdm-props experiment reversal: error: {err}", file=sys.stderr)
        return 2

    def progress(i: int, n: int, run: RunResult) -> None:
        print(
            f"[{i:>3}/{n}] {run.regime:<11} {run.encoding:<8} seed {run.seed}: loss {run.final_loss:.3g}, "
            f"forward acc {run.forward_acc:.2f}, reverse acc {run.reverse_acc:.2f} ({run.seconds:.1f} s)",
            file=sys.stderr,
            flush=True,
        )

    print(
        f"training {len(config.regimes) * len(config.encodings) * config.seeds} one-layer models "
        f"({config.optimizer}, {config.steps} full-batch steps, float64, {config.device})",
        file=sys.stderr,
    )
    results = run_reversal_experiment(config, progress=None if args.quiet else progress)
    print(results.markdown())
    print(results.signature_markdown(), end="")
    print(f"\nwall time {results.seconds:.1f} s")
    if args.out is not None:
        paths = write_outputs(results, args.out, plot=not args.no_plot)
        if not args.no_plot and "signatures.png" not in paths:
            print("note: matplotlib is not installed; signatures.png skipped (pip install mdm_props[plot])")
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
