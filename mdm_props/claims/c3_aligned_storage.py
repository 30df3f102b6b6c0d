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

from dataclasses import dataclass

import torch

from .. import batched, certified, claim
from ..checks import CheckResult, Counterexample, NegativeControl
from ..claim import Certified, Draw, Identity, Inequality, Proof, Spec
from ..facts import Template
from ..model import ModelConfig
from ..params import resolve_device
from ..registry import Claim
from ..rounding import (
    STORAGE_SAFETY,
    UNIT_ROUNDOFF,
    gamma,
    gram_defect_batch,
    storage_inner_product_error_batch,
)
from ..search import (
    ARM_DROPPED,
    case_args,
    learned_positions,
    mdm_case_queries,
    per_draw_cases,
    search_arm,
    search_negative_alignment,
    seeded_cases,
)
from ..storage import (
    QueryState,
    arm_queries,
    first_factor,
    pair_queries,
)
from ..strategies import N_HEADS
from ..tightness import TIGHT_SEED, tightness_check
from .c1_reusable_evidence import TIGHT_DRAWS

# ---------------------------------------------------------------------------------------------
# the product and its bounds


@dataclass(frozen=True)
class StorageProduct:
    """C3's right-hand side for one forward/reverse pair of query states (target A):
    P = (p_f − y)ᵀ(p_r − y) (the first factor), S = Σ_h Σ_t α^f_h(t) α^r_h(t) (token-aligned overlap),
    F = P·S (the identity's value) and LB = (1 − p_f(A))(1 − p_r(A))·S (the lower bound)."""

    P: float
    S: float
    F: float
    LB: float


def storage_product(f: QueryState, r: QueryState, A: int, vocab: int) -> StorageProduct:
    """:func:`storage_product_batch` of one draw's query states (a batch of one), as floats."""
    b = storage_product_batch(batched.one_state(f), batched.one_state(r), A, vocab)
    return StorageProduct(float(b.P[0]), float(b.S[0]), float(b.F[0]), float(b.LB[0]))


@dataclass(frozen=True)
class StorageProductBatch:
    """:class:`StorageProduct` of every draw of a batch: P, S, F, LB as (K,) tensors."""

    P: torch.Tensor
    S: torch.Tensor
    F: torch.Tensor
    LB: torch.Tensor


def storage_product_batch(f: QueryState, r: QueryState, A: int, vocab: int) -> StorageProductBatch:
    """C3's right-hand side per draw for batched query states (leading axis K): P (first factor,
    :func:`mdm_props.storage.first_factor`), S = Σ_h Σ_t α^f_h(t) α^r_h(t), F = P·S, LB = (1 − p_f(A))(1 − p_r(A))·S."""
    P = batched.first_factor(f.p, r.p, A)
    S = (f.token_attention(vocab + 1) * r.token_attention(vocab + 1)).sum((-1, -2))
    return StorageProductBatch(P, S, P * S, (f.resid[..., A] * r.resid[..., A]) * S)


def c3_tolerances(f: QueryState, r: QueryState, A: int, vocab: int, omega: float, ip_err: float) -> tuple[float, float]:
    """:func:`c3_tolerances_batch` of one draw's query states (a batch of one), as floats."""
    t_F, t_LB = c3_tolerances_batch(batched.one_state(f), batched.one_state(r), A, vocab, omega, ip_err)
    return float(t_F[0]), float(t_LB[0])


def c3_tolerances_batch(
    f: QueryState, r: QueryState, A: int, vocab: int, omega, ip_err
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds for C3 per draw (K,) of batched query states ``f``, ``r`` (target A), × STORAGE_SAFETY: on
    |⟨Ĝ_f, Ĝ_r⟩ − P̂Ŝ| and on the lower bound's weak side; ``ip_err`` (K,) the inner product's own rounding
    (safety 1; :func:`~mdm_props.rounding.storage_inner_product_error_batch`, or 0 for the formula side
    alone), ``omega`` (K,) the Gram defect of E. The one formula: :func:`c3_tolerances` (one draw) calls it.

    P = (p_f − y)ᵀ(p_r − y), S = Σ_h Σ_t α^f_h(t) α^r_h(t) (token-aligned, tok_* (K, H, V+1)).
    Observed side: ``ip_err`` to the exact ⟨G_f, G_r⟩ = (p_f − y)ᵀΓ_VV(p_r − y) · Σ_h α^fᵀ_h Γ α^r_h with
    Γ = EEᵀ (contexts are Σ_t α(t) x_t exactly under H-rel). H-orth: Γ = I + Δ, |Δ| ≤ ω ⇒ the product
    moves by ≤ ω(‖p_f − y‖₁‖p_r − y‖₁(S + ωH) + |P|H).
    Formula side: P̂ — :func:`first_factor_error`; Ŝ — the α(t) sums and the length-H(V+1) dot of
    positive terms, γ_{2T+H(V+1)} S, plus Σ(e_α^f α^r + α^f e_α^r); the product u|F| + |P|e_S + S e_P.
    Lower bound LB = (1 − p_f(A))(1 − p_r(A)) S: γ_3|LB| + S(e_f,A(1 − p_r(A)) + (1 − p_f(A)) e_r,A) +
    (1 − p_f(A))(1 − p_r(A)) e_S.
    """
    prod = storage_product_batch(f, r, A, vocab)
    P, S = prod.P, prod.S
    tok_f, tok_r = f.token_attention(vocab + 1), r.token_attention(vocab + 1)
    e_tok_f, e_tok_r = f.token_attention(vocab + 1, error=True), r.token_attention(vocab + 1, error=True)
    H, n_tok = tok_f.shape[-2:]
    T = len(f.query.tokens)
    rf, rr = f.resid.abs(), r.resid.abs()
    defect = omega * (rf.sum(-1) * rr.sum(-1) * (S + omega * H) + P.abs() * H)
    e_P = first_factor_error(f.p, A, r.p, A, f.e_p, r.e_p)
    e_S = gamma(2 * T + H * n_tok) * S + (e_tok_f * tok_r.abs() + tok_f.abs() * e_tok_r).sum((-1, -2))
    F_err = UNIT_ROUNDOFF * prod.F.abs() + P.abs() * e_S + S * e_P
    qf, qr = rf[..., A], rr[..., A]  # 1 − p_f(A), 1 − p_r(A)
    LB_err = gamma(3) * prod.LB.abs() + S * (f.e_p[..., A] * qr + qf * r.e_p[..., A]) + qf * qr * e_S
    return STORAGE_SAFETY * (ip_err + defect + F_err), STORAGE_SAFETY * (ip_err + defect + LB_err)


def first_factor_error(
    p_f: torch.Tensor, y_f: int, p_r: torch.Tensor, y_r: int, e_p_f=None, e_p_r=None
) -> torch.Tensor:
    """Bound on |fl(first_factor) − exact| (safety 1), per draw for probability vectors (..., V): two
    subtractions and a length-V dot, γ_{V+1} Σ|p_f − y_f||p_r − y_r|, plus Σ(e_f|p_r − y_r| + |p_f − y_f|e_r)
    for inputs within e_p (omitted when ``e_p_f`` is None)."""
    rf, rr = p_f.clone(), p_r.clone()
    rf[..., y_f] -= 1
    rr[..., y_r] -= 1
    rf, rr = rf.abs(), rr.abs()
    b = gamma(p_f.shape[-1] + 1) * (rf * rr).sum(-1)
    if e_p_f is not None:
        b = b + (e_p_f * rr + rf * e_p_r).sum(-1)
    return b


def first_factor_bound(p_f: torch.Tensor, y_f: int, p_r: torch.Tensor, y_r: int, e_p_f=None, e_p_r=None) -> float:
    """STORAGE_SAFETY × :func:`first_factor_error` for one pair of probability vectors (V,)."""
    return STORAGE_SAFETY * float(first_factor_error(p_f, y_f, p_r, y_r, e_p_f, e_p_r))


# ---------------------------------------------------------------------------------------------
# the declaration: quantities, checks, certified path


def c3_quantities(xp) -> dict:
    """C3's quantities over a float64 backend ``xp`` (:mod:`mdm_props.claim`), per draw (K,): ip = ⟨Ĝ_f, Ĝ_r⟩
    (autograd), the product F = P·S and the lower bound LB (:func:`storage_product_batch`), their tolerances
    t_F, t_LB (:func:`c3_tolerances_batch`), t_pos = STORAGE_SAFETY × the inner product's own rounding
    (:func:`~mdm_props.rounding.storage_inner_product_error_batch`) and the cosine scale ‖G_f‖‖G_r‖."""
    V, A = xp.cfg.vocab, xp.A
    fq, rq = pair_queries(xp.template, A, xp.B, V)
    G_f, f = xp.gradient(fq)
    G_r, r = xp.gradient(rq)
    e_f, e_r = xp.gradient_error(fq, f), xp.gradient_error(rq, r)
    ip_err = storage_inner_product_error_batch(G_f, G_r, e_f, e_r)
    prod = storage_product_batch(f, r, A, V)
    t_F, t_LB = c3_tolerances_batch(f, r, A, V, gram_defect_batch(xp.params["E"]), ip_err)
    return {
        "ip": (G_f * G_r).sum((-1, -2, -3)),
        "F": prod.F,
        "LB": prod.LB,
        "P": prod.P,
        "S": prod.S,
        "|F|": prod.F.abs(),
        "norms": G_f.flatten(1).norm(dim=-1) * G_r.flatten(1).norm(dim=-1),
        "t_F": t_F,
        "t_LB": t_LB,
        "t_pos": STORAGE_SAFETY * ip_err,
        "n_heads": xp.cfg.n_heads,
    }


_DETAILS = (("first_factor", "P"), ("token_overlap", "S"), ("n_heads", "n_heads"))
C3_CHECKS = (
    Identity(
        "identity",
        "⟨G_f, G_r⟩ = [(1−p_f(A))(1−p_r(A)) + Σ_{v≠A} p_f(v)p_r(v)] Σ_t α^f(t)α^r(t)",
        "ip",
        "F",
        "t_F",
        _DETAILS,
    ),
    Inequality(
        "lower bound",
        "⟨G_f, G_r⟩ ≥ (1 − p_f(A))(1 − p_r(A)) Σ_t α^f(t)α^r(t)",
        "ip",
        ">=",
        "LB",
        "|F|",
        "t_LB",
        _DETAILS,
    ),
    Inequality("positivity", "⟨G_f, G_r⟩ > 0 (margin: cosine)", "ip", ">", 0.0, "norms", "t_pos", _DETAILS),
)


def c3_exact(ap: dict, draw: Draw) -> dict:
    """Balls for C3 (:mod:`mdm_props.certified`'s exact model): ip = ⟨G_f, G_r⟩, P = (p_f − y)ᵀ(p_r − y),
    S = Σ_h Σ_t α^f_h(t) α^r_h(t) (token-aligned), the closed form F = P S, the lower bound
    LB = (1 − p_f(A))(1 − p_r(A)) S and gap = ip − LB."""
    cfg = draw.cfg
    fq, rq = pair_queries(draw.template, draw.A, draw.B, cfg.vocab)
    f, r = certified.evaluate_query(ap, cfg, fq), certified.evaluate_query(ap, cfg, rq)
    S = certified.token_overlap(f, r, cfg.vocab + 1)
    P = certified.dot(f.resid, r.resid)
    LB = f.resid[fq.target] * r.resid[rq.target] * S
    ip = certified.storage_inner_product(f, r)
    return {"ip": ip, "P": P, "S": S, "F": P * S, "LB": LB, "gap": ip - LB, "f": f, "r": r}


def _c3_certificate_details(v: dict, draw: Draw) -> dict:
    lower, upper = certified.lower, certified.upper
    return {
        "ip": float(v["ip"].mid()),
        "ip_lower": lower(v["ip"]),
        "lower_bound": float(v["LB"].mid()),
        "gap_lower": lower(v["gap"]),
        "closed_form": float(v["F"].mid()),
        "orth_defect": upper(abs(v["ip"] - v["F"])),
        "n_heads": draw.cfg.n_heads,
        "pos": draw.cfg.pos,
    }


def c3_soundness(draw: Draw, ap: dict) -> dict:
    """(certified true error)/(tolerance) of C3's three checks on one H-orth draw: the observed ⟨Ĝ_f, Ĝ_r⟩'s
    distance to the exact ip, H-orth's defect |ip − F| (the exact F, LB are the closed forms of the stored
    parameters) and the float64 reference's distance to its exact value."""
    res = claim.results_by_key(SPEC, draw)
    eu, up, ratio = certified.error_upper, certified.upper, certified.ratio
    v = c3_exact(ap, draw)
    e_ip, defect = eu(res["identity"].observed, v["ip"]), up(abs(v["ip"] - v["F"]))
    return {
        "identity": ratio(e_ip + defect + eu(res["identity"].reference, v["F"]), res["identity"].tolerance),
        "lower bound": ratio(e_ip + defect + eu(res["lower bound"].reference, v["LB"]), res["lower bound"].tolerance),
        "positivity": ratio(e_ip, res["positivity"].tolerance),
    }


SPEC = Spec(
    id="C3",
    title="positively aligned storage gradients",
    hypotheses=("H-rel", "H-orth", "H-bi"),
    quantities=c3_quantities,
    checks=C3_CHECKS,
    sample={"n_heads": N_HEADS},
    certified=Certified(
        statement="⟨G_f, G_r⟩ ≥ (1 − p_f(A))(1 − p_r(A)) Σ_t α^f(t)α^r(t) and > 0",
        values=c3_exact,
        proofs=(Proof("positivity", "ip", ">"), Proof("lower bound", "gap", ">=")),
        value="ip",
        details=_c3_certificate_details,
        soundness=c3_soundness,
        sources={
            "identity": "c3_tolerances[0] (check_c3 identity)",
            "lower bound": "c3_tolerances[1] (check_c3 lower bound)",
            "positivity": "2·storage_inner_product_error (check_c3 > 0)",
        },
    ),
)


# ---------------------------------------------------------------------------------------------
# the checker and its runners (the declaration on each backend)


def check_c3(params: dict, cfg: ModelConfig, template: Template, A: int, B: int) -> list[CheckResult]:
    """C3 on one draw: the identity, the lower bound and strict positivity of ⟨G_f, G_r⟩_F;
    not-applicable outside H-rel, H-orth, H-bi (off H-orth the Gram defect would be folded into the
    tolerance and the identity pass vacuously; the negative controls compute ⟨G_f, G_r⟩ directly)."""
    return claim.check(SPEC, Draw(params, cfg, template, A, B))


# tightness of c3_tolerances: on the storage claims' fixed draws (TIGHT_DRAWS, seed TIGHT_SEED) the largest
# error/tolerance of C3's identity reaches C3_TIGHT_SHARE. Measured on the CPU (torch 2.13): 0.0092;
# the share is ≈ measured/3, above measured/10 (STORAGE_SAFETY × 10 fails).
C3_TIGHT_SHARE = 0.003


def c3_tightness(device: str = "cpu") -> list[CheckResult]:
    """:func:`c3_tolerances` is not loose: max error/tolerance of the identity ≥ ``C3_TIGHT_SHARE``."""
    ratios = [
        check_c3(*case_args(c, device))[0].error_ratio for c in per_draw_cases(TIGHT_DRAWS, TIGHT_SEED, n_heads=N_HEADS)
    ]
    return [tightness_check("C3", "c3_tolerances (identity)", ratios, C3_TIGHT_SHARE)]


def run_c3(draws: int, seed: int, device: str = "cpu") -> list[CheckResult]:
    """C3 on ``draws`` seeded draws under H-rel + H-orth + H-bi, split over the relative encodings, 1–3 heads,
    checked in batches of draws that share a structure (:func:`check_c3_batch`): the worst draw of each check
    and every failing draw; plus the tightness check of its bound."""
    return claim.run(SPEC, draws, seed, device) + c3_tightness(device)


def run_c3_per_draw(draws: int, seed: int, device: str = "cpu") -> list[CheckResult]:
    """C3 on ``draws`` seeded draws, one :func:`check_c3` call each (the reference the batched path agrees with)."""
    return claim.run_per_draw(SPEC, draws, seed, device)


def check_c3_batch(batch: batched.Batch, device: str = "cpu") -> batched.BatchReport:
    """:func:`check_c3` on every draw of ``batch`` at once (same three checks, same bounds, per draw)."""
    return claim.check_batch(SPEC, batch, device)


# ---------------------------------------------------------------------------------------------
# negative controls


def uniform_first_factor(vocab: int, device: str = "cpu") -> tuple[float, float]:
    """The ARM's first factor (p − y_B)ᵀ(p − y_A) at uniform p = 1/V, and its rounding bound; the
    exact value is −1/V."""
    p = torch.full((vocab,), 1.0 / vocab, dtype=torch.float64, device=resolve_device(device))
    # 1/V itself rounds (relative u): the dot moves by ≤ u Σ_v (|p_v − y_f,v| + |p_v − y_r,v|) p_v
    e_p = UNIT_ROUNDOFF * p
    return float(first_factor(p, 1, p, 0)), first_factor_bound(p, 1, p, 0, e_p, e_p)


def c3_arm(draws: int, seed: int, device: str = "cpu") -> Counterexample:
    """ARM (causal, next-token targets B then A, orthonormal embeddings): ⟨G_f, G_r⟩ < 0 on some draw."""
    return search_arm("C3", draws, seed, device)


def c3_non_orth(draws: int, seed: int, device: str = "cpu") -> Counterexample:
    """Non-orthonormal embeddings at V = 20, d = 4 (rope or t5: under alibi and none a mirror-
    symmetric template makes the two queries identical, G_f = G_r, and no embedding can flip the sign)."""
    return search_negative_alignment(
        "C3",
        "H-orth (non-orthonormal embeddings, V = 20, d = 4)",
        draws,
        seeded_cases(seed, orthonormal=False, vocab=20, d_model=4, pos=("rope", "t5")),
        mdm_case_queries,
        ("E", "W_Q", "W_K", "W_OV"),
        device,
    )


def c3_absolute(draws: int, seed: int, device: str = "cpu") -> Counterexample:
    """Learned absolute positions with orthonormal token embeddings: positions enter c_f and c_r; the
    search moves only the position vectors P."""
    return search_negative_alignment(
        "C3",
        "H-rel (learned absolute positions)",
        draws,
        learned_positions(seeded_cases(seed, pos=("absolute",))),
        mdm_case_queries,
        ("P",),
        device,
    )


def certify_alignment(params: dict, cfg, fq, rq, max_bits: int = certified.PRECISIONS[-1]):
    """⟨G_f, G_r⟩ > 0 in ball arithmetic for any two queries (e.g. the ARM's, whose targets differ); the value
    is a certified upper bound when refuted, else a lower bound."""
    ap = certified.arb_params(params, cfg)

    def evaluate():
        f, r = certified.evaluate_query(ap, cfg, fq), certified.evaluate_query(ap, cfg, rq)
        ip = certified.storage_inner_product(f, r)
        status = certified.all_hold([certified.sign(ip, ">")])
        bound = certified.upper(ip) if status == "refuted" else certified.lower(ip)
        return status, bound, {"ip": float(ip.mid()), "first_factor": float(certified.dot(f.resid, r.resid).mid())}

    return certified.decide("C3", "⟨G_f, G_r⟩ > 0", evaluate, max_bits)


def certify_arm_example(example: dict, max_bits: int = certified.PRECISIONS[-1]):
    """C3~arm's counterexample: ⟨G_f, G_r⟩ of the ARM's two queries, exactly."""
    params, cfg, _, _, _, fq, rq = certified.example_draw(example, arm_queries)
    return certify_alignment(params, cfg, fq, rq, max_bits)


def certify_mdm_example(example: dict, max_bits: int = certified.PRECISIONS[-1]):
    """C3~non-orth's and C3~absolute's counterexamples: C3's own certified statement on the recorded draw."""
    params, cfg, t, A, B, _, _ = certified.example_draw(example, pair_queries)
    return certified.certify(SPEC, Draw(params, cfg, t, A, B), max_bits)


NEGATIVE_CONTROLS = [
    NegativeControl(
        "C3~arm",
        "C3",
        ARM_DROPPED,
        "the ARM's targets differ (B forward, A reverse): first factor −1/V at uniform outputs, "
        "and ⟨G_f, G_r⟩ < 0 on some draw",
        c3_arm,
        20,
        certify_arm_example,
    ),
    NegativeControl(
        "C3~non-orth",
        "C3",
        "H-orth (non-orthonormal embeddings)",
        "with overlapping embeddings (V = 20, d = 4) some pair has ⟨G_f, G_r⟩ < 0",
        c3_non_orth,
        20,
        certify_mdm_example,
    ),
    NegativeControl(
        "C3~absolute",
        "C3",
        "H-rel (absolute positions)",
        "position vectors enter c_f and c_r: some pair has ⟨G_f, G_r⟩ < 0",
        c3_absolute,
        20,
        certify_mdm_example,
    ),
]


# ---------------------------------------------------------------------------------------------
# the registry rows (collected by mdm_props.registry)

SPECS = (SPEC,)
_M = __name__ + ":"
CLAIMS = (
    Claim(
        id="C3",
        title="positively aligned shared-storage gradient",
        kind="per-draw",
        hypotheses=("H-rel", "H-orth", "H-bi"),
        statement="⟨G_f, G_r⟩ = [(1 − p_f(A))(1 − p_r(A)) + Σ_{v≠A} p_f(v) p_r(v)] Σ_t α^f(t) α^r(t) "
        "≥ (1 − p_f(A))(1 − p_r(A)) Σ_t α^f(t) α^r(t) > 0; multi-head: a sum of such terms.",
        doc="claims/C3-aligned-storage-gradient.md",
        checker=_M + "check_c3",
        runner=_M + "run_c3",
        bounds=(_M + "c3_tolerances",),
        tests="tests/test_c3.py",
        needs_negative_control=True,
        default_draws=50,
    ),
)
