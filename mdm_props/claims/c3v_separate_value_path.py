"""C3v — C3 for a separate value path (the worked example of docs/index.md, "How to add a claim").

With ``W_OV = W_O W_V`` factored and ``W_O`` square orthogonal per head (``d_head = d_model``,
``W_O W_Oᵀ = I``), the chain rule gives ``G^V = ∂L/∂W_V = W_Oᵀ G^OV`` with ``G^OV = Uᵀ(p − y)cᵀ``,
so ``⟨G^V_f, G^V_r⟩ = Σ_h tr(G^OV_fᵀ W_O W_Oᵀ G^OV_r) = ⟨G^OV_f, G^OV_r⟩``: exactly C3's product
``[(1 − p_f(A))(1 − p_r(A)) + Σ_{v≠A} p_f(v)p_r(v)] Σ_h Σ_t α^f(t)α^r(t) > 0``.
Drop the orthogonality (a Gaussian ``W_O`` with ``d_head < d_model`` projects ``Uᵀ(p − y)`` onto
a random subspace) and the sign can flip: the negative control.
"""

from __future__ import annotations

import dataclasses

import torch

from .. import batched, certified
from ..checks import CheckResult, NegativeControl, identity, inequality, not_applicable
from ..facts import Template, query_loss
from ..model import ModelConfig, forward
from ..params import check_params, orthonormal_rows, require_finite, require_float64, resolve_device
from ..registry import Claim
from ..rounding import (
    STORAGE_SAFETY,
    gamma,
    gram_defect_batch,
    gram_defect_limit,
    storage_inner_product_error,
    storage_inner_product_error_batch,
)
from ..search import describe, run_per_draw, search, seeded_cases
from ..storage import QueryState, evaluate, pair_queries, unmet_hypotheses
from ..strategies import N_HEADS, Case
from .c3_aligned_storage import c3_tolerances_batch, storage_product, storage_product_batch


def separate_value_config(cfg: ModelConfig) -> ModelConfig:
    """The same model with a factored value path W_O W_V and d_head = d_model (made even under RoPE)."""
    d = cfg.d_model + (cfg.pos == "rope" and cfg.d_model % 2)
    return dataclasses.replace(cfg, d_model=d, d_head=d, merged_ov=False)


def orthogonal_output(params: dict, cfg: ModelConfig, seed: int) -> dict:
    """Replace every head's W_O by a random square orthogonal matrix (seeded, CPU float64, then moved)."""
    if cfg.merged_ov or cfg.d_head != cfg.d_model:
        raise ValueError(
            f"cfg must have merged_ov=False and d_head == d_model; got merged_ov={cfg.merged_ov}, "
            f"d_head={cfg.d_head}, d_model={cfg.d_model}"
        )
    gen = torch.Generator(device="cpu").manual_seed(seed)
    L, H, d = cfg.n_layers, cfg.n_heads, cfg.d_model
    W_O = torch.stack([orthonormal_rows(d, d, gen) for _ in range(L * H)]).reshape(L, H, d, d)
    return {**params, "W_O": W_O.to(params["W_V"].device)}


def value_gradient(params: dict, cfg: ModelConfig, query) -> torch.Tensor:
    """G^V = ∂(−log p(target))/∂W_V of layer 0 by autograd, (H, d_head, d)."""
    W_V = params["W_V"].detach().requires_grad_(True)
    with torch.enable_grad():
        (G,) = torch.autograd.grad(query_loss({**params, "W_V": W_V}, cfg, query), W_V)
    return G[0]


def value_gradient_error_bound(params: dict, cfg: ModelConfig, query) -> torch.Tensor:
    """|Ĝ^V − G^V| (H, d_head, d) for one draw (safety 1): :func:`value_gradient_error_bound_batch` (batch of one)."""
    s = batched.one_state(evaluate(params, cfg, query))
    return value_gradient_error_bound_batch(batched.one_draw(params), cfg, s)[0]


def value_gradient_error_bound_batch(params: dict, cfg: ModelConfig, s: QueryState) -> torch.Tensor:
    """|Ĝ^V − G^V| ≤ |W_O|ᵀ e_OV + γ_d |W_O|ᵀ|G^OV| per head, for every draw (K, H, d_head, d) of batched
    parameters and the batched query state ``s`` (safety 1): autograd forms (W_Oᵀ g) cᵀ with g = Uᵀ(p − y),
    i.e. one more length-d matvec than G^OV = g cᵀ, whose own bound e_OV is
    :func:`~mdm_props.rounding.storage_gradient_error_batch`. The one formula: :func:`value_gradient_error_bound`
    (one draw) calls it."""
    W_O = params["W_O"][:, 0].abs()  # (K, H, d, d_head)
    e_ov = batched.storage_gradient_error_bound(params, cfg, s)
    g_abs = torch.einsum("kvd,kv->kd", params["E"][:, : cfg.vocab], s.resid).abs()  # |Uᵀ(p − y)|, tied U
    G_ov_abs = g_abs[:, None, :, None] * s.context.abs()[:, :, None, :]
    return W_O.transpose(-1, -2) @ e_ov + gamma(cfg.d_model) * (W_O.transpose(-1, -2) @ G_ov_abs)


def output_defect_batch(W_O: torch.Tensor) -> torch.Tensor:
    """ω_O = max over heads and entries of |W_O W_Oᵀ − I| per draw (K,) for layer-0 W_O (K, H, d, d) (square)."""
    eye = torch.eye(W_O.shape[-2], dtype=W_O.dtype, device=W_O.device)
    return (W_O @ W_O.transpose(-1, -2) - eye).abs().flatten(1).amax(-1)


def output_defect(params: dict) -> float:
    """ω_O of one draw's layer-0 W_O: :func:`output_defect_batch` of a batch of one."""
    return float(output_defect_batch(params["W_O"][0][None])[0])


def unmet_output_orthogonality(params: dict, cfg: ModelConfig) -> list[str]:
    """H-Oorth as a list of failures (empty when it holds): every head's W_O square (d_head = d_model)
    and orthogonal up to rounding, ω_O ≤ :func:`~mdm_props.rounding.gram_defect_limit` (d_model)."""
    if cfg.d_head != cfg.d_model:
        return [f"H-Oorth fails: W_O is {cfg.d_model} × {cfg.d_head}, not square (need d_head = d_model)"]
    omega_O, limit = output_defect(params), gram_defect_limit(cfg.d_model)
    if not omega_O <= limit:
        return [f"H-Oorth fails: max|W_O W_Oᵀ − I| = {omega_O:.3g} > {limit:.3g} (= 1e3·d·u, rounding alone)"]
    return []


def c3v_tolerance_batch(
    params: dict, cfg: ModelConfig, f: QueryState, r: QueryState, A: int, GV_f: torch.Tensor, GV_r: torch.Tensor
) -> torch.Tensor:
    """C3v's bound per draw (K,) on |⟨Ĝ^V_f, Ĝ^V_r⟩ − P̂Ŝ| for batched parameters of the factored model, batched
    query states ``f``, ``r`` (target A) and the value gradients Ĝ^V (K, H, d_head, d). The one formula:
    :func:`check_c3v` (one draw, a batch of one) and :func:`check_c3v_batch` call it.

    The C3 formula's own bound (:func:`~mdm_props.claims.c3_aligned_storage.c3_tolerances_batch` with no
    inner-product term), plus STORAGE_SAFETY × (the rounding of fl(Σ Ĝ^V_f ∘ Ĝ^V_r), with each Ĝ^V within
    :func:`value_gradient_error_bound_batch`, and the orthogonality defect of W_O:
    |⟨A, (W_O W_Oᵀ − I)B⟩| ≤ ω_O Σ_k ‖A_{:k}‖₁‖B_{:k}‖₁ with ω_O = max|W_O W_Oᵀ − I|
    (:func:`output_defect_batch`), A, B the G^OV = Uᵀ(p − y)cᵀ of the two queries).
    """
    V = cfg.vocab
    e_f, e_r = value_gradient_error_bound_batch(params, cfg, f), value_gradient_error_bound_batch(params, cfg, r)
    t_formula, _ = c3_tolerances_batch(f, r, A, V, gram_defect_batch(params["E"]), 0.0)
    omega_O = output_defect_batch(params["W_O"][:, 0])
    U = params["E"][:, :V]
    G_ov_f = torch.einsum("kvd,kv->kd", U, -f.resid)[:, None, :, None] * f.context[:, :, None, :]
    G_ov_r = torch.einsum("kvd,kv->kd", U, -r.resid)[:, None, :, None] * r.context[:, :, None, :]
    defect = omega_O * (G_ov_f.abs().sum(-2) * G_ov_r.abs().sum(-2)).sum((-1, -2))
    return t_formula + STORAGE_SAFETY * (storage_inner_product_error_batch(GV_f, GV_r, e_f, e_r) + defect)


def check_c3v(params: dict, cfg: ModelConfig, template: Template, A: int, B: int) -> list[CheckResult]:
    """C3v on one draw: ⟨G^V_f, G^V_r⟩ equals C3's product (identity) and is > 0 (margin: cosine);
    not-applicable outside H-rel, H-orth, H-bi, H-Oorth (:func:`unmet_output_orthogonality`). Tolerance:
    :func:`c3v_tolerance_batch` on this draw (a batch of one)."""
    if cfg.merged_ov or cfg.n_layers != 1 or not cfg.tied:
        raise ValueError("cfg must be one layer, tied, with a factored value path (merged_ov=False)")
    check_params(params, cfg)
    unmet = unmet_hypotheses(params, cfg) + unmet_output_orthogonality(params, cfg)
    if unmet:
        return [not_applicable("C3v", "value-path gradients align as in C3", "; ".join(unmet))]
    V = cfg.vocab
    fq, rq = pair_queries(template, A, B, V)
    f, r = evaluate(params, cfg, fq), evaluate(params, cfg, rq)
    GV_f, GV_r = value_gradient(params, cfg, fq), value_gradient(params, cfg, rq)
    ip = float((GV_f * GV_r).sum())
    prod = storage_product(f, r, A, V)
    P, S = prod.P, prod.S
    omega_O = output_defect(params)
    t = float(
        c3v_tolerance_batch(
            batched.one_draw(params), cfg, batched.one_state(f), batched.one_state(r), A, GV_f[None], GV_r[None]
        )[0]
    )
    norms = float(GV_f.norm() * GV_r.norm())
    details = {"first_factor": P, "token_overlap": S, "n_heads": cfg.n_heads, "omega_O": omega_O}
    return [
        identity(
            "C3v",
            "⟨G^V_f, G^V_r⟩ = [(1−p_f(A))(1−p_r(A)) + Σ_{v≠A} p_f(v)p_r(v)] Σ_t α^f(t)α^r(t)",
            ip,
            P * S,
            t,
            **details,
        ),
        inequality("C3v", "⟨G^V_f, G^V_r⟩ > 0 (margin: cosine)", ip, 0.0, ">", norms, **details),
    ]


def factored_case(case: Case, device="cpu") -> tuple:
    """A C3 draw made factored with an orthogonal W_O: (params, cfg, template, A, B), the checker's arguments."""
    cfg = separate_value_config(case.cfg)
    case = dataclasses.replace(case, cfg=cfg)
    return orthogonal_output(case.params(device), cfg, case.seed), cfg, case.template, case.A, case.B


def run_c3v(draws: int, seed: int, device: str = "cpu") -> list[CheckResult]:
    """C3v on ``draws`` seeded draws under H-rel + H-orth + H-bi and orthogonal W_O, split over the relative
    encodings, 1–3 heads, in batches of draws that share a structure (:func:`check_c3v_batch`)."""
    return batched.run_over_encodings(
        check_c3v_batch, draws, seed, device, n_heads=N_HEADS, args=f"{__name__}:factored_case"
    )


def run_c3v_per_draw(draws: int, seed: int, device: str = "cpu") -> list[CheckResult]:
    """C3v, one :func:`check_c3v` call per draw (the reference the batched path agrees with)."""
    return run_per_draw(check_c3v, draws, seed, device, args=factored_case, n_heads=N_HEADS)


def factored_batch_params(batch: batched.Batch, device="cpu") -> tuple[dict, ModelConfig]:
    """:func:`factored_case` for every draw of ``batch``: stacked parameters of the factored model, each draw's
    W_O replaced by :func:`orthogonal_output` (seeded by the draw's seed), and the factored config."""
    cfg = separate_value_config(batch.cfg)
    params = batch.params("cpu", cfg)
    W_O = torch.stack([orthogonal_output({"W_V": params["W_V"][i]}, cfg, s)["W_O"] for i, s in enumerate(batch.seeds)])
    return batched.stack_params(
        [{**batched.unstack_params(params, i), "W_O": W_O[i]} for i in range(batch.size)], device
    ), cfg


def value_gradients(params: dict, cfg: ModelConfig, query) -> tuple[torch.Tensor, QueryState]:
    """:func:`value_gradient` for every draw (K, H, d_head, d) by ``vmap(grad(...))``, and the batched query state."""
    tokens = query.tensor(params["E"].device)

    def loss(W_V, p):
        out = forward({**p, "W_V": W_V}, cfg, tokens)
        return -torch.log_softmax(out.logits[query.slot], dim=-1)[query.target], out

    G, out = torch.func.vmap(torch.func.grad(loss, has_aux=True))(params["W_V"], params)
    return G[:, 0], batched.query_state(params, cfg, query, out)


def check_c3v_batch(batch: batched.Batch, device: str = "cpu") -> batched.BatchReport:
    """:func:`check_c3v` on every draw of ``batch`` made factored (:func:`factored_batch_params`)."""
    params, cfg = factored_batch_params(batch, device)
    require_float64(params)
    require_finite(params)
    batched.require_batch_hypotheses(params, cfg, ("H-rel", "H-orth", "H-bi"))  # H-Oorth: W_O is drawn orthogonal
    A, V = batch.A, cfg.vocab
    fq, rq = pair_queries(batch.template, A, batch.B, V)
    GV_f, f = value_gradients(params, cfg, fq)
    GV_r, r = value_gradients(params, cfg, rq)
    ip = (GV_f * GV_r).sum((-1, -2, -3))
    prod = storage_product_batch(f, r, A, V)
    omega_O = output_defect_batch(params["W_O"][:, 0])
    t = c3v_tolerance_batch(params, cfg, f, r, A, GV_f, GV_r)
    norms = GV_f.flatten(1).norm(dim=-1) * GV_r.flatten(1).norm(dim=-1)
    details = {"first_factor": prod.P, "token_overlap": prod.S, "n_heads": cfg.n_heads, "omega_O": omega_O}
    return batched.BatchReport(
        batch,
        [
            batched.identity_check(
                "C3v",
                "⟨G^V_f, G^V_r⟩ = [(1−p_f(A))(1−p_r(A)) + Σ_{v≠A} p_f(v)p_r(v)] Σ_t α^f(t)α^r(t)",
                ip,
                prod.P * prod.S,
                t,
                **details,
            ),
            batched.inequality_check("C3v", "⟨G^V_f, G^V_r⟩ > 0 (margin: cosine)", ip, 0.0, ">", norms, **details),
        ],
    )


def c3v_gaussian_output(draws: int, seed: int, device: str = "cpu"):
    """Negative control: a Gaussian W_O with d_head ≤ 2 < d_model; search for ⟨G^V_f, G^V_r⟩ < 0
    beyond its rounding bound."""
    resolve_device(device)

    def violation(item):
        rng, case = item
        cfg = dataclasses.replace(case.cfg, d_head=2, merged_ov=False)
        params = dataclasses.replace(case, cfg=cfg).params(device)
        fq, rq = pair_queries(case.template, case.A, case.B, cfg.vocab)
        G_f, G_r = value_gradient(params, cfg, fq), value_gradient(params, cfg, rq)
        e_f, e_r = value_gradient_error_bound(params, cfg, fq), value_gradient_error_bound(params, cfg, rq)
        ip = float((G_f * G_r).sum())
        if ip < -STORAGE_SAFETY * storage_inner_product_error(G_f, G_r, e_f, e_r):
            return ip, describe(case, d_head=2, merged_ov=False, inner_product=ip)
        return None

    return search(
        "C3v", "orthogonal W_O (Gaussian W_O, d_head = 2)", draws, seeded_cases(seed, pos=("rope", "t5")), violation
    )


def certify_value_alignment(params: dict, cfg, fq, rq, max_bits: int = certified.PRECISIONS[-1]):
    """⟨G^V_f, G^V_r⟩ > 0 for the factored value path (G^V = ∂L/∂W_V = W_Oᵀ g cᵀ per head, exactly:
    :func:`parameter_gradient`); the value is a certified upper bound when refuted, else a lower bound."""
    if cfg.merged_ov:
        raise ValueError("cfg.merged_ov must be False: G^V is the gradient of the factored W_V")
    ap = certified.arb_params(params, cfg)

    def evaluate():
        f, r = certified.evaluate_query(ap, cfg, fq), certified.evaluate_query(ap, cfg, rq)
        ip = certified.gradient_inner(
            certified.parameter_gradient(ap, cfg, f), certified.parameter_gradient(ap, cfg, r), ("W_V",)
        )
        status = certified.all_hold([certified.sign(ip, ">")])
        return (
            status,
            (certified.upper(ip) if status == "refuted" else certified.lower(ip)),
            {
                "ip": float(ip.mid()),
                "ip_merged": float(certified.storage_inner_product(f, r).mid()),
                "d_head": cfg.d_head,
            },
        )

    return certified.decide("C3v", "⟨G^V_f, G^V_r⟩ > 0 (factored value path)", evaluate, max_bits)


def certify_gaussian_example(example: dict, max_bits: int = certified.PRECISIONS[-1]):
    """C3v~gaussian-W_O's counterexample: ⟨G^V_f, G^V_r⟩ of the recorded factored draw, exactly."""
    params, cfg, _, _, _, fq, rq = certified.example_draw(example, pair_queries)
    return certify_value_alignment(params, cfg, fq, rq, max_bits)


NEGATIVE_CONTROLS = [
    NegativeControl(
        "C3v~gaussian-W_O",
        "C3v",
        "orthogonal W_O (Gaussian W_O, d_head = 2)",
        "a Gaussian low-rank W_O projects Uᵀ(p − y) onto a random subspace: ⟨G^V_f, G^V_r⟩ < 0 exists",
        c3v_gaussian_output,
        default_draws=200,
        certify=certify_gaussian_example,
    ),
]


# ---------------------------------------------------------------------------------------------
# the registry rows (collected by mdm_props.registry)

_M = __name__ + ":"
CLAIMS = (
    Claim(
        id="C3v",
        title="C3 for a separate value path W_O W_V",
        kind="per-draw",
        hypotheses=("H-rel", "H-orth", "H-bi", "H-Oorth"),
        statement="With W_OV = W_O W_V and W_O square orthogonal, ⟨∂L_f/∂W_V, ∂L_r/∂W_V⟩ equals C3's product "
        "[(1 − p_f(A))(1 − p_r(A)) + Σ_{v≠A} p_f(v) p_r(v)] Σ_t α^f(t) α^r(t) > 0.",
        doc="claims/C3v-separate-value-path.md",
        checker=_M + "check_c3v",
        runner=_M + "run_c3v",
        bounds=(_M + "value_gradient_error_bound",),
        tests="tests/test_c3v.py",
        needs_negative_control=True,
        default_draws=30,
    ),
)
