"""C3 — positively aligned shared-storage gradient (THEORY §2, per draw, H-rel + H-orth + H-bi).

With ``G_f = ∂L_f/∂W_OV``, ``G_r = ∂L_r/∂W_OV`` (autograd, one layer, summed over heads)::

    ⟨G_f, G_r⟩_F = (p_f − y)ᵀ U Uᵀ (p_r − y) · Σ_h c_fᵀ c_r
                 = [(1 − p_f(A))(1 − p_r(A)) + Σ_{v≠A} p_f(v) p_r(v)] · Σ_h Σ_t α^f_h(t) α^r_h(t)
                 ≥ (1 − p_f(A))(1 − p_r(A)) · Σ_h Σ_t α^f_h(t) α^r_h(t) > 0,

the sum over t token-aligned: the forward positions (M, r, B) meet the reverse positions (B, r, M)
in reverse order. Margins are relative (⟨G_f, G_r⟩ can be 1e-8 when p_f(A) ≈ 1): the positivity
margin is the cosine ⟨G_f, G_r⟩/(‖G_f‖‖G_r‖), the lower-bound margin (value − bound)/value.
"""

from __future__ import annotations

import dataclasses
import random

import torch

from .. import tolerances as tol
from ..checks import CheckResult, Counterexample, NegativeControl, identity, inequality
from ..facts import Query, Template, arm_forward_query, arm_reverse_query
from ..gradients import storage_gradient_closed_form
from ..model import ModelConfig
from ..params import resolve_device
from ..strategies import sample_case
from ..training import train
from .c1 import (
    N_HEADS,
    _describe,
    _draws,
    _prepare,
    case_args,
    pair_queries,
    search,
    seeded_cases,
    storage_gradient,
)

DESCENT_STEPS, DESCENT_LR = 60, 0.1  # the negative controls' targeted search (Adam on the cosine)


def first_factor(p_f: torch.Tensor, y_f: int, p_r: torch.Tensor, y_r: int) -> torch.Tensor:
    """(p_f − e_{y_f})ᵀ(p_r − e_{y_r}): the factor of ⟨G_f, G_r⟩ that H-orth leaves from U Uᵀ.
    The MDM has y_f = y_r = A (≥ (1 − p_f(A))(1 − p_r(A)) > 0); the ARM y_f = B, y_r = A, which at
    uniform outputs gives exactly 1/V − 2/V = −1/V."""
    for name, p in (("p_f", p_f), ("p_r", p_r)):
        if p.dim() != 1:
            raise ValueError(f"{name} must be a probability vector (V,); got shape {tuple(p.shape)}")
    V = p_f.shape[0]
    for name, y in (("y_f", y_f), ("y_r", y_r)):
        if isinstance(y, bool) or not isinstance(y, int) or not 0 <= y < V:
            raise ValueError(f"{name} must be a token id in [0, {V - 1}]; got {y!r}")
    rf, rr = p_f.clone(), p_r.clone()
    rf[y_f] -= 1
    rr[y_r] -= 1
    return rf @ rr


def first_factor_bound(p_f: torch.Tensor, y_f: int, p_r: torch.Tensor, y_r: int, e_p_f=None, e_p_r=None) -> float:
    """Bound on |fl(first_factor) − exact| (× STORAGE_SAFETY): two subtractions and a length-V dot,
    γ_{V+1} Σ|p_f − y_f||p_r − y_r|, plus Σ(e_f|p_r − y_r| + |p_f − y_f|e_r) for inputs within e_p."""
    rf, rr = p_f.clone(), p_r.clone()
    rf[y_f] -= 1
    rr[y_r] -= 1
    b = tol.gamma(p_f.shape[0] + 1) * float((rf.abs() * rr.abs()).sum())
    if e_p_f is not None:
        b += float((e_p_f * rr.abs() + rf.abs() * e_p_r).sum())
    return tol.STORAGE_SAFETY * b


def storage_alignment(params: dict, cfg: ModelConfig, fq: Query, rq: Query) -> dict:
    """⟨G_f, G_r⟩_F by autograd for any two queries, with both gradients, their query states and the
    bound on the inner product's distance to the exact one (safety 1)."""
    G_f, f = storage_gradient(params, cfg, fq)
    G_r, r = storage_gradient(params, cfg, rq)
    e_f = tol.storage_gradient_error_bound(params, cfg, fq, safety=1.0)
    e_r = tol.storage_gradient_error_bound(params, cfg, rq, safety=1.0)
    return {"G_f": G_f, "G_r": G_r, "f": f, "r": r, "e_G_f": e_f, "e_G_r": e_r,
            "ip": float((G_f * G_r).sum()), "ip_err": tol.storage_inner_product_error(G_f, G_r, e_f, e_r)}


def check_c3(params: dict, cfg: ModelConfig, template: Template, A: int, B: int) -> list[CheckResult]:
    """C3 on one draw: the identity, the lower bound and strict positivity of ⟨G_f, G_r⟩_F."""
    _prepare(params, cfg)
    V = cfg.vocab
    fq, rq = pair_queries(template, A, B, V)
    al = storage_alignment(params, cfg, fq, rq)
    f, r = al["f"], al["r"]
    P = float(first_factor(f.p, A, r.p, A))
    S = float((f.token_attention(V + 1) * r.token_attention(V + 1)).sum())
    F = P * S
    LB = float(f.resid[A] * r.resid[A]) * S
    T = len(fq.tokens)
    t_F, t_LB = tol.c3_tolerances(al["ip_err"], -f.resid, -r.resid, f.e_p, r.e_p, A,
                                  f.token_attention(V + 1), r.token_attention(V + 1),
                                  f.token_attention(V + 1, error=True), r.token_attention(V + 1, error=True),
                                  T, tol.gram_defect(params["E"]), P, S, F, LB)
    ip = al["ip"]
    norms = float(al["G_f"].norm() * al["G_r"].norm())
    details = {"first_factor": P, "token_overlap": S, "n_heads": cfg.n_heads}
    return [
        identity("C3", "⟨G_f, G_r⟩ = [(1−p_f(A))(1−p_r(A)) + Σ_{v≠A} p_f(v)p_r(v)] Σ_t α^f(t)α^r(t)", ip, F, t_F,
                 **details),
        inequality("C3", "⟨G_f, G_r⟩ ≥ (1 − p_f(A))(1 − p_r(A)) Σ_t α^f(t)α^r(t)", ip, LB, ">=", abs(F), t_LB,
                   **details),
        inequality("C3", "⟨G_f, G_r⟩ > 0 (margin: cosine)", ip, 0.0, ">", norms, tol.STORAGE_SAFETY * al["ip_err"],
                   **details),
    ]


def run_c3(draws: int, seed: int, device: str = "cpu") -> list[CheckResult]:
    """C3 on ``draws`` seeded draws under H-rel + H-orth + H-bi, 1–3 heads."""
    resolve_device(device)
    rng = random.Random(seed)
    out = []
    for _ in range(_draws(draws)):
        out += check_c3(*case_args(sample_case(rng, n_heads=N_HEADS), device))
    return out


RUNNERS = {"C3": run_c3}


# ---------------------------------------------------------------------------------------------
# negative controls


def arm_queries(template: Template, A: int, B: int, vocab: int) -> tuple[Query, Query]:
    """The ARM contrast: forward (A, r, …) → B, reverse (B, r, …) → A, both at slot b − 1."""
    return arm_forward_query(template, A, B, vocab), arm_reverse_query(template, A, B, vocab)


def uniform_first_factor(vocab: int, device: str = "cpu") -> tuple[float, float]:
    """The ARM's first factor (p − y_B)ᵀ(p − y_A) at uniform p = 1/V, and its rounding bound; the
    exact value is −1/V."""
    p = torch.full((vocab,), 1.0 / vocab, dtype=torch.float64, device=resolve_device(device))
    # 1/V itself rounds (relative u): the dot moves by ≤ u Σ_v (|p_v − y_f,v| + |p_v − y_r,v|) p_v
    e_p = tol.UNIT_ROUNDOFF * p
    return float(first_factor(p, 1, p, 0)), first_factor_bound(p, 1, p, 0, e_p, e_p)


def _negative_alignment(params, cfg, fq, rq):
    al = storage_alignment(params, cfg, fq, rq)
    return al["ip"], tol.STORAGE_SAFETY * al["ip_err"], al


def alignment_cosine(params: dict, cfg: ModelConfig, fq: Query, rq: Query) -> torch.Tensor:
    """⟨G_f, G_r⟩/(‖G_f‖‖G_r‖) from the closed-form gradients (differentiable in the parameters)."""
    G_f = storage_gradient_closed_form(params, cfg, fq)
    G_r = storage_gradient_closed_form(params, cfg, rq)
    return (G_f * G_r).sum() / (G_f.norm() * G_r.norm())


def descend_alignment(params: dict, cfg: ModelConfig, fq: Query, rq: Query, names: tuple[str, ...],
                      steps: int = DESCENT_STEPS, lr: float = DESCENT_LR) -> dict:
    """A targeted search step: Adam on :func:`alignment_cosine` over the parameters ``names`` only
    (the others, e.g. orthonormal token embeddings, stay as drawn)."""
    return train(params, lambda p: alignment_cosine(p, cfg, fq, rq), steps=steps, lr=lr, trainable=names)


def negative_alignment(params: dict, cfg: ModelConfig, fq: Query, rq: Query):
    """(⟨G_f, G_r⟩, details) when ⟨G_f, G_r⟩ < 0 beyond its rounding bound (autograd), else None."""
    ip, bound, al = _negative_alignment(params, cfg, fq, rq)
    if ip < -bound:
        return ip, {"inner_product": ip, "bound": bound,
                    "first_factor": float(first_factor(al["f"].p, fq.target, al["r"].p, rq.target))}
    return None


def search_negative_alignment(claim: str, dropped: str, draws: int, cases, queries, names, device,
                              confirm=negative_alignment) -> Counterexample:
    """Seeded search for a violation ``confirm(params, cfg, fq, rq)`` (default: ⟨G_f, G_r⟩ < 0 beyond
    rounding): each draw is examined as drawn, then after :func:`descend_alignment` over ``names``
    (which lowers the storage alignment); ``queries(case)`` gives (fq, rq)."""

    def violation(item):
        _, case = item
        params = case.params(device)
        fq, rq = queries(case)
        for stage in ("as drawn", "after descent"):
            if stage == "after descent":
                params = descend_alignment(params, case.cfg, fq, rq, names)
            hit = confirm(params, case.cfg, fq, rq)
            if hit is not None:
                moved = list(names) if stage == "after descent" else []
                return hit[0], _describe(case, stage=stage, moved=moved, **hit[1])
        return None

    return search(claim, dropped, _draws(draws), cases, violation)


def _mdm_queries(case):
    return pair_queries(case.template, case.A, case.B, case.cfg.vocab)


def _arm_queries(case):
    return arm_queries(case.template, case.A, case.B, case.cfg.vocab)


def c3_arm(draws: int, seed: int, device: str = "cpu") -> Counterexample:
    """ARM (causal, next-token targets B then A, orthonormal embeddings): ⟨G_f, G_r⟩ < 0 on some draw."""
    resolve_device(device)
    return search_negative_alignment("C3", "H-bi (ARM: causal attention, next-token targets)", draws,
                                     seeded_cases(seed, attention="causal"), _arm_queries, ("W_Q", "W_K", "W_OV"),
                                     device)


def c3_non_orth(draws: int, seed: int, device: str = "cpu") -> Counterexample:
    """Non-orthonormal embeddings at V = 20, d = 4 (rope or t5: under alibi and none a mirror-
    symmetric template makes the two queries identical, G_f = G_r, and no embedding can flip the sign)."""
    resolve_device(device)
    return search_negative_alignment("C3", "H-orth (non-orthonormal embeddings, V = 20, d = 4)", draws,
                                     seeded_cases(seed, orthonormal=False, vocab=20, d_model=4,
                                                  pos=("rope", "t5")),
                                     _mdm_queries, ("E", "W_Q", "W_K", "W_OV"), device)


def c3_absolute(draws: int, seed: int, device: str = "cpu") -> Counterexample:
    """Learned absolute positions with orthonormal token embeddings: positions enter c_f and c_r; the
    search moves only the position vectors P."""
    resolve_device(device)
    return search_negative_alignment("C3", "H-rel (learned absolute positions)", draws,
                                     _learned(seeded_cases(seed, pos=("absolute",))), _mdm_queries, ("P",),
                                     device)


def _learned(cases):
    """The same draws with learned (trainable) absolute positions."""
    for rng, case in cases:
        yield rng, dataclasses.replace(case, cfg=dataclasses.replace(case.cfg, absolute_kind="learned"))


NEGATIVE_CONTROLS = [
    NegativeControl("C3~arm", "C3", "H-bi (ARM: causal attention, next-token targets)",
                    "the ARM's targets differ (B forward, A reverse): first factor −1/V at uniform outputs, "
                    "and ⟨G_f, G_r⟩ < 0 on some draw", c3_arm, 20),
    NegativeControl("C3~non-orth", "C3", "H-orth (non-orthonormal embeddings)",
                    "with overlapping embeddings (V = 20, d = 4) some pair has ⟨G_f, G_r⟩ < 0", c3_non_orth, 20),
    NegativeControl("C3~absolute", "C3", "H-rel (absolute positions)",
                    "position vectors enter c_f and c_r: some pair has ⟨G_f, G_r⟩ < 0", c3_absolute, 20),
]
