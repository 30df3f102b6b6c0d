"""The reversal experiment: the reversal curse in a masked diffusion model versus an ARM.

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

This module is the experiment (configuration, training runs, signatures, results);
:mod:`mdm_props.reversal_report` writes its tables, CSV/JSON files and figure, and holds the command.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

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
from .options import option, validate
from .params import init_params, resolve_device
from .training import OPTIMIZERS, cosine_factor, fact_pairs, train
from .validation import require_choice

REGIMES = ("mdm-forward", "mdm-full", "arm")
ENCODINGS = POSITIONAL_ENCODINGS  # rope, alibi, t5, none, absolute (learned)
SIGNATURES = ("attn_fwd", "attn_rev", "score_corr", "storage_inner", "evidence")
METRICS = ("forward_acc", "reverse_acc", "reverse_logp")
SCHEDULES = ("cosine", "constant")


# ---------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class ExperimentConfig:
    """Every knob of the reversal experiment; validated on construction (ValueError names the field).

    Each field states its help text and allowed values once (:func:`mdm_props.options.option`); the
    validation and the flags of ``mdm-props experiment reversal`` are derived from them.
    Run ``(regime, encoding, i)`` initialises its parameters with seed ``seed + i``, so at a given
    ``i`` every regime and encoding starts from the same E, W_Q, W_K, W_OV (the parameters an
    encoding adds, ``t5_bias`` or ``P``, are drawn after them).
    """

    # upper bounds: the per-pair storage gradients hold N d² float64s (1,024 · 512² · 8 B = 2 GiB at the
    # largest sizes); steps and seeds bound the time (a run of the defaults takes seconds)
    pairs: int = option(64, "number of facts N >= 2", minimum=2, maximum=1024)
    d_model: int = option(64, "model width d", minimum=1, maximum=512)
    d_head: int = option(64, "query/key width d_k, even for rope", minimum=1, maximum=512)
    steps: int = option(300, "full-batch training steps", minimum=1, maximum=1_000_000)
    lr: float = option(0.05, "learning rate (the peak, under the cosine schedule)")
    optimizer: str = option("adam", "optimizer", choices=OPTIMIZERS)
    schedule: str = option("cosine", "lr schedule", choices=SCHEDULES)
    seeds: int = option(3, "seeds per regime x encoding", minimum=1, maximum=1000)
    seed: int = option(0, "first seed; run i uses seed + i", minimum=0)
    regimes: tuple[str, ...] = option(REGIMES, f"any of {', '.join(REGIMES)}", choices=REGIMES)
    encodings: tuple[str, ...] = option(
        ENCODINGS, f"any of {', '.join(ENCODINGS)}; absolute = learned", choices=ENCODINGS
    )
    log_every: int = option(20, "log the signatures every k steps", minimum=1)
    init_scale: float = option(1.0, "weight initialisation scale")
    rope_base: float = option(1e4, "RoPE base, > 1", flag=None)
    tied: bool = option(True, "give the unembedding U its own parameter", flag="--untied")  # U tied to E's rows
    device: str = option("cpu", "cpu or cuda", choices=("cpu", "cuda"))
    # torch CPU threads while training: one is fastest for these tiny shapes
    threads: int = option(1, "torch CPU threads while training", minimum=1, flag=None)

    def __post_init__(self):
        validate(self)
        if not self.rope_base > 1:
            raise ValueError(f"rope_base must be a number > 1; got {self.rope_base!r}")
        if "rope" in self.encodings and self.d_head % 2:
            raise ValueError(f"d_head must be even when encodings include 'rope'; got {self.d_head}")

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

    @property
    def diverged(self) -> bool:
        """Training diverged: a logged loss or the final metrics are not finite (NaN/inf parameters)."""
        values = [self.final_loss, self.reverse_logp] + [h["loss"] for h in self.history]
        return not all(math.isfinite(v) for v in values)


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
    # checked: training may diverge; a non-finite loss is reported as a diverged run, not refused (run_one)
    nll = masked_token_nll(
        params, cfg, tokens[:, None, :].expand(N, len(masks), L), masks.expand(N, -1, -1), checked=True
    )
    return (nll * weights.to(nll.device)).sum(-1).mean()


def regime_loss(regime: str, cfg: ModelConfig, probe: Probe, sequences: torch.Tensor):
    """The training objective of ``regime`` as a function of the parameters."""
    if regime == "mdm-forward":
        tokens, slots, targets = probe.fwd
        rows = torch.arange(len(targets), device=targets.device)
        return lambda p: -batched_query_logprobs(p, cfg, tokens, slots, checked=True)[rows, targets].mean()
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
        out = forward(p, cfg, tokens, checked=True)
        logp = torch.log_softmax(out.logits[rows, slots], dim=-1)
        (delta,) = torch.autograd.grad(-logp[rows, targets].sum(), out.hidden)
    return torch.einsum("nte,nhtd->nhed", delta, out.context[:, 0].detach())


def _pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x - x.mean(), y - y.mean()
    den = float(torch.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum()) / den if den > 0 else math.nan


def accuracy_and_logp(params: dict, cfg: ModelConfig, query) -> tuple[float, float]:
    """(mean argmax accuracy, mean log p(target)) over stacked queries."""
    tokens, slots, targets = query
    logp = batched_query_logprobs(params, cfg, tokens, slots, checked=True)
    rows = torch.arange(len(targets), device=targets.device)
    return float((logp.argmax(-1) == targets).double().mean()), float(logp[rows, targets].mean())


@torch.no_grad()
def _attention_and_scores(params, cfg, query, slot_entity):
    tokens, slots, _ = query
    out = forward(params, cfg, tokens, checked=True)
    rows = torch.arange(len(slots), device=slots.device)
    attn = out.attn[rows, 0, 0, slots, slot_entity]  # one layer, one head
    scores = out.scores[rows, 0, 0, slots, slot_entity]
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
    require_choice("regime", regime, REGIMES)
    require_choice("encoding", encoding, ENCODINGS)
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
    params = train(
        params, loss_fn, steps=config.steps, lr=config.lr, optimizer=config.optimizer, callback=log, lr_factor=factor
    )
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
    """Every run of one experiment, in the order regime × encoding × seed, and the wall time."""

    config: ExperimentConfig
    runs: list[RunResult]
    seconds: float

    def cell(self, regime: str, encoding: str) -> list[RunResult]:
        """The runs of one (regime, encoding), one per seed."""
        return [r for r in self.runs if r.regime == regime and r.encoding == encoding]

    def summary(self) -> list[dict]:
        """One row per (regime, encoding) with runs: mean, std (population) and min/max over the seeds
        whose training did not diverge (``diverged`` counts the others; NaN when all diverged)."""
        rows = []
        for regime in self.config.regimes:
            for encoding in self.config.encodings:
                runs = self.cell(regime, encoding)
                if not runs:  # an interrupted experiment: this cell never ran
                    continue
                kept = [r for r in runs if not r.diverged]
                row = {"regime": regime, "encoding": encoding, "seeds": len(runs), "diverged": len(runs) - len(kept)}
                for m in METRICS:
                    vals = [getattr(r, m) for r in kept]
                    row |= {
                        f"{m}_mean": statistics.fmean(vals) if vals else math.nan,
                        f"{m}_std": statistics.pstdev(vals) if vals else math.nan,
                        f"{m}_min": min(vals, default=math.nan),
                        f"{m}_max": max(vals, default=math.nan),
                    }
                rows.append(row)
        return rows


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
