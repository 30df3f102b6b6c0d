"""E2 (THEORY §2c): reverse accuracy of multi-token facts against entity length, depth and masking.

``mdm-props experiment entities`` trains LLaDA-like blocks (:func:`mdm_props.model.preset`
``"llada-like"``: RMSNorm, SwiGLU, half-split RoPE, untied head) of depth 1, 2, 4 on N facts
"A r B" whose entities A = (a_1 … a_k), B = (b_1 … b_k) have k tokens and whose relation r is one
token (m = 1), under four regimes, every positional encoding and several seeds:

* ``mdm-forward``: the forward configuration only, ``[M]^k r B → A`` (Σ_j −log p(a_j)).
* ``mdm-token``: the masked-diffusion objective of "A r B" over token-level masks (entities are
  often partly masked): E_S[Σ_{i∈S} −log p(x_i | x_S masked)] with the 1/(|S| C(T, |S|)) weights of
  THEORY C0.4, estimated each step by ``mask_draws`` masks per fact (:func:`subset_masks`): |S| = s
  uniform on 1 … T, then S uniform among the C(T, s) subsets, weight T/s.
* ``mdm-entity``: the same objective with whole-entity masks (A, r and B each masked all or
  nothing, as DiffER proposes): the same estimator over the 3 units, weights 1/(|S| C(3, |S|)).
* ``arm``: causal next-token training on "A r B".

No regime ever shows B before A, so the reverse query ``B r [M]^k → A`` is never trained. C9 says
that the reverse query reads the forward configuration of the order-reversed fact
``rev(A) r rev(B)`` at the reflected route (exact at any depth), so forward training is reused
exactly only for k = 1. Reverse accuracy is measured four ways (:data:`ACCURACIES`): ``exact`` (all
k tokens right), ``per_token``, ``bag`` (the k predicted tokens are A's as a multiset) and
``reversed`` (the prediction is rev(A)); the MDM predicts the k masked slots in one parallel step
(argmax over the real tokens), the ARM decodes k tokens greedily after "B r". Every rate carries a
Clopper–Pearson interval (:func:`mdm_props.statistics.clopper_pearson`).

Logged during training, per layer ℓ (:data:`SIGNATURES`): ``cos`` = cos(∇_{S_ℓ} L_f, ∇_{S_ℓ} L_r),
the storage-gradient cosine of the forward and reverse queries (S_ℓ: layer ℓ's W_V, W_O, MLP and
norm gains); ``score_corr``: across facts, the Pearson correlation of the forward and reverse
query-to-entity score (pre-softmax, mean over heads, prediction slots and the given entity's slots);
``attn_fwd``/``attn_rev``: the attention mass from the prediction slots to the given entity (B for
the MDM queries; A resp. B for the ARM, whose forward query holds no B).

Seeds are trained together: the parameters of all seeds are stacked and the per-seed losses summed
under ``torch.func.vmap``, so every seed's gradient, Adam moments and step are its own, exactly as in
a separate run (Adam acts entrywise). Training reuses :func:`mdm_props.training.train`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

import torch
from torch.func import grad, vmap

from .facts import (
    EntityTemplate,
    arm_entity_forward_queries,
    arm_entity_reverse_queries,
    entity_forward_queries,
    entity_reverse_queries,
)
from .model import POSITIONAL_ENCODINGS, ModelConfig, forward, preset
from .options import option, validate
from .params import init_params, resolve_device
from .statistics import clopper_pearson
from .training import cosine_factor, train

REGIMES = ("mdm-forward", "mdm-token", "mdm-entity", "arm")
MDM_REGIMES = ("mdm-forward", "mdm-token", "mdm-entity")
ENCODINGS = POSITIONAL_ENCODINGS  # rope, alibi, t5, none, absolute (learned)
K_CHOICES = (1, 2, 3, 4, 5, 6)
DEPTH_CHOICES = (1, 2, 3, 4, 6, 8)
ACCURACIES = ("exact", "per_token", "bag", "reversed")
SIGNATURES = ("cos", "score_corr", "attn_fwd", "attn_rev")
CHECKPOINTS = ("none", "first-seed", "all")
# option() types its choices as strings; require_subset compares any values, so int choices work
_INT_CHOICES = cast(Callable[[tuple[int, ...]], Sequence[str]], tuple)
# the default grid (fits 15 minutes on the shared 2-core machine); the full grid of THEORY E2 is
# --ks 1 2 3 4 --encodings rope alibi t5 none absolute (docs/experiments.md states its time)
DEFAULT_KS = (1, 2, 3)
DEFAULT_ENCODINGS = ("rope", "alibi")
# encodings a transformers Llama/LLaDA checkpoint can express: RoPE only (ALiBi, T5 buckets, learned
# absolute positions and no positions have no place in LLaDA's or Llama's config and tensors)
CHECKPOINT_ENCODINGS = ("rope",)


# ---------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class EntitiesConfig:
    """Every knob of E2; validated on construction (a ValueError names the field).

    Run (k, regime, encoding, depth, i) initialises its parameters with seed ``seed + i`` and trains
    on the facts drawn by ``seed`` for that k (the same facts for every regime, encoding, depth, seed).
    """

    ks: tuple[int, ...] = option(DEFAULT_KS, "entity lengths k", choices=_INT_CHOICES(K_CHOICES), flag=None)
    depths: tuple[int, ...] = option(
        (1, 2, 4), "depths (layers of the LLaDA-like block)", choices=_INT_CHOICES(DEPTH_CHOICES), flag=None
    )
    regimes: tuple[str, ...] = option(REGIMES, f"any of {', '.join(REGIMES)}", choices=REGIMES)
    encodings: tuple[str, ...] = option(
        DEFAULT_ENCODINGS, f"any of {', '.join(ENCODINGS)}; absolute = learned", choices=ENCODINGS
    )
    facts: int = option(16, "number of facts N (entity tokens: N subject and N object tokens)", minimum=4)
    d_model: int = option(16, "model width d", minimum=2)
    d_head: int = option(4, "head width d_k (even)", minimum=2)
    n_heads: int = option(4, "attention heads (ALiBi's slopes 2^(-8h/H) differ per head)", minimum=1)
    d_mlp: int = option(32, "SwiGLU hidden width", minimum=1)
    steps: int = option(150, "full-batch training steps", minimum=1)
    lr: float = option(0.02, "peak learning rate (Adam, cosine schedule)")
    mask_draws: int = option(2, "masks per fact and step (mdm-token, mdm-entity)", minimum=1)
    seeds: int = option(3, "seeds per cell (trained together, vectorised)", minimum=1)
    seed: int = option(0, "first seed; run i uses seed + i; the facts use seed", minimum=0)
    log_every: int = option(30, "log the per-layer signatures every n steps", minimum=1)
    checkpoints: str = option("first-seed", "which RoPE runs to save as transformers checkpoints", choices=CHECKPOINTS)
    device: str = option("cpu", "cpu or cuda", choices=("cpu", "cuda"))
    threads: int = option(1, "torch CPU threads while training", minimum=1, flag=None)

    def __post_init__(self):
        validate(self)
        if self.d_head % 2:
            raise ValueError(f"d_head must be even (RoPE rotates pairs); got {self.d_head}")
        if self.facts > 10_000:
            raise ValueError(f"facts must be <= 10000; got {self.facts}")
        if max(self.ks) > self.facts:
            raise ValueError(
                f"ks must not exceed facts={self.facts} (an entity has k distinct of N tokens); got {self.ks}"
            )
        saving = self.checkpoints != "none" and set(self.encodings) & set(CHECKPOINT_ENCODINGS)
        if saving and self.d_head * self.n_heads != self.d_model:
            raise ValueError(
                f"d_head * n_heads must equal d_model when RoPE checkpoints are saved (LLaDA's config has no "
                f"head width); got {self.d_head} * {self.n_heads} != {self.d_model}; or pass --checkpoints none"
            )

    @property
    def jobs(self) -> list[tuple[int, str, str, int]]:
        """(k, regime, encoding, depth) in run order; each job trains ``seeds`` models at once."""
        return [(k, r, e, L) for k in self.ks for L in self.depths for e in self.encodings for r in self.regimes]

    def model_config(self, k: int, regime: str, encoding: str, depth: int) -> ModelConfig:
        """The LLaDA-like block (θ = 5e5, half-split RoPE, RMSNorm, SwiGLU, untied) at this size;
        causal for the ARM."""
        return preset(
            "llada-like",
            vocab=2 * self.facts + 1,
            d_model=self.d_model,
            d_head=self.d_head,
            n_heads=self.n_heads,
            n_layers=depth,
            d_mlp=self.d_mlp,
            pos=encoding,
            attention="causal" if regime == "arm" else "bidirectional",
            max_len=2 * k + 1,
        )


# ---------------------------------------------------------------------------------------------
# facts and queries


@dataclass(frozen=True)
class EntityFacts:
    """N facts "A r B": A (N, k) from subject tokens 0 … N−1, B (N, k) from object tokens N … 2N−1,
    the relation token 2N; the mask id is V = 2N + 1. Within an entity the k tokens are distinct (so
    rev(A) ≠ A for k ≥ 2), and the N entities of each side are distinct tuples."""

    A: torch.Tensor
    B: torch.Tensor
    relation: int
    vocab: int

    @property
    def k(self) -> int:
        return self.A.shape[1]

    @property
    def template(self) -> EntityTemplate:
        return EntityTemplate(self.k, (self.relation,))

    def sequences(self) -> torch.Tensor:
        """(N, 2k + 1): A r B."""
        rows = zip(self.A.tolist(), self.B.tolist(), strict=True)
        return torch.tensor([self.template.sequence(a, b) for a, b in rows], dtype=torch.long, device=self.A.device)


def entity_facts(n: int, k: int, seed: int) -> EntityFacts:
    """N facts with k-token entities drawn by ``torch.Generator(seed)`` (see :class:`EntityFacts`)."""
    if k > n:
        raise ValueError(f"k must be <= facts={n} (an entity has k distinct tokens out of N); got {k}")
    gen = torch.Generator().manual_seed(seed)

    def side(offset: int) -> torch.Tensor:
        if k == 1:
            return (torch.randperm(n, generator=gen) + offset)[:, None]
        seen: set[tuple[int, ...]] = set()
        rows: list[tuple[int, ...]] = []
        while len(rows) < n:
            t = tuple(int(x) + offset for x in torch.randperm(n, generator=gen)[:k])
            if t not in seen:
                seen.add(t)
                rows.append(t)
        return torch.tensor(rows, dtype=torch.long)

    return EntityFacts(side(0), side(n), 2 * n, 2 * n + 1)


@dataclass(frozen=True)
class Queries:
    """One regime's forward and reverse queries: input tokens (N, T), the prediction slots (k,), the
    targets (N, k) and the given entity's slots (k,). For the ARM the inputs are the teacher-forced
    sequences "A r B" and "B r A" and the slots the positions that predict the next token."""

    fwd_tokens: torch.Tensor
    rev_tokens: torch.Tensor
    fwd_slots: torch.Tensor
    rev_slots: torch.Tensor
    fwd_targets: torch.Tensor
    rev_targets: torch.Tensor
    fwd_entity: torch.Tensor
    rev_entity: torch.Tensor

    @property
    def relation_length(self) -> int:
        """m = T − 2k (the ARM's prompt is the given entity and the relation: k + m tokens)."""
        return self.rev_tokens.shape[1] - 2 * len(self.rev_slots)


def make_queries(facts: EntityFacts, regime: str) -> Queries:
    """Stack the k-token queries of :mod:`mdm_props.facts` (``EntityTemplate``) for every fact: MDM
    ``[M]^k r B`` / ``B r [M]^k`` (given entity B), ARM teacher-forced "A r B" / "B r A" (given entity
    in A's slots)."""
    template = facts.template
    V = facts.vocab
    rows = [(tuple(a), tuple(b)) for a, b in zip(facts.A.tolist(), facts.B.tolist(), strict=True)]
    arm = regime == "arm"
    fwd_q = arm_entity_forward_queries if arm else entity_forward_queries
    rev_q = arm_entity_reverse_queries if arm else entity_reverse_queries
    fq = [fwd_q(template, A, B, V) for A, B in rows]
    rq = [rev_q(template, A, B, V) for A, B in rows]

    def stack(qs):
        tokens = torch.tensor([q[0].tokens for q in qs], dtype=torch.long)
        slots = torch.tensor([q.slot for q in qs[0]], dtype=torch.long)
        targets = torch.tensor([[q.target for q in row] for row in qs], dtype=torch.long)
        return tokens, slots, targets

    (ft, fs, ftg), (rt, rs, rtg) = stack(fq), stack(rq)
    a_slots, b_slots = torch.tensor(template.a_slots), torch.tensor(template.b_slots)
    return Queries(ft, rt, fs, rs, ftg, rtg, a_slots if arm else b_slots, a_slots)


def entity_units(k: int) -> torch.Tensor:
    """(3, 2k + 1) bool: the token slots of the units A, r and B of "A r B"."""
    units = torch.zeros(3, 2 * k + 1, dtype=torch.bool)
    units[0, :k], units[1, k], units[2, k + 1 :] = True, True, True
    return units


def subset_masks(n_seeds: int, n_facts: int, draws: int, units: int, gen: torch.Generator):
    """Masks over ``units`` units, (S, N, draws, units) bool, and their weights units/|S|: |S| uniform on
    1 … units, then S uniform among the C(units, |S|) subsets. Unbiased for the C0.4 objective:
    Σ_{S≠∅} f(S)/(|S| C(n, |S|)) = n · E_{|S|}[E_{S | |S|}[f(S)] / |S|]."""
    size = torch.randint(1, units + 1, (n_seeds, n_facts, draws, 1), generator=gen)
    rank = torch.rand(n_seeds, n_facts, draws, units, generator=gen, dtype=torch.float64).argsort(-1).argsort(-1)
    return rank < size, units / size.squeeze(-1).to(torch.float64)


def _masked_nll(p: dict, cfg: ModelConfig, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """−log p(x_i | masked) at every masked position, zero elsewhere; tokens (..., T) real ids."""
    corrupted = torch.where(mask, torch.full_like(tokens, cfg.mask_id), tokens)
    logp = torch.log_softmax(forward(p, cfg, corrupted, checked=True).logits, dim=-1)
    return -logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) * mask.to(logp.dtype)


def _query_nll(p: dict, cfg: ModelConfig, tokens, slots, targets) -> torch.Tensor:
    """Σ_j −log p(target_j) at slot_j, per fact (N,)."""
    logp = torch.log_softmax(forward(p, cfg, tokens, checked=True).logits[:, slots], dim=-1)  # (N, k, V)
    return -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1).sum(-1)


# ---------------------------------------------------------------------------------------------
# one job: a (k, regime, encoding, depth) cell, all seeds at once


@dataclass
class RunRecord:
    """One trained model: the cell, its seed, the reverse accuracies (rate, successes, trials,
    Clopper–Pearson interval at 1e-6), the forward exact accuracy, and the logged history."""

    k: int
    regime: str
    encoding: str
    depth: int
    seed: int
    diverged: bool
    final_loss: float
    forward_exact: float
    reverse: dict
    seconds: float
    history: list[dict] = field(default_factory=list)
    checkpoint: str | None = None


def accuracies(pred: torch.Tensor, target: torch.Tensor) -> dict[str, tuple[int, int]]:
    """(successes, trials) of the four reverse accuracies of predictions (N, k) against targets (N, k):
    exact (all k right), per_token (N·k trials), bag (same multiset), reversed (pred = rev(target))."""
    N, k = target.shape
    return {
        "exact": (int((pred == target).all(-1).sum()), N),
        "per_token": (int((pred == target).sum()), N * k),
        "bag": (int((pred.sort(-1).values == target.sort(-1).values).all(-1).sum()), N),
        "reversed": (int((pred == target.flip(-1)).all(-1).sum()), N),
    }


def with_intervals(counts: dict[str, tuple[int, int]]) -> dict[str, dict]:
    out = {}
    for name, (s, n) in counts.items():
        lo, hi = clopper_pearson(s, n)
        out[name] = {"rate": s / n, "successes": s, "trials": n, "ci": [lo, hi]}
    return out


@torch.no_grad()
def predict(p: dict, cfg: ModelConfig, q: Queries, reverse: bool, arm: bool) -> torch.Tensor:
    """(N, k) predicted entity tokens: the MDM's parallel argmax at the k masked slots; the ARM's
    greedy decoding of k tokens after the prompt (entity, r)."""
    tokens = q.rev_tokens if reverse else q.fwd_tokens
    slots = q.rev_slots if reverse else q.fwd_slots
    if not arm:
        return forward(p, cfg, tokens, checked=True).logits[:, slots].argmax(-1)
    k = len(slots)
    seq = tokens[:, : k + q.relation_length]
    out = []
    for _ in range(k):
        nxt = forward(p, cfg, seq, checked=True).logits[:, -1].argmax(-1)
        out.append(nxt)
        seq = torch.cat([seq, nxt[:, None]], 1)
    return torch.stack(out, 1)


def _pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x - x.mean(), y - y.mean()
    den = float(torch.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum()) / den if den > 0 else math.nan


def layer_storage(cfg: ModelConfig) -> tuple[str, ...]:
    """The per-layer storage parameters of the LLaDA-like block (leading axis = layer)."""
    names = ["W_V", "W_O", "norm_attn"] if not cfg.merged_ov else ["W_OV"]
    if cfg.mlp == "swiglu":
        names += ["W_gate", "W_up", "W_down", "norm_mlp"]
    return tuple(n for n in names if n in _shapes(cfg))


def _shapes(cfg):
    from .model import parameter_shapes

    return parameter_shapes(cfg)


def signatures(p: dict, cfg: ModelConfig, q: Queries) -> dict[str, list[float]]:
    """Per-layer signatures of one model (see the module docstring), lists of length n_layers."""
    names = layer_storage(cfg)

    def loss(params, tokens, slots, targets):
        return _query_nll(params, cfg, tokens, slots, targets).sum()

    g_f = grad(loss)(p, q.fwd_tokens, q.fwd_slots, q.fwd_targets)
    g_r = grad(loss)(p, q.rev_tokens, q.rev_slots, q.rev_targets)
    with torch.no_grad():
        of, orv = forward(p, cfg, q.fwd_tokens, checked=True), forward(p, cfg, q.rev_tokens, checked=True)
    out: dict[str, list[float]] = {s: [] for s in SIGNATURES}
    for layer in range(cfg.n_layers):
        f = torch.cat([g_f[n][layer].reshape(-1) for n in names])
        r = torch.cat([g_r[n][layer].reshape(-1) for n in names])
        den = float(f.norm() * r.norm())
        out["cos"].append(float(f @ r) / den if den > 0 else math.nan)
        # (N, H, k, k) → per fact: prediction slots to entity slots
        sf = of.scores[:, layer][:, :, q.fwd_slots][:, :, :, q.fwd_entity].mean((1, 2, 3))
        sr = orv.scores[:, layer][:, :, q.rev_slots][:, :, :, q.rev_entity].mean((1, 2, 3))
        out["score_corr"].append(_pearson(sf, sr))
        out["attn_fwd"].append(float(of.attn[:, layer][:, :, q.fwd_slots][:, :, :, q.fwd_entity].sum(-1).mean()))
        out["attn_rev"].append(float(orv.attn[:, layer][:, :, q.rev_slots][:, :, :, q.rev_entity].sum(-1).mean()))
    return out


def regime_loss(regime: str, cfg: ModelConfig, facts: EntityFacts, q: Queries, config: EntitiesConfig, seeds: int):
    """The summed-over-seeds training loss of ``regime`` as a function of stacked parameters (S, …):
    each seed's term is the mean over facts of its own objective, so its gradient is its own."""
    seq = facts.sequences()
    N, T = seq.shape
    if regime == "mdm-forward":
        one = lambda p: _query_nll(p, cfg, q.fwd_tokens, q.fwd_slots, q.fwd_targets).mean()  # noqa: E731
        return lambda P: vmap(one)(P).sum()
    if regime == "arm":
        # next-token loss of "A r B": positions 0 … T−2 predict tokens 1 … T−1
        one = lambda p: _query_nll(p, cfg, seq[:, :-1], torch.arange(T - 1), seq[:, 1:]).mean()  # noqa: E731
        return lambda P: vmap(one)(P).sum()
    # mdm-token: masks over the T tokens; mdm-entity: masks over the units (A, r, B), expanded to tokens
    units = entity_units(facts.k) if regime == "mdm-entity" else None
    gen = torch.Generator().manual_seed(config.seed + 7919 * facts.k + (1 if units is not None else 0))
    tok = seq[:, None, :].expand(N, config.mask_draws, T)

    def masked(p, mask, weight):
        return (_masked_nll(p, cfg, tok, mask).sum(-1) * weight).mean(-1).mean()

    def loss(P):
        n = T if units is None else 3
        mask, weight = subset_masks(seeds, N, config.mask_draws, n, gen)
        if units is not None:  # (S, N, draws, 3) @ (3, T): a token is masked when its unit is
            mask = (mask.to(torch.float64) @ units.to(torch.float64)) > 0
        dev = P["E"].device
        return vmap(masked)(P, mask.to(dev), weight.to(dev)).sum()

    return loss


def _to(q: Queries, device) -> Queries:
    return Queries(*(getattr(q, f).to(device) for f in Queries.__dataclass_fields__))


def run_job(
    config: EntitiesConfig, k: int, regime: str, encoding: str, depth: int
) -> tuple[list[RunRecord], list[dict]]:
    """Train the ``seeds`` models of one cell together; returns their records and final parameters."""
    device = resolve_device(config.device)
    cfg = config.model_config(k, regime, encoding, depth)
    facts = entity_facts(config.facts, k, config.seed)
    q = _to(make_queries(facts, regime), device)
    facts = EntityFacts(facts.A.to(device), facts.B.to(device), facts.relation, facts.vocab)
    S = config.seeds
    inits = [init_params(cfg, config.seed + i) for i in range(S)]
    stacked = {n: torch.stack([p[n] for p in inits]).to(device) for n in inits[0]}
    histories: list[list[dict]] = [[] for _ in range(S)]
    arm = regime == "arm"

    def unstack(P, i):
        return {n: v[i].detach() for n, v in P.items()}

    def log(step: int, P: dict, loss: float) -> None:
        if step % config.log_every and step != config.steps:
            return
        for i in range(S):
            p = unstack(P, i)
            with torch.no_grad():
                fwd = accuracies(predict(p, cfg, q, False, arm), q.fwd_targets)["exact"]
                rev = accuracies(predict(p, cfg, q, True, arm), q.rev_targets)["exact"]
                own = _own_loss(regime, cfg, facts, q, p)
            row = {"step": step, "loss": own, "forward_exact": fwd[0] / fwd[1], "reverse_exact": rev[0] / rev[1]}
            histories[i].append(row | signatures(p, cfg, q))

    start = time.perf_counter()
    loss_fn = regime_loss(regime, cfg, facts, q, config, S)
    final = train(
        stacked, loss_fn, steps=config.steps, lr=config.lr, callback=log, lr_factor=cosine_factor(config.steps)
    )
    seconds = (time.perf_counter() - start) / S
    records, params = [], []
    for i in range(S):
        p = unstack(final, i)
        finite = all(bool(torch.isfinite(v).all()) for v in p.values())
        with torch.no_grad():
            fwd = accuracies(predict(p, cfg, q, False, arm), q.fwd_targets)["exact"]
            rev = accuracies(predict(p, cfg, q, True, arm), q.rev_targets)
            own = _own_loss(regime, cfg, facts, q, p)
        diverged = not finite or not math.isfinite(own) or any(not math.isfinite(h["loss"]) for h in histories[i])
        records.append(
            RunRecord(
                k,
                regime,
                encoding,
                depth,
                config.seed + i,
                diverged,
                own,
                fwd[0] / fwd[1],
                with_intervals(rev),
                seconds,
                histories[i],
            )
        )
        params.append(p)
    return records, params


def _own_loss(regime, cfg, facts, q, p) -> float:
    """One model's deterministic loss on its forward training signal: the forward query's mean
    Σ_j −log p(a_j) for the MDMs, the next-token loss of "A r B" for the ARM."""
    seq = facts.sequences()
    if regime == "arm":
        return float(
            _query_nll(p, cfg, seq[:, :-1], torch.arange(seq.shape[1] - 1, device=seq.device), seq[:, 1:]).mean()
        )
    return float(_query_nll(p, cfg, q.fwd_tokens, q.fwd_slots, q.fwd_targets).mean())
