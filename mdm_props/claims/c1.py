"""C1 — reusable evidence (THEORY §2, C1a–C1c), and the storage-path helpers C3 and C4 reuse.

One layer, query slot i. Under H-rel the layer input at position j is the embedding of the token
t_j wherever it sits, so a query's context depends on its *token-aligned* attention only:
``c = Σ_j α_j x_{t_j} = Σ_t α(t) x_t`` with ``α(t) = Σ_{j: t_j = t} α_j``.

* C1a ``z_f = U(x_M + Σ_h W_OV^h c_f^h)``, ``z_r = U(x_M + Σ_h W_OV^h c_r^h)``; giving the reverse
  query the forward query's token-aligned attention reproduces the forward logits exactly.
* C1b one storage step ``W_OV ← W_OV − η ∂L_f/∂W_OV`` moves ``ε(A←B) = u_Aᵀ W_OV x_B`` by exactly
  ``η (1 − p_f(A)) α^f(B) > 0`` (H-orth; per head).
* C1c the same step moves the reverse logits by exactly ``η (y − p_f)(c_fᵀc_r)``, so every reverse
  margin ``z_r(A) − z_r(v)`` grows by ``η (1 − p_f(A) + p_f(v)) c_fᵀc_r > 0`` (H-orth).

Each checker compares the model's float64 values with the formula within the derived bound of
:mod:`mdm_props.tolerances` (sections C1, C3, C4) and returns :class:`~mdm_props.checks.CheckResult` s.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

from .. import tolerances as tol
from ..checks import CheckResult, Counterexample, NegativeControl, identity, inequality
from ..facts import Query, Template, forward_query, reverse_query
from ..model import ModelConfig, embed, forward, unembedding, value_matrix
from ..params import check_params, require_step, resolve_device
from ..strategies import sample_case

ETAS = (1e-3, 1e-2, 0.1, 1.0)  # storage step sizes drawn by runners and tests
N_HEADS = (1, 2, 3)


# ---------------------------------------------------------------------------------------------
# storage-path helpers (shared with C3 and C4)


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
        return tol.probability_error(self.logp, self.e_logp)

    @property
    def resid(self) -> torch.Tensor:
        """y − p (V,), y the one-hot target."""
        y = torch.zeros_like(self.logp)
        y[self.query.target] = 1.0
        return y - self.p

    def token_attention(self, n_tokens: int, *, error: bool = False) -> torch.Tensor:
        """α(t) (H, n_tokens), or the bound on its error when ``error``."""
        return token_attention(self.e_attn if error else self.attn, self.tokens, n_tokens)


def evaluate(params: dict, cfg: ModelConfig, query: Query, out: dict | None = None) -> QueryState:
    """Run the model on ``query`` (or read ``out``, a :func:`forward` result for it) and its bounds."""
    tokens = query.tensor(params["E"].device)
    if out is None:
        out = forward(params, cfg, tokens)
    b = tol.forward_error_bounds(params, cfg, tokens, safety=1.0)
    i = query.slot
    logits = out["logits"][i].detach()
    return QueryState(
        query, tokens, out["inputs"].detach(), out["attn"][0, :, i].detach(), out["context"][0, :, i].detach(),
        logits, torch.log_softmax(logits, dim=-1),
        b["attn"][0, :, i], b["context"][0, :, i], b["logits"][i], b["logprobs"][i],
    )


def storage_gradient(params: dict, cfg: ModelConfig, query: Query) -> tuple[torch.Tensor, QueryState]:
    """G = ∂(−log p(target))/∂W_OV of layer 0 by autograd, shape (H, d, d), and the
    :class:`QueryState` of the same evaluation."""
    tokens = query.tensor(params["E"].device)
    W = params["W_OV"].detach().requires_grad_(True)
    with torch.enable_grad():
        out = forward({**params, "W_OV": W}, cfg, tokens)
        loss = -torch.log_softmax(out["logits"][query.slot], dim=-1)[query.target]
        (G,) = torch.autograd.grad(loss, W)
    return G[0], evaluate(params, cfg, query, out)


def storage_step(params: dict, G: torch.Tensor, eta: float) -> dict:
    """Parameters after one step W_OV ← W_OV − η G on layer 0 (G: (H, d, d))."""
    return {**params, "W_OV": params["W_OV"] - eta * G[None]}


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


def value_path_logits(params: dict, cfg: ModelConfig, tokens: torch.Tensor, slot: int,
                      attn: torch.Tensor) -> torch.Tensor:
    """Logits U(x_slot + Σ_h W_OV^h Σ_j attn_hj x_j) (V,) of one layer with the attention row
    ``attn`` (H, T) imposed instead of computed (x = the layer input, positions included)."""
    x = embed(params, cfg, tokens)
    W = value_matrix(params, cfg, 0)
    return unembedding(params, cfg) @ (x[slot] + torch.einsum("hed,hd->e", W, attn @ x))


def worst_identity(claim: str, quantity: str, observed: torch.Tensor, exact: torch.Tensor, bound: torch.Tensor,
                   **details) -> CheckResult:
    """The entry of a vector comparison with the largest error/bound ratio, as one identity check."""
    ratio = (observed - exact).abs() / bound
    k = int(torch.argmax(torch.nan_to_num(ratio, nan=math.inf)))
    return identity(claim, quantity, float(observed.flatten()[k]), float(exact.flatten()[k]),
                    float(bound.flatten()[k]), entry=k, **details)


def pair_queries(template: Template, A: int, B: int, vocab: int) -> tuple[Query, Query]:
    return forward_query(template, A, B, vocab), reverse_query(template, A, B, vocab)


def _prepare(params: dict, cfg: ModelConfig, *, tied: bool = True) -> None:
    require_storage_model(cfg, tied=tied)
    check_params(params, cfg)


def _draws(draws) -> int:
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be an integer >= 1; got {draws!r}")
    return draws


def draw_cases(draws: int, seed: int, **kwargs) -> list:
    """``draws`` seeded :func:`~mdm_props.strategies.sample_case` draws (and a step size each)."""
    _draws(draws)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    rng = random.Random(seed)
    return [(sample_case(rng, **kwargs), rng.choice(ETAS)) for _ in range(draws)]


def case_args(case, device) -> tuple:
    return case.params(device), case.cfg, case.template, case.A, case.B


# ---------------------------------------------------------------------------------------------
# C1a


def check_c1a(params: dict, cfg: ModelConfig, template: Template, A: int, B: int, *,
              alignment: list[int] | None = None) -> list[CheckResult]:
    """C1a on one draw: the forward and reverse logits equal U(x_M + Σ_h W_OV^h Σ_t α^h(t) x_t), and the
    reverse logits under the forward query's token-aligned attention equal the forward logits.

    ``alignment`` maps each reverse position to the forward position whose attention it receives
    (default :func:`aligned_positions`, the token alignment)."""
    _prepare(params, cfg, tied=False)
    V = cfg.vocab
    fq, rq = pair_queries(template, A, B, V)
    f, r = evaluate(params, cfg, fq), evaluate(params, cfg, rq)
    E, U, W = params["E"], unembedding(params, cfg), value_matrix(params, cfg, 0)
    T = len(fq.tokens)
    results = []
    for name, s in (("z_f", f), ("z_r", r)):
        alpha, e_alpha = s.token_attention(V + 1), s.token_attention(V + 1, error=True)
        formula = U @ (E[V] + torch.einsum("hed,hd->e", W, alpha @ E))
        bound = tol.STORAGE_SAFETY * (s.e_logits + tol.value_path_error(U, E[V], W, alpha, e_alpha, E, 2 * T))
        results.append(worst_identity("C1a", f"{name} = U(x_M + Σ_h W_OV^h Σ_t α(t) x_t)", s.logits, formula, bound))
    align = aligned_positions(fq.tokens, rq.tokens) if alignment is None else list(alignment)
    if sorted(align) != list(range(T)):
        raise ValueError(f"alignment must be a permutation of range({T}); got {align}")
    forced, e_forced = f.attn[:, align], f.e_attn[:, align]
    z = value_path_logits(params, cfg, r.tokens, rq.slot, forced)
    x = embed(params, cfg, r.tokens)
    bound = tol.STORAGE_SAFETY * (f.e_logits + tol.value_path_error(U, x[rq.slot], W, forced, e_forced, x, T))
    results.append(worst_identity("C1a", "reverse logits with α^r forced to α^f (token-aligned) = z_f",
                                  z, f.logits, bound, alignment=align))
    return results


# ---------------------------------------------------------------------------------------------
# C1b


def check_c1b(params: dict, cfg: ModelConfig, template: Template, A: int, B: int, eta: float) -> list[CheckResult]:
    """C1b on one draw: Δε_h(A←B) after one step on L_f equals η(1 − p_f(A)) α^f_h(B) (worst head) and is > 0."""
    _prepare(params, cfg)
    eta = require_step(eta)
    V = cfg.vocab
    fq = forward_query(template, A, B, V)
    G, f = storage_gradient(params, cfg, fq)
    e_G = tol.storage_gradient_error_bound(params, cfg, fq, safety=1.0)
    W, W_new = params["W_OV"][0], storage_step(params, G, eta)["W_OV"][0]
    u_A, x_B = unembedding(params, cfg)[A], params["E"][B]
    observed = (u_A @ W_new) @ x_B - (u_A @ W) @ x_B  # (H,)
    q = f.resid[A]  # 1 − p_f(A)
    alpha_B, e_alpha_B = f.token_attention(V + 1)[:, B], f.token_attention(V + 1, error=True)[:, B]
    formula = eta * q * alpha_B
    args = (u_A, x_B, W, W_new, G, e_G, eta, float(q), float(f.e_p[A]), alpha_B, e_alpha_B)
    bound = tol.c1b_tolerance(*args, tol.gram_defect(params["E"]), formula, observed)
    rounding = tol.c1b_tolerance(*args, 0.0, formula, observed)  # without the H-orth defect term
    k = int(torch.argmin(observed / (eta * alpha_B)))
    return [
        worst_identity("C1b", "Δε(A←B) = η (1 − p_f(A)) α^f(B)", observed, formula, bound, eta=eta),
        inequality("C1b", "Δε(A←B) > 0", float(observed[k]), 0.0, ">", float(eta * alpha_B[k]),
                   float(rounding[k]), head=k, eta=eta),
    ]


# ---------------------------------------------------------------------------------------------
# C1c


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
    step_err: torch.Tensor  # (V,) storage_step_logit_error
    omega: float


def reverse_step(params: dict, cfg: ModelConfig, template: Template, A: int, B: int, eta: float) -> ReverseStep:
    """Take one storage step on the forward loss and evaluate the reverse query before and after."""
    fq, rq = pair_queries(template, A, B, cfg.vocab)
    G, f = storage_gradient(params, cfg, fq)
    e_G = tol.storage_gradient_error_bound(params, cfg, fq, safety=1.0)
    new = storage_step(params, G, eta)
    r0, r1 = evaluate(params, cfg, rq), evaluate(new, cfg, rq)
    S = float((f.context * r0.context).sum())
    e_S = tol.context_overlap_error(f.context, r0.context, f.e_context, r0.e_context)
    U = unembedding(params, cfg)
    step_err = tol.storage_step_logit_error(U, params["W_OV"][0], G, e_G, eta, r0.context, r0.e_context)
    return ReverseStep(eta, G, e_G, f, r0, r1, S, e_S, step_err, tol.gram_defect(params["E"]))


def check_c1c(params: dict, cfg: ModelConfig, template: Template, A: int, B: int, eta: float) -> list[CheckResult]:
    """C1c on one draw: Δz_r = η(y − p_f)(c_fᵀc_r) (worst token), the margin changes equal
    η(1 − p_f(A) + p_f(v)) c_fᵀc_r (worst v ≠ A), and the smallest margin change is > 0."""
    _prepare(params, cfg)
    eta = require_step(eta)
    st = reverse_step(params, cfg, template, A, B, eta)
    dz = st.r1.logits - st.r0.logits
    resid = st.f.resid
    formula = eta * resid * st.S
    dm, fm = dz[A] - dz, eta * (resid[A] - resid) * st.S
    args = (st.r0.e_logits, st.r1.e_logits, dz, st.step_err, eta, resid, st.f.e_p, A, st.S, st.e_S)
    bound, bound_m = tol.c1c_tolerances(*args, st.omega, formula, dm, fm)
    rounding_m = tol.c1c_tolerances(*args, 0.0, formula, dm, fm)[1]  # without the H-orth defect term
    others = torch.tensor([v for v in range(cfg.vocab) if v != A], device=dz.device)
    scale = eta * float((st.f.context.norm(dim=-1) * st.r0.context.norm(dim=-1)).sum())
    k = int(others[torch.argmin(dm[others])])
    return [
        worst_identity("C1c", "Δz_r = η (y − p_f)(c_fᵀc_r)", dz, formula, bound, eta=eta),
        worst_identity("C1c", "Δ(z_r(A) − z_r(v)) = η (1 − p_f(A) + p_f(v)) c_fᵀc_r", dm[others], fm[others],
                       bound_m[others], eta=eta),
        inequality("C1c", "min_{v≠A} Δ(z_r(A) − z_r(v)) > 0", float(dm[k]), 0.0, ">", scale, float(rounding_m[k]),
                   v=k, eta=eta),
    ]


# ---------------------------------------------------------------------------------------------
# runners


def run_c1a(draws: int, seed: int, device: str = "cpu") -> list[CheckResult]:
    """C1a on ``draws`` seeded draws (relative encodings; orthonormal embeddings or not: C1a needs H-rel only)."""
    resolve_device(device)
    rng = random.Random(seed)
    out = []
    for _ in range(_draws(draws)):
        out += check_c1a(*case_args(sample_case(rng, orthonormal=rng.random() < 0.5, n_heads=N_HEADS), device))
    return out


def run_c1b(draws: int, seed: int, device: str = "cpu") -> list[CheckResult]:
    """C1b on ``draws`` seeded H-orth draws, 1–3 heads, η from ETAS."""
    resolve_device(device)
    return [r for case, eta in draw_cases(draws, seed, n_heads=N_HEADS)
            for r in check_c1b(*case_args(case, device), eta)]


def run_c1c(draws: int, seed: int, device: str = "cpu") -> list[CheckResult]:
    """C1c on ``draws`` seeded H-orth draws, 1–3 heads, η from ETAS."""
    resolve_device(device)
    return [r for case, eta in draw_cases(draws, seed, n_heads=N_HEADS)
            for r in check_c1c(*case_args(case, device), eta)]


RUNNERS = {"C1a": run_c1a, "C1b": run_c1b, "C1c": run_c1c}


# ---------------------------------------------------------------------------------------------
# negative controls: seeded searches that must find a violation once a hypothesis is dropped


def search(claim: str, dropped: str, draws: int, candidates, violation) -> Counterexample:
    """Examine ``candidates`` (an iterable of draws) until ``violation(candidate)`` returns
    ``(observed, example_dict)`` instead of None, at most ``draws`` of them."""
    n = 0
    for n, cand in enumerate(candidates, 1):
        hit = violation(cand)
        if hit is not None:
            observed, example = hit
            return Counterexample(claim, dropped, True, n, example, float(observed))
        if n >= draws:
            break
    return Counterexample(claim, dropped, False, n)


def _tuple(template: Template) -> tuple:
    return (template.length, template.a, template.b, template.fillers)


def _describe(case, **more) -> dict:
    """A draw as a plain dict (``more`` overrides entries, e.g. the pair actually examined)."""
    c = case.cfg
    return {"pos": c.pos, "vocab": c.vocab, "d_model": c.d_model, "d_head": c.d_head, "n_heads": c.n_heads,
            "rope_base": c.rope_base, "absolute_kind": c.absolute_kind, "attention": c.attention,
            "seed": case.seed, "scale": case.scale, "orthonormal": case.orthonormal,
            "template": _tuple(case.template),
            "A": case.A, "B": case.B, **more}


def seeded_cases(seed: int, **kwargs):
    """An endless seeded stream of (rng, :func:`~mdm_props.strategies.sample_case` draw) for searches."""
    rng = random.Random(seed)
    while True:
        yield rng, sample_case(rng, **kwargs)


def c1a_absolute(draws: int, seed: int, device: str = "cpu") -> Counterexample:
    """Absolute positions: the reverse logits under the forward token-aligned attention differ from z_f."""
    resolve_device(device)

    def violation(item):
        _, case = item
        forced = check_c1a(*case_args(case, device))[-1]
        return None if forced.holds else (forced.error, _describe(case, error=forced.error, bound=forced.tolerance))

    return search("C1a", "H-rel (absolute positions)", _draws(draws), seeded_cases(seed, pos=("absolute",)),
                  violation)


def _small_d_cases(seed: int):
    """Non-orthonormal draws in d_model = 2 … 4, where embedding overlaps are large."""
    rng = random.Random(seed)
    while True:
        yield rng, sample_case(rng, orthonormal=False, d_model=rng.randint(2, 4))


def _all_pairs(case):
    V = case.cfg.vocab
    for A in range(V):
        for B in range(V):
            if A != B:
                free = min(t for t in range(V) if t not in (A, B))
                yield A, B, Template(3, 0, 2, (free,))


def c1b_non_orth(draws: int, seed: int, device: str = "cpu") -> Counterexample:
    """Non-orthonormal embeddings (d ≤ 4): some pair's evidence ε(A←B) decreases after the step."""
    resolve_device(device)

    def violation(item):
        rng, case = item
        params, eta = case.params(device), rng.choice(ETAS)
        for A, B, template in _all_pairs(case):
            pos = check_c1b(params, case.cfg, template, A, B, eta)[1]
            if pos.observed < -pos.tolerance:  # negative by more than its rounding bound
                return pos.observed, _describe(case, A=A, B=B, template=_tuple(template), eta=eta,
                                               delta_eps=pos.observed)
        return None

    return search("C1b", "H-orth (non-orthonormal embeddings)", _draws(draws),
                  _small_d_cases(seed), violation)


def c1c_non_orth(draws: int, seed: int, device: str = "cpu") -> Counterexample:
    """Non-orthonormal embeddings: the step shrinks some reverse margin z_r(A) − z_r(v)."""
    resolve_device(device)

    def violation(item):
        rng, case = item
        params, eta = case.params(device), rng.choice(ETAS)
        for A, B, template in _all_pairs(case):
            pos = check_c1c(params, case.cfg, template, A, B, eta)[2]
            if pos.observed < -pos.tolerance:
                return pos.observed, _describe(case, A=A, B=B, template=_tuple(template), eta=eta, v=pos.details["v"],
                                               margin_change=pos.observed)
        return None

    return search("C1c", "H-orth (non-orthonormal embeddings)", _draws(draws),
                  _small_d_cases(seed), violation)


NEGATIVE_CONTROLS = [
    NegativeControl("C1a~absolute", "C1a", "H-rel (absolute positions)",
                    "absolute positions enter the values: forcing token-aligned attention equal leaves z_r ≠ z_f",
                    c1a_absolute, 20),
    NegativeControl("C1b~non-orth", "C1b", "H-orth (non-orthonormal embeddings)",
                    "without orthonormal embeddings a forward step can lower the stored evidence ε(A←B)",
                    c1b_non_orth, 20),
    NegativeControl("C1c~non-orth", "C1c", "H-orth (non-orthonormal embeddings)",
                    "without orthonormal embeddings a forward step can shrink a reverse margin",
                    c1c_non_orth, 20),
]
