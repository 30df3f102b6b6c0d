"""Fact templates, the forward and reverse configurations, and the training objectives.

Slots are 0-based in code: the canonical fact "A r B" is ``Template(length=3, a=0, b=2,
fillers=(r,))``, which THEORY.md writes with 1-based slots a = 1, b = 3. Only the offset
Δ = b − a (canonical 2) enters any claim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import torch

from .model import ModelConfig, forward
from .params import check_params


@dataclass(frozen=True)
class Template:
    """A fact of ``length`` tokens: subject in slot ``a``, object in slot ``b > a``, fillers elsewhere."""

    length: int = 3
    a: int = 0
    b: int = 2
    fillers: tuple[int, ...] = (0,)

    def __post_init__(self):
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length < 2:
            raise ValueError(f"length must be an integer >= 2; got {self.length!r}")
        for name in ("a", "b"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < self.length:
                raise ValueError(f"slot {name} must be an integer in [0, {self.length - 1}] (0-based); got {v!r}")
        if self.a >= self.b:
            raise ValueError(f"slots must satisfy a < b; got a={self.a}, b={self.b}")
        if len(self.fillers) != self.length - 2:
            raise ValueError(f"fillers must hold length - 2 = {self.length - 2} token ids; got {len(self.fillers)}")

    @property
    def offset(self) -> int:
        """Δ = b − a."""
        return self.b - self.a

    def check_tokens(self, vocab: int, A: int, B: int) -> None:
        """A, B and fillers must be real tokens (0 .. V−1); A ≠ B; neither equal to a filler."""
        for name, t in (("A", A), ("B", B)) + tuple((f"fillers[{i}]", f) for i, f in enumerate(self.fillers)):
            if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab:
                raise ValueError(
                    f"{name} must be a real token id in [0, {vocab - 1}] (the mask id {vocab} is not allowed); "
                    f"got {t!r}"
                )
        if A == B:
            raise ValueError(f"A and B must be distinct tokens; got A = B = {A}")
        for name, t in (("A", A), ("B", B)):
            if t in self.fillers:
                raise ValueError(f"{name}={t} must differ from the filler (relation) tokens {self.fillers}")

    def sequence(self, first: int, second: int) -> list[int]:
        """Token list with ``first`` at slot a, ``second`` at slot b, fillers in order elsewhere."""
        fill = iter(self.fillers)
        return [first if i == self.a else second if i == self.b else next(fill) for i in range(self.length)]


def canonical_template(relation: int = 0) -> Template:
    """ "A r B": length 3, a = 0, b = 2, Δ = 2."""
    return Template(3, 0, 2, (relation,))


@dataclass(frozen=True)
class Query:
    """One masked-prediction query: the model reads ``tokens`` and predicts ``target`` at ``slot``."""

    tokens: tuple[int, ...]
    slot: int
    target: int
    vocab: int | None = None  # the V the query was built for (its mask id); checked against the config

    def tensor(self, device="cpu") -> torch.Tensor:
        return torch.tensor(self.tokens, dtype=torch.long, device=device)


def forward_query(template: Template, A: int, B: int, vocab: int) -> Query:
    """Forward configuration (M, r, B): A's slot masked, query slot a, target A."""
    template.check_tokens(vocab, A, B)
    return Query(tuple(template.sequence(vocab, B)), template.a, A, vocab)


def reverse_query(template: Template, A: int, B: int, vocab: int) -> Query:
    """Reverse configuration (B, r, M): B moved to slot a, mask in slot b, query slot b, target A."""
    template.check_tokens(vocab, A, B)
    return Query(tuple(template.sequence(B, vocab)), template.b, A, vocab)


def arm_forward_query(template: Template, A: int, B: int, vocab: int) -> Query:
    """ARM forward: predict B at slot b from the prefix (A, r, ...); the query sits at slot b − 1."""
    template.check_tokens(vocab, A, B)
    return Query(tuple(template.sequence(A, B)[: template.b]), template.b - 1, B, vocab)


def arm_reverse_query(template: Template, A: int, B: int, vocab: int) -> Query:
    """ARM reverse: predict A at slot b from the prefix (B, r, ...); the query sits at slot b − 1."""
    template.check_tokens(vocab, A, B)
    return Query(tuple(template.sequence(B, A)[: template.b]), template.b - 1, A, vocab)


def check_query(query: Query, cfg: ModelConfig) -> None:
    """Tokens are ids in [0, V] (real tokens or the mask id V), the slot a position of the sequence,
    the target a real token in [0, V − 1] (never the mask id); a query built for another vocabulary
    (``query.vocab``) is refused, since its mask id would be a real token of ``cfg``."""
    if query.vocab is not None and query.vocab != cfg.vocab:
        raise ValueError(
            f"query was built for vocab={query.vocab} (mask id {query.vocab}) but cfg.vocab={cfg.vocab}; "
            f"build it with the config's vocab"
        )
    bad = [t for t in query.tokens if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= cfg.vocab]
    if bad:
        raise ValueError(f"query.tokens must be ids in [0, {cfg.vocab}] (real tokens and the mask id); got {bad}")
    if isinstance(query.slot, bool) or not isinstance(query.slot, int) or not 0 <= query.slot < len(query.tokens):
        raise ValueError(f"query.slot must be a position in [0, {len(query.tokens) - 1}]; got {query.slot!r}")
    t = query.target
    if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < cfg.vocab:
        raise ValueError(
            f"query.target must be a real token id in [0, {cfg.vocab - 1}] (not the mask id {cfg.vocab}); got {t!r}"
        )


def check_real_tokens(tokens: torch.Tensor, cfg: ModelConfig, name: str = "tokens") -> None:
    """Every entry of ``tokens`` must be a real token id in [0, V − 1] (they are prediction targets)."""
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= cfg.vocab):
        raise ValueError(
            f"{name} must hold real token ids in [0, {cfg.vocab - 1}] (not the mask id {cfg.vocab}); "
            f"got values in [{int(tokens.min())}, {int(tokens.max())}]"
        )


def query_logprobs(params: dict, cfg: ModelConfig, query: Query) -> torch.Tensor:
    """log p (V,) at the query slot (parameters checked: names, shapes, float64, finite)."""
    check_params(params, cfg)
    check_query(query, cfg)
    out = forward(params, cfg, query.tensor(params["E"].device))
    return torch.log_softmax(out.logits[query.slot], dim=-1)


def query_loss(params: dict, cfg: ModelConfig, query: Query) -> torch.Tensor:
    """−log p(target) at the query slot."""
    return -query_logprobs(params, cfg, query)[query.target]


def forward_loss(params: dict, cfg: ModelConfig, template: Template, A: int, B: int) -> torch.Tensor:
    """L_f = −log p_f(A) in the forward configuration."""
    return query_loss(params, cfg, forward_query(template, A, B, cfg.vocab))


def reverse_loss(params: dict, cfg: ModelConfig, template: Template, A: int, B: int) -> torch.Tensor:
    """L_r = −log p_r(A) in the reverse configuration."""
    return query_loss(params, cfg, reverse_query(template, A, B, cfg.vocab))


# ---------------------------------------------------------------------------------------------
# masked-diffusion objective (THEORY C0.4)
#
# Convention (named "1/t", as in MDLM's linear schedule, no ε floor): draw t ~ U(0, 1), mask each
# token independently with probability t, and score the masked tokens with weight 1/t, summed (not
# averaged) over masked positions. Its expectation is an exact finite sum over masks S:
#     E = Σ_{S ≠ ∅} Σ_{i∈S} −log p(x_i | x with S masked) · 1/(|S| · C(L, |S|)),
# because ∫₀¹ t^{k−1}(1 − t)^{L−k} dt = 1/(k · C(L, k)).
# LLaDA/SMDM instead mask with probability (1 − ε)t + ε and divide by that; not used here.


def masked_token_nll(params: dict, cfg: ModelConfig, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ_{i: mask_i} −log p(x_i | x with the masked positions replaced by M); batched over leading axes."""
    check_real_tokens(tokens, cfg)
    if mask.dtype != torch.bool or mask.shape != tokens.shape:
        raise ValueError(
            f"mask must be a bool tensor of the tokens' shape {tuple(tokens.shape)}; "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )
    corrupted = torch.where(mask, torch.full_like(tokens, cfg.mask_id), tokens)
    logp = torch.log_softmax(forward(params, cfg, corrupted).logits, dim=-1)
    nll = -logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return (nll * mask.to(nll.dtype)).sum(-1)


def mdm_mask_weight(L: int, k: int) -> float:
    """1/(k · C(L, k)): the 1/t-weighted probability of one particular mask with k of L tokens masked."""
    return 1.0 / (k * math.comb(L, k))


def all_masks(L: int, device="cpu") -> torch.Tensor:
    """Every nonempty mask of L positions, (2^L − 1, L) bool, in order of size then position."""
    rows = [[i in S for i in range(L)] for k in range(1, L + 1) for S in combinations(range(L), k)]
    return torch.tensor(rows, dtype=torch.bool, device=device)


def mdm_objective_exact(params: dict, cfg: ModelConfig, tokens: torch.Tensor, max_length: int = 10) -> torch.Tensor:
    """The expected 1/t-weighted masked loss of one sequence by enumerating all 2^L − 1 masks."""
    check_params(params, cfg)
    check_real_tokens(tokens, cfg)
    L = tokens.shape[-1]
    if L > max_length:
        raise ValueError(f"tokens: exact enumeration needs length <= max_length={max_length}; got {L}")
    masks = all_masks(L, tokens.device)
    weights = torch.tensor(
        [mdm_mask_weight(L, int(m.sum())) for m in masks.cpu()], dtype=params["E"].dtype, device=tokens.device
    )
    return (masked_token_nll(params, cfg, tokens.expand(len(masks), L), masks) * weights).sum()


def mdm_objective_samples(
    params: dict, cfg: ModelConfig, tokens: torch.Tensor, n_samples: int, generator: torch.Generator
) -> torch.Tensor:
    """``n_samples`` iid draws of the 1/t-weighted masked loss (t ~ U(0,1), mask ~ Bernoulli(t)).

    Their mean is an unbiased estimator of :func:`mdm_objective_exact`. Randomness is drawn on
    the CPU from ``generator`` and moved to the tokens' device.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be an integer >= 1; got {n_samples!r}")
    check_params(params, cfg)
    check_real_tokens(tokens, cfg)
    L = tokens.shape[-1]
    t = torch.rand(n_samples, 1, generator=generator, dtype=torch.float64)
    t = t.clamp_min(torch.finfo(torch.float64).tiny)
    mask = torch.rand(n_samples, L, generator=generator, dtype=torch.float64) < t
    nll = masked_token_nll(params, cfg, tokens.expand(n_samples, L), mask.to(tokens.device))
    return nll / t.squeeze(-1).to(nll.device, nll.dtype)


def arm_loss(params: dict, cfg: ModelConfig, tokens: torch.Tensor) -> torch.Tensor:
    """Next-token loss Σ_{i≥1} −log p(x_i | x_{<i}); needs ``attention='causal'``; batched over leading axes."""
    if cfg.attention != "causal":
        raise ValueError(f"arm_loss needs a ModelConfig with attention='causal'; got attention={cfg.attention!r}")
    check_params(params, cfg)
    check_real_tokens(tokens, cfg)
    if tokens.shape[-1] < 2:
        raise ValueError(
            f"tokens must hold sequences of length >= 2 (a prefix and a next token); got {tuple(tokens.shape)}"
        )
    logp = torch.log_softmax(forward(params, cfg, tokens[..., :-1]).logits, dim=-1)
    return -logp.gather(-1, tokens[..., 1:].unsqueeze(-1)).squeeze(-1).sum(-1)


def stack_queries(queries: list[Query], device="cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tokens (N, T), slots (N,) and targets (N,) of queries of one common length."""
    lengths = {len(q.tokens) for q in queries}
    if len(lengths) != 1:
        raise ValueError(f"queries must share one sequence length; got lengths {sorted(lengths)}")
    tokens = torch.tensor([q.tokens for q in queries], dtype=torch.long, device=device)
    slots = torch.tensor([q.slot for q in queries], dtype=torch.long, device=device)
    targets = torch.tensor([q.target for q in queries], dtype=torch.long, device=device)
    return tokens, slots, targets


def batched_query_logprobs(params: dict, cfg: ModelConfig, tokens, slots) -> torch.Tensor:
    """log p (N, V) at each query's slot, for stacked queries."""
    logits = forward(params, cfg, tokens).logits
    return torch.log_softmax(logits[torch.arange(len(slots), device=logits.device), slots], dim=-1)


def mean_query_loss(params: dict, cfg: ModelConfig, queries: list[Query]) -> torch.Tensor:
    """Mean of −log p(target) over a list of queries of one common length (each checked by :func:`check_query`)."""
    check_params(params, cfg)
    if not queries:
        raise ValueError("queries must hold at least one Query")
    for q in queries:
        check_query(q, cfg)
    tokens, slots, targets = stack_queries(queries, params["E"].device)
    logp = batched_query_logprobs(params, cfg, tokens, slots)
    return -logp[torch.arange(len(targets), device=logp.device), targets].mean()


# ---------------------------------------------------------------------------------------------
# multi-token entities (THEORY §2c)
#
# A fact "A r B" with A = (a_1, …, a_k), B = (b_1, …, b_k) and relation r = (r_1, …, r_m): T = 2k + m
# tokens, A in slots 0 … k − 1, r in k … k + m − 1, B in k + m … 2k + m − 1 (0-based). For k = 1 this is
# the single-token fact of ``Template(m + 2, 0, m + 1, r)`` (:meth:`EntityTemplate.template`).


def rev(tokens) -> tuple[int, ...]:
    """rev(X): the token tuple read backwards."""
    return tuple(reversed(tuple(tokens)))


@dataclass(frozen=True)
class EntityTemplate:
    """A fact "A r B" with entities of ``k`` tokens and the relation ``relation`` (m tokens): T = 2k + m.

    The relation need not read the same backwards (C9 needs it to: :attr:`palindromic`; a
    non-palindromic one is its negative control)."""

    k: int = 1
    relation: tuple[int, ...] = (0,)

    def __post_init__(self):
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k (tokens per entity) must be an integer >= 1; got {self.k!r}")
        if not isinstance(self.relation, tuple) or not self.relation:
            raise ValueError(f"relation must be a non-empty tuple of token ids; got {self.relation!r}")

    @property
    def m(self) -> int:
        """The relation's length."""
        return len(self.relation)

    @property
    def length(self) -> int:
        """T = 2k + m."""
        return 2 * self.k + self.m

    @property
    def palindromic(self) -> bool:
        """r reads the same backwards (always true for m = 1)."""
        return self.relation == rev(self.relation)

    @property
    def a_slots(self) -> range:
        """A's slots 0 … k − 1."""
        return range(self.k)

    @property
    def b_slots(self) -> range:
        """B's slots k + m … 2k + m − 1."""
        return range(self.k + self.m, self.length)

    def template(self) -> Template:
        """The single-token template of a k = 1 fact: ``Template(m + 2, 0, m + 1, r)``."""
        if self.k != 1:
            raise ValueError(f"template() needs k = 1 (a single-token fact); got k={self.k}")
        return Template(self.m + 2, 0, self.m + 1, self.relation)

    def check_tokens(self, vocab: int, A, B) -> None:
        """A and B are k-tuples of real tokens (0 … V − 1), A ≠ B, no entity token equal to a relation
        token, and the relation tokens real."""
        for i, t in enumerate(self.relation):
            if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab:
                raise ValueError(
                    f"relation[{i}] must be a real token id in [0, {vocab - 1}] (the mask id {vocab} is not "
                    f"allowed); got {t!r}"
                )
        for name, X in (("A", A), ("B", B)):
            if not isinstance(X, tuple) or len(X) != self.k:
                raise ValueError(f"{name} must be a tuple of k = {self.k} token ids; got {X!r}")
            for i, t in enumerate(X):
                if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab:
                    raise ValueError(
                        f"{name}[{i}] must be a real token id in [0, {vocab - 1}] (the mask id {vocab} is not "
                        f"allowed); got {t!r}"
                    )
                if t in self.relation:
                    raise ValueError(f"{name}[{i}]={t} must differ from the relation tokens {self.relation}")
        if A == B:
            raise ValueError(f"A and B must be distinct entities; got A = B = {A}")

    def sequence(self, first, second) -> list[int]:
        """``first`` (k tokens), the relation, ``second`` (k tokens)."""
        return [*first, *self.relation, *second]


def entity_forward_queries(template: EntityTemplate, A, B, vocab: int) -> tuple[Query, ...]:
    """The forward configuration ``[M]^k r B``: query j (1-based) predicts a_j at slot j − 1."""
    template.check_tokens(vocab, A, B)
    tokens = tuple(template.sequence((vocab,) * template.k, B))
    return tuple(Query(tokens, j - 1, A[j - 1], vocab) for j in range(1, template.k + 1))


def entity_reverse_queries(template: EntityTemplate, A, B, vocab: int) -> tuple[Query, ...]:
    """The reverse query ``B r [M]^k``: query j (1-based) predicts a_j at slot k + m + j − 1."""
    template.check_tokens(vocab, A, B)
    k, m = template.k, template.m
    tokens = tuple(template.sequence(B, (vocab,) * k))
    return tuple(Query(tokens, k + m + j - 1, A[j - 1], vocab) for j in range(1, k + 1))


def reversed_forward_queries(template: EntityTemplate, A, B, vocab: int) -> tuple[Query, ...]:
    """The order-reversed forward configuration ``[M]^k r rev(B)`` (the forward configuration of the fact
    rev(A) r rev(B)), listed by A's token: query j (1-based) predicts a_j at slot k − j."""
    return tuple(reversed(entity_forward_queries(template, rev(A), rev(B), vocab)))


def arm_entity_forward_queries(template: EntityTemplate, A, B, vocab: int) -> tuple[Query, ...]:
    """ARM forward (teacher-forced "A r B"): query j predicts b_j at slot k + m + j − 1 from the query
    position k + m + j − 2 (a causal model reads only the prefix, so the whole sequence is passed)."""
    template.check_tokens(vocab, A, B)
    k, m = template.k, template.m
    tokens = tuple(template.sequence(A, B))
    return tuple(Query(tokens, k + m + j - 2, B[j - 1], vocab) for j in range(1, k + 1))


def arm_entity_reverse_queries(template: EntityTemplate, A, B, vocab: int) -> tuple[Query, ...]:
    """ARM reverse (teacher-forced "B r A"): query j predicts a_j from the prefix (B, r, a_<j), at the
    query position k + m + j − 2."""
    template.check_tokens(vocab, A, B)
    k, m = template.k, template.m
    tokens = tuple(template.sequence(B, A))
    return tuple(Query(tokens, k + m + j - 2, A[j - 1], vocab) for j in range(1, k + 1))


def configuration_logprobs(params: dict, cfg: ModelConfig, queries) -> torch.Tensor:
    """log p (n, V) at the slots of ``queries`` that read one common sequence (one configuration):
    a single forward pass."""
    check_params(params, cfg)
    queries = tuple(queries)
    if not queries or len({q.tokens for q in queries}) != 1:
        raise ValueError("queries must be a non-empty sequence of queries that share one token sequence")
    for q in queries:
        check_query(q, cfg)
    out = forward(params, cfg, queries[0].tensor(params["E"].device))
    slots = torch.tensor([q.slot for q in queries], dtype=torch.long, device=out.logits.device)
    return torch.log_softmax(out.logits[slots], dim=-1)


def configuration_loss(params: dict, cfg: ModelConfig, queries) -> torch.Tensor:
    """Σ_j −log p(target_j) over the queries of one configuration (the masked loss of its k tokens)."""
    queries = tuple(queries)
    logp = configuration_logprobs(params, cfg, queries)
    targets = torch.tensor([q.target for q in queries], dtype=torch.long, device=logp.device)
    return -logp.gather(-1, targets[:, None]).sum()


def entity_forward_loss(params: dict, cfg: ModelConfig, template: EntityTemplate, A, B) -> torch.Tensor:
    """L_f = Σ_j −log p(a_j | [M]^k r B; slot j − 1)."""
    return configuration_loss(params, cfg, entity_forward_queries(template, A, B, cfg.vocab))


def entity_reverse_loss(params: dict, cfg: ModelConfig, template: EntityTemplate, A, B) -> torch.Tensor:
    """L_r = Σ_j −log p(a_j | B r [M]^k; slot k + m + j − 1)."""
    return configuration_loss(params, cfg, entity_reverse_queries(template, A, B, cfg.vocab))
