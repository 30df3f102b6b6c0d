"""The storage toolkit: what every claim about the value path (C1, C3, C3v, C4a, …) reads off the model.

One layer, query slot i. Under H-rel the layer input at position j is the embedding of the token
t_j wherever it sits, so a query's context depends on its *token-aligned* attention only:
``c = Σ_j α_j x_{t_j} = Σ_t α(t) x_t`` with ``α(t) = Σ_{j: t_j = t} α_j``.

* :class:`QueryState` — one query evaluated at its slot (attention, context, logits, log-probs) with
  the first-order rounding bounds of :func:`mdm_props.rounding.forward_error_bounds` (safety 1).
* :func:`storage_gradient`, :func:`storage_step` — ``G = ∂L/∂W_OV`` by autograd and one step on it.
* :func:`token_attention`, :func:`aligned_positions` — token-aligned attention and alignment.
* :func:`pair_queries`, :func:`arm_queries` — the forward/reverse pair of the MDM and of the ARM.
* :class:`Alignment` (:func:`storage_alignment`) — ⟨G_f, G_r⟩ with both gradients and its bound.
* :class:`ReverseStep` (:func:`reverse_step`) — one forward storage step seen from the reverse query.
* :func:`first_factor` — ``(p_f − y_f)ᵀ(p_r − y_r)``, the factor H-orth leaves of ``U Uᵀ``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import rounding
from .facts import Query, Template, arm_forward_query, arm_reverse_query, forward_query, query_loss, reverse_query
from .model import ForwardOutput, ModelConfig, embed, forward, unembedding, value_matrix
from .params import check_params
from .validation import require_int


def require_storage_model(cfg: ModelConfig, *, tied: bool = True) -> None:
    """The storage claims are about one layer with a merged W_OV (and, under H-orth, a tied U)."""
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"cfg must be a ModelConfig; got {type(cfg).__name__}")
    if cfg.n_layers != 1:
        raise ValueError(f"cfg.n_layers must be 1 (the storage claims are about one layer); got {cfg.n_layers}")
    if not cfg.merged_ov:
        raise ValueError("cfg.merged_ov must be True: the storage step moves the merged W_OV")
    if tied and not cfg.tied:
        raise ValueError("cfg.tied must be True: H-orth needs the tied unembedding U = E[:V]")


def require_storage_inputs(params: dict, cfg: ModelConfig, *, tied: bool = True) -> None:
    """:func:`require_storage_model` and :func:`mdm_props.params.check_params` together."""
    require_storage_model(cfg, tied=tied)
    check_params(params, cfg)


STORAGE_HYPOTHESES = ("H-rel", "H-orth", "H-bi")


def unmet_hypotheses(params: dict, cfg: ModelConfig, hypotheses=STORAGE_HYPOTHESES) -> list[str]:
    """The hypotheses among ``hypotheses`` (ids of :data:`mdm_props.registry.HYPOTHESES`) that this draw
    violates, each as a sentence with the measured reason; empty when all hold.

    H-rel: ``cfg.pos`` is relative (not ``absolute``). H-bi: ``cfg.attention`` is bidirectional.
    H-orth: the tied embeddings' Gram defect ω (:func:`mdm_props.rounding.gram_defect`) is within
    :func:`mdm_props.rounding.gram_defect_limit` (rounding alone), and the unembedding is tied."""
    unknown = set(hypotheses) - set(STORAGE_HYPOTHESES)
    if unknown:
        raise ValueError(f"hypotheses must be among {', '.join(STORAGE_HYPOTHESES)}; got {sorted(unknown)}")
    out = []
    if "H-rel" in hypotheses and not cfg.relative:
        out.append(f"H-rel fails: pos={cfg.pos!r} puts positions into the values (need one of rope, alibi, t5, none)")
    if "H-bi" in hypotheses and cfg.attention != "bidirectional":
        out.append(f"H-bi fails: attention={cfg.attention!r} (the MDM's attention is bidirectional)")
    if "H-orth" in hypotheses:
        if not cfg.tied:
            out.append("H-orth fails: the unembedding is not tied (U ≠ E[:V])")
        else:
            omega, limit = rounding.gram_defect(params["E"]), rounding.gram_defect_limit(cfg.d_model)
            if not omega <= limit:
                out.append(f"H-orth fails: Gram defect of E ω = {omega:.3g} > {limit:.3g} (= 1e3·d·u, rounding alone)")
    return out


@dataclass(frozen=True)
class QueryState:
    """One query evaluated by the model at its slot, with first-order rounding bounds (safety 1)."""

    query: Query
    tokens: torch.Tensor  # (T,)
    inputs: torch.Tensor  # (T, d) layer input x_j
    attn: torch.Tensor  # (H, T) attention of the query slot
    context: torch.Tensor  # (H, d) c^h = Σ_j α_hj x_j
    logits: torch.Tensor  # (V,)
    logp: torch.Tensor  # (V,) log_softmax(logits)
    e_attn: torch.Tensor
    e_context: torch.Tensor
    e_logits: torch.Tensor
    e_logp: torch.Tensor

    @property
    def p(self) -> torch.Tensor:
        """p = exp(log p) (V,), the form autograd's log-softmax backward uses."""
        return torch.exp(self.logp)

    @property
    def e_p(self) -> torch.Tensor:
        return rounding.probability_error(self.logp, self.e_logp)

    @property
    def resid(self) -> torch.Tensor:
        """y − p (..., V), y the one-hot target (any leading axes: a batched state has one)."""
        y = torch.zeros_like(self.logp)
        y[..., self.query.target] = 1.0
        return y - self.p

    def token_attention(self, n_tokens: int, *, error: bool = False) -> torch.Tensor:
        """α(t) (H, n_tokens), or the bound on its error when ``error``."""
        return token_attention(self.e_attn if error else self.attn, self.tokens, n_tokens)


def evaluate(params: dict, cfg: ModelConfig, query: Query, out: ForwardOutput | None = None) -> QueryState:
    """Run the model on ``query`` (or read ``out``, a :func:`forward` result for it) and its bounds."""
    tokens = query.tensor(params["E"].device)
    if out is None:
        out = forward(params, cfg, tokens)
    b = rounding.forward_error_bounds(params, cfg, tokens, safety=1.0)
    i = query.slot
    logits = out.logits[i].detach()
    return QueryState(
        query,
        tokens,
        out.inputs.detach(),
        out.attn[0, :, i].detach(),
        out.context[0, :, i].detach(),
        logits,
        torch.log_softmax(logits, dim=-1),
        b["attn"][0, :, i],
        b["context"][0, :, i],
        b["logits"][i],
        b["logprobs"][i],
    )


def storage_gradient(params: dict, cfg: ModelConfig, query: Query) -> tuple[torch.Tensor, QueryState]:
    """G = ∂(−log p(target))/∂W_OV of layer 0 by autograd, shape (H, d, d), and the
    :class:`QueryState` of the same evaluation."""
    tokens = query.tensor(params["E"].device)
    W = params["W_OV"].detach().requires_grad_(True)
    with torch.enable_grad():
        out = forward({**params, "W_OV": W}, cfg, tokens)
        loss = -torch.log_softmax(out.logits[query.slot], dim=-1)[query.target]
        (G,) = torch.autograd.grad(loss, W)
    return G[0], evaluate(params, cfg, query, out)


def parameter_gradient(params: dict, cfg: ModelConfig, query: Query, name: str) -> torch.Tensor:
    """∂(−log p(target))/∂``name`` of layer 0 by autograd (the layer axis dropped), e.g. the value
    gradient G^V of a factored value path (``name="W_V"``)."""
    if name not in params:
        raise ValueError(f"name must be one of the parameters {sorted(params)}; got {name!r}")
    W = params[name].detach().requires_grad_(True)
    with torch.enable_grad():
        (G,) = torch.autograd.grad(query_loss({**params, name: W}, cfg, query), W)
    return G[0]


def storage_step(params: dict, G: torch.Tensor, eta) -> dict:
    """Parameters after one step W_OV ← W_OV − η G on layer 0: G (H, d, d) and a float η, or a batch of
    draws, G (K, H, d, d) and η (K,) (the batched checkers use this same step)."""
    step = G.unsqueeze(-4)  # the layer axis of W_OV
    if isinstance(eta, torch.Tensor) and eta.dim() == 1:
        eta = eta.reshape(-1, 1, 1, 1, 1)
    return {**params, "W_OV": params["W_OV"] - eta * step}


def token_attention(attn: torch.Tensor, tokens: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """α(t) = Σ_{j: tokens_j = t} α_j for every token id t < n_tokens: (..., T) → (..., n_tokens).
    A product with a one-hot matrix: only exact zeros are added besides the sum itself."""
    onehot = torch.nn.functional.one_hot(tokens, n_tokens).to(attn.dtype)
    return attn @ onehot


def aligned_positions(src_tokens, dst_tokens) -> list[int]:
    """The token alignment of two sequences with one token multiset: for each position j of
    ``dst``, the position of ``src`` holding the same token (k-th occurrence to k-th occurrence).
    Forward (M, r, B) and reverse (B, r, M) align in reverse order: [2, 1, 0]."""
    src, dst = [int(t) for t in src_tokens], [int(t) for t in dst_tokens]
    if sorted(src) != sorted(dst):
        raise ValueError(f"src_tokens and dst_tokens must hold the same tokens; got {src} and {dst}")
    where: dict[int, list[int]] = {}
    for i, t in enumerate(src):
        where.setdefault(t, []).append(i)
    taken: dict[int, int] = {}
    out = []
    for t in dst:
        out.append(where[t][taken.get(t, 0)])
        taken[t] = taken.get(t, 0) + 1
    return out


def value_path_logits(
    params: dict, cfg: ModelConfig, tokens: torch.Tensor, slot: int, attn: torch.Tensor
) -> torch.Tensor:
    """Logits U(x_slot + Σ_h W_OV^h Σ_j attn_hj x_j) (V,) of one layer with the attention row
    ``attn`` (H, T) imposed instead of computed (x = the layer input, positions included)."""
    x = embed(params, cfg, tokens)
    W = value_matrix(params, cfg, 0)
    return unembedding(params, cfg) @ (x[slot] + torch.einsum("hed,hd->e", W, attn @ x))


def pair_queries(template: Template, A: int, B: int, vocab: int) -> tuple[Query, Query]:
    """The MDM's forward query (M at slot a, target A) and reverse query (B at a, M at b, target A)."""
    return forward_query(template, A, B, vocab), reverse_query(template, A, B, vocab)


def arm_queries(template: Template, A: int, B: int, vocab: int) -> tuple[Query, Query]:
    """The ARM contrast: forward (A, r, …) → B, reverse (B, r, …) → A, both at slot b − 1."""
    return arm_forward_query(template, A, B, vocab), arm_reverse_query(template, A, B, vocab)


def first_factor(p_f: torch.Tensor, y_f: int, p_r: torch.Tensor, y_r: int) -> torch.Tensor:
    """(p_f − e_{y_f})ᵀ(p_r − e_{y_r}): the factor of ⟨G_f, G_r⟩ that H-orth leaves from U Uᵀ.
    The MDM has y_f = y_r = A (≥ (1 − p_f(A))(1 − p_r(A)) > 0); the ARM y_f = B, y_r = A, which at
    uniform outputs gives exactly 1/V − 2/V = −1/V.

    Probability vectors (V,), or batches (K, V) of them (one value per draw: the batched checkers use
    this same formula)."""
    for name, p in (("p_f", p_f), ("p_r", p_r)):
        if p.dim() not in (1, 2) or p.shape != p_f.shape:
            raise ValueError(
                f"{name} must be a probability vector (V,) or a batch (K, V) shaped like p_f; "
                f"got shape {tuple(p.shape)}"
            )
    V = p_f.shape[-1]
    for name, y in (("y_f", y_f), ("y_r", y_r)):
        require_int(name, y, 0, V - 1)
    rf, rr = p_f.clone(), p_r.clone()
    rf[..., y_f] -= 1
    rr[..., y_r] -= 1
    return (rf * rr).sum(-1)


@dataclass(frozen=True)
class Alignment:
    """⟨G_f, G_r⟩_F of two queries' storage gradients (autograd), with everything its bounds read."""

    G_f: torch.Tensor  # (H, d, d)
    G_r: torch.Tensor
    f: QueryState
    r: QueryState
    e_G_f: torch.Tensor  # rounding.storage_gradient_error_bound, safety 1
    e_G_r: torch.Tensor
    ip: float  # fl(Σ Ĝ_f ∘ Ĝ_r)
    ip_err: float  # rounding.storage_inner_product_error, safety 1

    @property
    def norms(self) -> float:
        """‖G_f‖‖G_r‖: the scale of the cosine margin."""
        return float(self.G_f.norm() * self.G_r.norm())


def storage_alignment(params: dict, cfg: ModelConfig, fq: Query, rq: Query) -> Alignment:
    """⟨G_f, G_r⟩_F by autograd for any two queries (the MDM pair, or the ARM's)."""
    G_f, f = storage_gradient(params, cfg, fq)
    G_r, r = storage_gradient(params, cfg, rq)
    e_f = rounding.storage_gradient_error_bound(params, cfg, fq, safety=1.0)
    e_r = rounding.storage_gradient_error_bound(params, cfg, rq, safety=1.0)
    return Alignment(
        G_f, G_r, f, r, e_f, e_r, float((G_f * G_r).sum()), rounding.storage_inner_product_error(G_f, G_r, e_f, e_r)
    )


@dataclass(frozen=True)
class ReverseStep:
    """Everything C1c and C4a read off one storage step on L_f, seen from the reverse query."""

    eta: float
    G_f: torch.Tensor
    e_G_f: torch.Tensor
    f: QueryState
    r0: QueryState  # reverse query before the step
    r1: QueryState  # and after
    S: float  # Σ_h ĉ_fᵀ ĉ_r
    e_S: float
    step_err: torch.Tensor  # (V,) rounding.storage_step_logit_error
    omega: float  # rounding.gram_defect of E


def reverse_step(params: dict, cfg: ModelConfig, template: Template, A: int, B: int, eta: float) -> ReverseStep:
    """Take one storage step on the forward loss and evaluate the reverse query before and after."""
    fq, rq = pair_queries(template, A, B, cfg.vocab)
    G, f = storage_gradient(params, cfg, fq)
    e_G = rounding.storage_gradient_error_bound(params, cfg, fq, safety=1.0)
    new = storage_step(params, G, eta)
    r0, r1 = evaluate(params, cfg, rq), evaluate(new, cfg, rq)
    S = float((f.context * r0.context).sum())
    e_S = rounding.context_overlap_error(f.context, r0.context, f.e_context, r0.e_context)
    U = unembedding(params, cfg)
    step_err = rounding.storage_step_logit_error(U, params["W_OV"][0], G, e_G, eta, r0.context, r0.e_context)
    return ReverseStep(eta, G, e_G, f, r0, r1, S, e_S, step_err, rounding.gram_defect(params["E"]))
