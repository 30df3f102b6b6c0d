"""Meta-tests of the C1, C3 and C4 checkers and their bounds: each checker accepts the real
computation and rejects a corrupted one — a gradient perturbed by ten times its bound, a flipped
sign, a wrong token alignment, a Taylor remainder built with a wrong gradient — and the bounds hold
against the 50-digit oracle without being vacuous."""

import mpmath
import pytest

from mdm_props import batched, oracles, rounding, storage
from mdm_props.claims import c1_reusable_evidence as c1
from mdm_props.claims import c3_aligned_storage as c3
from mdm_props.claims import c4_reverse_loss_decrease as c4
from mdm_props.model import ModelConfig
from mdm_props.params import init_params
from meta.storage_draws import DRAWS, ETA, A, B, draw, relative_scaling  # noqa: F401


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


# ---------------------------------------------------------------------------------------------
# C1b, C1c, C3: a gradient scaled so that the checked quantity moves by ten bounds; a flipped sign


@pytest.mark.parametrize("n", range(len(DRAWS)))
def test_c1b_c1c_reject_a_step_of_the_wrong_sign(n, monkeypatch):
    """W_OV + η G (ascent) instead of − η G: Δε and the margins change sign; both checks reject it."""
    params, cfg, template = draw(n)
    real = storage.storage_step
    ascent = lambda p, G, eta: real(p, G, -eta)  # noqa: E731
    monkeypatch.setattr(batched, "storage_step", ascent)  # the step of both backends (batched.storage_steps)
    b = c1.check_c1b(params, cfg, template, A, B, ETA)
    c = c1.check_c1c(params, cfg, template, A, B, ETA)
    assert not b[0].holds and not b[1].holds and not c[0].holds and not c[2].holds


@pytest.mark.parametrize("n", range(len(DRAWS)))
def test_c3_rejects_a_flipped_sign(n, monkeypatch):
    params, cfg, template = draw(n)
    relative_scaling(monkeypatch, lambda q: -2.0 if q.slot == template.b else 0.0)  # G_r → −G_r
    identity_, lower, positive = c3.check_c3(params, cfg, template, A, B)
    assert not identity_.holds and not lower.holds and not positive.holds


# ---------------------------------------------------------------------------------------------
# C4a, C4b, C4c


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
