"""Meta-tests of the C1, C3 and C4 checkers and their bounds: each checker accepts the real
computation and rejects a corrupted one — a gradient perturbed by ten times its bound, a flipped
sign, a wrong token alignment, a Taylor remainder built with a wrong gradient — and the bounds hold
against the 50-digit oracle without being vacuous."""

import math

import mpmath
import pytest
import torch

from mdm_props import batched, oracles, rounding, storage
from mdm_props.claims import c1_reusable_evidence as c1
from mdm_props.claims import c3_aligned_storage as c3
from mdm_props.claims import c4_reverse_loss_decrease as c4
from mdm_props.facts import Template, canonical_template
from mdm_props.model import RELATIVE_ENCODINGS, ModelConfig
from mdm_props.params import init_params

# fixed draws: every relative encoding, one to three heads, a longer template with a repeated filler
DRAWS = [
    (
        ModelConfig(vocab=5, d_model=8, d_head=4, n_heads=1 + n % 3, pos=pos),
        7 + n,
        (1.0, 2.0)[n % 2],
        canonical_template(2) if n % 2 else Template(5, 1, 3, (2, 4, 2)),
    )
    for n, pos in enumerate(RELATIVE_ENCODINGS)
]
A, B, ETA = 0, 1, 0.1


def draw(n, device="cpu"):
    cfg, seed, scale, template = DRAWS[n]
    return init_params(cfg, seed, scale=scale, orthonormal=True, device=device), cfg, template


def relative_scaling(monkeypatch, factor_for_query):
    """Make storage.storage_gradient return (1 + s) G for the queries ``factor_for_query`` maps to s."""
    real = storage.storage_gradient

    def scaled(params, cfg, query):
        G, state = real(params, cfg, query)
        return G * (1 + factor_for_query(query)), state

    for module in (c1, storage):
        monkeypatch.setattr(module, "storage_gradient", scaled)


@pytest.mark.parametrize("n", range(len(DRAWS)))
def test_all_checkers_accept_the_real_computation(n):
    params, cfg, template = draw(n)
    for results in (
        c1.check_c1a(params, cfg, template, A, B),
        c1.check_c1b(params, cfg, template, A, B, ETA),
        c1.check_c1c(params, cfg, template, A, B, ETA),
        c3.check_c3(params, cfg, template, A, B),
        c4.check_c4a(params, cfg, template, A, B),
    ):
        assert all(r.holds for r in results), [str(r) for r in results if not r.holds]


# ---------------------------------------------------------------------------------------------
# C1a: a wrong token alignment


@pytest.mark.parametrize("n", range(len(DRAWS)))
@pytest.mark.meta("C1a")
def test_c1a_rejects_positions_aligned_in_the_same_order(n):
    """Giving reverse position j the forward attention of position j (not of the position holding
    the same token) swaps the weights of M and B: rejected by many bounds."""
    params, cfg, template = draw(n)
    T = template.length
    forced = c1.check_c1a(params, cfg, template, A, B, alignment=list(range(T)))[-1]
    assert not forced.holds and forced.error_ratio > 1e6, str(forced)


# ---------------------------------------------------------------------------------------------
# C1b, C1c, C3: a gradient scaled so that the checked quantity moves by ten bounds; a flipped sign


def _ten_bounds(result):
    """The relative change of the gradient that moves ``result.observed`` by 10 tolerances."""
    return 10 * result.tolerance / abs(result.reference)


@pytest.mark.parametrize("n", range(len(DRAWS)))
@pytest.mark.meta("C1b")
def test_c1b_rejects_a_gradient_off_by_ten_bounds(n, monkeypatch):
    params, cfg, template = draw(n)
    r = c1.check_c1b(params, cfg, template, A, B, ETA)[0]
    assert r.holds
    relative_scaling(monkeypatch, lambda q: _ten_bounds(r))
    bad = c1.check_c1b(params, cfg, template, A, B, ETA)[0]
    assert not bad.holds and bad.error_ratio > 5, str(bad)


@pytest.mark.parametrize("n", range(len(DRAWS)))
@pytest.mark.meta("C1c")
def test_c1c_rejects_a_gradient_off_by_ten_bounds(n, monkeypatch):
    params, cfg, template = draw(n)
    r = c1.check_c1c(params, cfg, template, A, B, ETA)[0]
    relative_scaling(monkeypatch, lambda q: _ten_bounds(r))
    bad = c1.check_c1c(params, cfg, template, A, B, ETA)[0]
    assert not bad.holds and bad.error_ratio > 5, str(bad)


@pytest.mark.parametrize("n", range(len(DRAWS)))
def test_c1b_c1c_reject_a_step_of_the_wrong_sign(n, monkeypatch):
    """W_OV + η G (ascent) instead of − η G: Δε and the margins change sign; both checks reject it."""
    params, cfg, template = draw(n)
    real = storage.storage_step
    ascent = lambda p, G, eta: real(p, G, -eta)  # noqa: E731
    monkeypatch.setattr(batched, "storage_step", ascent)  # C1b's step (evidence_change, a batch of one)
    monkeypatch.setattr(storage, "storage_step", ascent)  # C1c's step (storage.reverse_step)
    b = c1.check_c1b(params, cfg, template, A, B, ETA)
    c = c1.check_c1c(params, cfg, template, A, B, ETA)
    assert not b[0].holds and not b[1].holds and not c[0].holds and not c[2].holds


@pytest.mark.parametrize("n", range(len(DRAWS)))
@pytest.mark.meta("C3")
def test_c3_rejects_a_reverse_gradient_off_by_ten_bounds(n, monkeypatch):
    params, cfg, template = draw(n)
    r = c3.check_c3(params, cfg, template, A, B)[0]
    relative_scaling(monkeypatch, lambda q: _ten_bounds(r) if q.slot == template.b else 0.0)
    bad = c3.check_c3(params, cfg, template, A, B)[0]
    assert not bad.holds and bad.error_ratio > 5, str(bad)


@pytest.mark.parametrize("n", range(len(DRAWS)))
def test_c3_rejects_a_flipped_sign(n, monkeypatch):
    params, cfg, template = draw(n)
    relative_scaling(monkeypatch, lambda q: -2.0 if q.slot == template.b else 0.0)  # G_r → −G_r
    identity_, lower, positive = c3.check_c3(params, cfg, template, A, B)
    assert not identity_.holds and not lower.holds and not positive.holds


@pytest.mark.parametrize("n", range(len(DRAWS)))
@pytest.mark.meta("C3")
def test_c3_formula_with_position_aligned_attention_is_rejected(n):
    """Σ_j α^f_j α^r_j position by position (forward M meets reverse B) instead of token by token:
    the identity's bound rejects the wrong formula."""
    params, cfg, template = draw(n)
    V = cfg.vocab
    fq, rq = storage.pair_queries(template, A, B, V)
    al = storage.storage_alignment(params, cfg, fq, rq)
    f, r = al.f, al.r
    P = float(storage.first_factor(f.p, A, r.p, A))
    S_right = float((f.token_attention(V + 1) * r.token_attention(V + 1)).sum())
    S_wrong = float((f.attn * r.attn).sum())
    t_F, _ = c3.c3_tolerances(f, r, A, V, rounding.gram_defect(params["E"]), al.ip_err)
    assert abs(al.ip - P * S_right) <= t_F
    assert abs(al.ip - P * S_wrong) > 1e6 * t_F


# ---------------------------------------------------------------------------------------------
# C4a, C4b, C4c


@pytest.mark.parametrize("n", range(len(DRAWS)))
@pytest.mark.meta("C4a")
def test_c4a_rejects_a_step_of_the_wrong_sign(n, monkeypatch):
    """Ascending the forward loss raises φ by ≈ η⟨G_r, G_f⟩: the remainder R ≈ 2η⟨G_r, G_f⟩ breaks
    the upper bound η² spread²/8 at η = 1e-3."""
    params, cfg, template = draw(n)
    monkeypatch.setattr(c4, "storage_step", lambda p, G, eta: {**p, "W_OV": p["W_OV"] + eta * G[None]})
    results = c4.check_c4a(params, cfg, template, A, B, etas=(1e-3,))
    assert not results[1].holds, str(results[1])


@pytest.mark.parametrize("n", [0, 2, 3])
@pytest.mark.meta("C4b")
def test_c4b_rejects_a_remainder_built_with_a_perturbed_gradient(n):
    """g_r + δ with ‖δ‖ = 1e-4‖g_r‖ (a random direction): the remainder has a first-order term and the
    Taylor test rejects it (observed order ≈ 1 on the window, or R/η² off the band)."""
    params, cfg, template = draw(n)
    fq, rq = storage.pair_queries(template, A, B, cfg.vocab)
    g_r = c4.full_gradient(params, cfg, rq)
    gen = torch.Generator().manual_seed(n)
    noise = {k: torch.randn(v.shape, generator=gen, dtype=torch.float64) for k, v in g_r.items()}
    scale = 1e-4 * math.sqrt(c4.inner(g_r, g_r) / c4.inner(noise, noise))
    wrong = {k: g_r[k] + scale * noise[k] for k in g_r}
    assert all(r.holds for r in c4.check_c4b(params, cfg, template, A, B))
    bad = c4.check_c4b(params, cfg, template, A, B, gradient=wrong)
    assert any(r.status == "violated" for r in bad), [str(r) for r in bad]


@pytest.mark.meta("C4c")
def test_c4c_assertion_fails_for_a_coin_flip_rate(monkeypatch):
    """The typical-claim assertion is not vacuous: with half the draws aligned it fails."""
    monkeypatch.setattr(c4, "alignment_counts", lambda *a, **k: {e: (30, 60) for e in RELATIVE_ENCODINGS})
    (r,) = c4.run_c4c(240, 0, "cpu")
    assert not r.holds and r.observed < 0.5


# ---------------------------------------------------------------------------------------------
# the bounds against the 50-digit oracle


def test_gram_defect_is_rounding_level_for_orthonormal_rows_only():
    cfg = ModelConfig(vocab=6, d_model=9, d_head=2)
    assert rounding.gram_defect(init_params(cfg, 1, orthonormal=True)["E"]) < 40 * rounding.UNIT_ROUNDOFF
    assert rounding.gram_defect(init_params(cfg, 1)["E"]) > 0.1


@pytest.mark.parametrize("n", [0, 3])
def test_storage_inner_product_bound_against_the_oracle(n):
    """|⟨Ĝ_f, Ĝ_r⟩ − ⟨G_f, G_r⟩_exact| ≤ STORAGE_SAFETY · storage_inner_product_error, with
    ⟨G_f, G_r⟩_exact = Σ_h [(p_f − y)ᵀUUᵀ(p_r − y)](c_f^hᵀc_r^h) from 50-digit p and c; not vacuous."""
    params, cfg, template = draw(n)
    fq, rq = storage.pair_queries(template, A, B, cfg.vocab)
    al = storage.storage_alignment(params, cfg, fq, rq)
    with mpmath.workdps(50):
        U = [[mpmath.mpf(float(v)) for v in row] for row in params["E"][: cfg.vocab]]
        parts = []
        for q in (fq, rq):
            o = oracles.oracle_forward(params, cfg, list(q.tokens))
            p = [mpmath.exp(v) for v in o["logprobs"][q.slot]]
            p[q.target] -= 1
            g = [mpmath.fsum(U[v][e] * p[v] for v in range(cfg.vocab)) for e in range(cfg.d_model)]
            parts.append((g, [o["context"][0][h][q.slot] for h in range(cfg.n_heads)]))
        (gf, cf), (gr, cr) = parts
        exact = mpmath.fsum(a * b for a, b in zip(gf, gr, strict=False)) * mpmath.fsum(
            mpmath.fsum(a * b for a, b in zip(cf[h], cr[h], strict=False)) for h in range(cfg.n_heads)
        )
        err = abs(mpmath.mpf(al.ip) - exact)
    bound = rounding.STORAGE_SAFETY * al.ip_err
    assert float(err) <= bound, (float(err), bound)
    print(f"observed error / bound = {float(err) / bound:.3g}")
    assert bound < 1e-12 * abs(al.ip) + 1e-15  # tight enough to see a relative error of 1e-12
