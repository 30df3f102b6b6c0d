"""Certified instances (ball arithmetic, python-flint): C1b, C3, C4a proved on concrete draws, the
negative controls' counterexamples certified, and the soundness of the float64 bounds measured
against certified enclosures of the exact values."""

import json
import math
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

flint = pytest.importorskip(
    "flint", reason='python-flint (the `certify` extra) is not installed: pip install -e ".[certify]"'
)

from mdm_props import certified as C  # noqa: E402
from mdm_props import storage, strategies  # noqa: E402
from mdm_props.claim import Draw  # noqa: E402
from mdm_props.claims import c1_reusable_evidence as c1  # noqa: E402
from mdm_props.claims import c3_aligned_storage as c3  # noqa: E402
from mdm_props.claims import c4_reverse_loss_decrease as c4  # noqa: E402
from mdm_props.cli import main  # noqa: E402
from mdm_props.model import ATTENTIONS, POSITIONAL_ENCODINGS  # noqa: E402
from mdm_props.strategies import cases  # noqa: E402

arb = flint.arb
THOROUGH = settings._current_profile == "thorough"
# soundness draws per bound: ≥ 200 in the thorough profile (or MDM_PROPS_SOUNDNESS_DRAWS), a few in ci/dev
SOUNDNESS_DRAWS = int(os.environ.get("MDM_PROPS_SOUNDNESS_DRAWS", 200 if THOROUGH else 6))
claim_cases = cases(n_heads=st.sampled_from(strategies.N_HEADS))
broad_cases = st.one_of(
    *(
        cases(
            pos=st.sampled_from(POSITIONAL_ENCODINGS),
            orthonormal=o,
            n_heads=st.sampled_from(strategies.N_HEADS),
            attention=st.sampled_from(ATTENTIONS),
        )
        for o in (True, False)
    )
)


# ---------------------------------------------------------------------------------------------
# the decision procedure


def test_precision_is_raised_until_the_decision_is_made():
    """1 + 2⁻¹⁰⁰ > 1 is undecided at 64 bits (the ball around the rounded sum contains 1), proved at 128."""

    def evaluate():
        x = arb(1) + arb(2) ** -100 - 1
        return C._all([C._sign(x, ">")]), None, {}

    assert C.decide("C3", "x > 0", evaluate).bits == 128
    assert C.decide("C3", "x > 0", evaluate).status == "proved"
    capped = C.decide("C3", "x > 0", evaluate, max_bits=64)
    assert capped.status == "undecided" and capped.bits == 64


def test_a_straddling_ball_is_never_a_pass():
    def evaluate():
        x = arb(0, 1e-3)  # the ball [−1e-3, 1e-3]
        return C._all([C._sign(x, ">")]), None, {}

    assert C.decide("C3", "x > 0", evaluate).status == "undecided"


def test_floats_convert_exactly():
    x = C.to_arb([0.1, 1e-300, -3.0])
    assert all(v.rad() == 0 for v in x)
    assert C.upper(x[0]) == 0.1 == C.lower(x[0])


# ---------------------------------------------------------------------------------------------
# certified claims


@pytest.mark.meta("C3")
@given(claim_cases)
def test_c3_is_proved_on_every_draw(case):
    cert = C.certify_case("C3", case)
    assert cert.status == "proved", str(cert)
    assert cert.value > 0 and cert.details["gap_lower"] >= 0


@pytest.mark.meta("C1b")
@given(claim_cases, st.sampled_from(strategies.ETAS))
def test_c1b_is_proved_on_every_draw(case, eta):
    cert = C.certify_case("C1b", case, eta)
    assert cert.status == "proved" and cert.value > 0, str(cert)


@pytest.mark.meta("C4a")
@settings(max_examples=min(settings().max_examples, 30))  # ~50 ms a draw (7 exact evaluations)
@given(claim_cases)
def test_c4a_is_proved_on_every_draw(case):
    cert = C.certify_case("C4a", case)
    assert cert.status == "proved" and cert.value > 0, str(cert)


@pytest.mark.meta("C3v")
@settings(max_examples=min(settings().max_examples, 30))  # d_head = d_model: ~40 ms a draw
@given(claim_cases)
def test_c3v_is_proved_on_every_draw(case):
    """The value-path certificate proves C3v's ⟨G^V_f, G^V_r⟩ > 0 where its hypotheses hold (orthogonal W_O):
    the control's ``refuted`` below is not the only answer it can give."""
    from mdm_props.claims import c3v_separate_value_path as c3v

    params, cfg, t, A, B = c3v.factored_case(case)
    cert = c3v.certify_value_alignment(params, cfg, *storage.pair_queries(t, A, B, cfg.vocab))
    assert cert.status == "proved" and cert.value > 0, str(cert)


# the exact gradient over every parameter (reverse mode in ball arithmetic), checked by an exact Taylor test
GRADIENT_DRAWS = 10


def _gradient_draws():
    """Seeded one-layer draws over every encoding (absolute learned and sinusoidal), causal or bidirectional,
    1–3 heads, tied or untied, merged or factored value path."""
    import dataclasses
    import random

    rng = random.Random(11)
    for n in range(GRADIENT_DRAWS):
        case = strategies.sample_case(
            rng,
            pos=(POSITIONAL_ENCODINGS[n % len(POSITIONAL_ENCODINGS)],),
            orthonormal=rng.random() < 0.5,
            attention=ATTENTIONS[n % 2],
            n_heads=strategies.N_HEADS,
        )
        yield dataclasses.replace(case, cfg=dataclasses.replace(case.cfg, tied=n % 3 != 0, merged_ov=n % 4 != 1))


def _taylor_ratio(params, cfg, query, direction, gradient_at, eta=2.0**-30):
    """R(2η)/R(η) for R(η) = L(θ + η d) − L(θ) − η⟨g, d⟩, every term exact (256 bits; θ + η d built in balls),
    g the exact gradient at ``gradient_at``. With g = ∇L(θ): R = c₂η² + c₃η³ + …, the ratio is
    4 + 2(c₃/c₂)η + O(η²) (η = 2⁻³⁰: within 0.1 of 4 unless |c₃/c₂| > 5·10⁷); with a gradient off by e along d,
    R = −eη + c₂η² and the ratio is 2 + 2(c₂/e)η + O(η²) (within 0.1 of 2 unless |c₂/e| > 5·10⁷)."""
    with C.precision(256):
        g = C.parameter_gradient(
            C.arb_params(gradient_at, cfg), cfg, C.evaluate_query(C.arb_params(gradient_at, cfg), cfg, query)
        )
        d_ball = {k: C.to_arb(v) for k, v in direction.items()}
        slope = C.gradient_inner(
            g, {k: (v[0] if k in ("W_Q", "W_K", "W_OV", "W_V", "W_O", "t5_bias") else v) for k, v in d_ball.items()}
        )

        def loss(e):
            moved = {k: _axpy_nested(C.to_arb(params[k]), e, d_ball[k]) for k in params}
            return -C.evaluate_query(C.arb_params(moved, cfg), cfg, query).logp[query.target]

        L0 = loss(arb(0))
        R = [loss(arb(e)) - L0 - arb(e) * slope for e in (eta, 2 * eta)]
        return float((R[1] / R[0]).mid())


def _axpy_nested(x, e, y):
    return [_axpy_nested(a, e, b) for a, b in zip(x, y, strict=True)] if isinstance(x, list) else x + e * y


def test_exact_parameter_gradient_passes_an_exact_taylor_test():
    """:func:`mdm_props.certified.parameter_gradient` (every parameter, the C4b/C4c/C3v certificates' input):
    observed order 2 of the exact first-order remainder along a random direction, on every structure; meta:
    the gradient taken at θ with one W_Q entry moved by 1e-3 (a perturbed input) leaves a first-order
    remainder (ratio ≈ 2)."""
    import torch

    for n, case in enumerate(_gradient_draws()):
        params, cfg = case.params(), case.cfg
        query = storage.pair_queries(case.template, case.A, case.B, cfg.vocab)[n % 2]
        gen = torch.Generator().manual_seed(n)
        d = {k: torch.randn(v.shape, generator=gen, dtype=torch.float64) for k, v in params.items()}
        ratio = _taylor_ratio(params, cfg, query, d, params)
        assert abs(ratio - 4) < 0.1, (n, cfg, ratio)
        moved = {**params, "W_Q": params["W_Q"].clone()}
        moved["W_Q"][0, 0, 0, 0] += 1e-3
        assert abs(_taylor_ratio(params, cfg, query, d, moved) - 2) < 0.1


def test_the_certified_draws_are_the_float64_runners_draws():
    """Same seed, same draws: the certified closed forms match the per-draw float64 runners' numbers
    (``run_<id>_per_draw``; the default runners batch and split draws over encodings)."""
    seed, n = 7, 4
    c3_results = c3.run_c3_per_draw(n, seed)[0::3]
    for res, (case, _) in zip(c3_results, C.claim_draws("C3", n, seed), strict=False):
        cert = C.certify_case("C3", case)
        assert cert.details["closed_form"] == pytest.approx(res.reference, rel=1e-9)
    c4_results = c4.run_c4a_per_draw(n, seed)
    per_draw = len(c4_results) // n
    for res, (case, _) in zip(c4_results[0::per_draw], C.claim_draws("C4a", n, seed), strict=False):
        cert = C.certify_case("C4a", case)
        assert cert.details["eta_star"] == pytest.approx(res.details["eta_star"], rel=1e-9)
    c1_results = c1.run_c1b_per_draw(n, seed)[1::2]
    for res, (case, eta) in zip(c1_results, C.claim_draws("C1b", n, seed), strict=False):
        assert res.details["eta"] == eta
        cert = C.certify_case("C1b", case, eta)
        k = res.details["head"]
        assert cert.details["delta_eps"][k] == pytest.approx(res.observed, rel=1e-9)


def test_the_exact_model_uses_the_float64_residual_convention():
    """``ArbQuery.resid`` is y − p, as :attr:`mdm_props.storage.QueryState.resid` (and g = Uᵀ(p − y)): the
    exact and the float64 residuals agree entrywise within the forward bounds' probability error."""
    case, _ = C.claim_draws("C3", 1, 5)[0]
    params, cfg = case.params(), case.cfg
    q = storage.pair_queries(case.template, case.A, case.B, cfg.vocab)[1]
    s = storage.evaluate(params, cfg, q)
    with C.precision(C.SOUNDNESS_BITS):
        ex = C.evaluate_query(C.arb_params(params, cfg), cfg, q)
    assert C.enclosure_ratio(s.resid, ex.resid, 2 * s.e_p + 1e-300) <= 1
    assert float(ex.resid[q.target].mid()) > 0 and s.resid[q.target] > 0


def test_certified_backend_names_no_claim():
    """The ball backend is generic: no claim id (a quoted ``"C<digit>`` literal) in mdm_props/certified.py."""
    import re
    from pathlib import Path

    source = Path(C.__file__).read_text()
    assert not re.findall(r"[\"']C\d", source)


def test_certify_builds_its_draws_lazily():
    """``certify --draws N`` certifies draw 0 before building draw 1 (before: every draw was built first,
    ~5 s at 10^5 with no output); the draws are those of claim_draws, and bad arguments are refused at once."""
    import itertools
    import time

    start = time.perf_counter()
    lazy = C.iter_claim_draws("C3", 10**9, 4)
    first = list(itertools.islice(lazy, 3))
    assert time.perf_counter() - start < 5
    assert [(c.seed, c.cfg, e) for c, e in first] == [(c.seed, c.cfg, e) for c, e in C.claim_draws("C3", 3, 4)]
    with pytest.raises(ValueError, match="draws"):
        C.iter_claim_draws("C3", 0, 0)  # not deferred to the first draw
    with pytest.raises(ValueError, match="claim must be one of"):
        C.iter_claim_draws("C2a", 1, 0)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="claim must be one of"):
        C.claim_draws("C2a", 1, 0)
    with pytest.raises(ValueError, match="draws"):
        C.claim_draws("C3", 0, 0)
    with pytest.raises(ValueError, match="max_bits"):
        C._precisions(10)
    with pytest.raises(ValueError, match="control_id"):
        C.certify_counterexample("C5~causal", {})
    for control_id in ("C2a~d_k=2", "C2a~anisotropic", "C2b~d_k=2", "C2c~absolute"):
        with pytest.raises(ValueError, match="missing the key"):
            C.certify_counterexample(control_id, {})


# ---------------------------------------------------------------------------------------------
# certified negative controls: every counterexample is refuted exactly


@pytest.mark.parametrize(
    "control_id", [pytest.param(i, marks=pytest.mark.negative_control(i.split("~")[0])) for i in C.negative_controls()]
)
def test_negative_control_counterexample_is_certified(control_id):
    control = C.negative_controls()[control_id]
    cx = control.run(control.default_draws, 0, "cpu")
    assert cx.found, str(cx)
    cert = control.certify(cx.example)
    assert cert.status == "refuted", str(cert)
    if control_id == "C4c~arm":
        # the claim's own statement ⟨g_r, g_f⟩ > 0 refuted; the search's evidence (the loss rise) certified too
        assert cert.value < 0 and cert.details["ip"] == pytest.approx(cx.example["full_inner_product"], rel=1e-9)
        assert cert.details["full_step"]["status"] == "refuted" and cert.details["full_step"]["value"] > 0
    if control_id == "C2a~anisotropic":
        # the exact anisotropic correlation tr(D²R_g)/tr(D²) is the one the control's Monte Carlo sample shows: its
        # Fisher-z statistic (the control's own standard error) against it stays below the 1e-6 two-sided critical value
        e = cx.example
        se = abs(math.atanh(e["r"]) - math.atanh(e["formula"])) / e["statistic"]
        z = abs(math.atanh(e["r"]) - math.atanh(cert.details["anisotropic"])) / se
        assert z < stats.norm.isf(0.5e-6), z


def test_every_negative_control_of_c1_to_c4_is_certified():
    """Issue 13's done-when: every registered negative control of C1–C4 (C3v included) carries its own
    certification (``NegativeControl.certify``), collected by :func:`mdm_props.certified.negative_controls`."""
    from mdm_props.claims import c1_reusable_evidence as m1
    from mdm_props.claims import c2_correlated_routes as m2
    from mdm_props.claims import c3v_separate_value_path as m3v

    ids = {n.id for m in (m1, m2, c3, m3v, c4) for n in m.NEGATIVE_CONTROLS}
    assert all(n.certify is not None for m in (m1, m2, c3, m3v, c4) for n in m.NEGATIVE_CONTROLS)
    assert set(C.negative_controls()) == ids


def test_wrong_gradient_certificate_is_undecided_where_the_linear_term_is_right():
    """Meta (C4b~wrong-gradient): under alibi on the mirror template "A r B", L_r ≡ L_f (C5, Φ = id), so g_f = g_r
    and the first-order coefficient ⟨g_f, g_f − g_r⟩ is exactly 0: the certificate stays ``undecided`` at every
    precision (an equality is never refuted), while on the control's rope/t5/absolute draw it is ``refuted``."""
    from mdm_props.facts import Template
    from mdm_props.model import ModelConfig
    from mdm_props.params import init_params

    cfg = ModelConfig(vocab=5, d_model=7, d_head=3, n_heads=2, pos="alibi")
    fq, rq = storage.pair_queries(Template(3, 0, 2, (4,)), 1, 2, cfg.vocab)
    cert = c4.certify_linear_term(init_params(cfg, 3), cfg, fq, rq, max_bits=256)
    assert cert.status == "undecided" and cert.bits == 256


def test_the_counterexample_record_rebuilds_the_draw():
    """A counterexample's example dict names everything needed to redraw its parameters."""
    cx = c1.c1a_absolute(5, 0)
    case = C.case_from_example(cx.example)
    assert (case.cfg.pos, case.seed, case.A, case.B) == (
        "absolute",
        cx.example["seed"],
        cx.example["A"],
        cx.example["B"],
    )
    with pytest.raises(ValueError, match="missing the key .rope_base."):
        C.case_from_example({k: v for k, v in cx.example.items() if k != "rope_base"})


# ---------------------------------------------------------------------------------------------
# soundness of the float64 bounds


@settings(max_examples=SOUNDNESS_DRAWS)
@given(broad_cases)
def test_rounding_kit_bounds_are_sound(case):
    """For every kit bound, |float64 − exact| (certified) ≤ the derived bound, on every entry."""
    fq, rq = storage.pair_queries(case.template, case.A, case.B, case.cfg.vocab)
    for q in (fq, rq):
        ratios = C.kit_ratios(case.params(), case.cfg, q)
        assert set(ratios) == set(C.KIT_BOUNDS)
        assert all(v <= 1 for v in ratios.values()), ratios


@settings(max_examples=SOUNDNESS_DRAWS)
@given(claim_cases, st.sampled_from(strategies.ETAS))
def test_claim_tolerances_are_sound(case, eta):
    """For C1b, C3 and C4a: the sum of the certified true errors of the parts ≤ the derived tolerance."""
    ratios = C.claim_ratios(Draw.from_case(case, "cpu", eta))
    assert set(ratios) == set(C.claim_bounds())
    assert all(v <= 1 for v in ratios.values()), ratios


def test_soundness_check_rejects_a_perturbed_evaluation():
    """Meta-test: float64 logits computed from parameters moved by 1e-12 (relative, an input
    perturbation far above rounding) are rejected against the exact logits of the stored parameters."""
    from mdm_props.model import forward
    from mdm_props.rounding import forward_error_bounds

    case, _ = C.claim_draws("C3", 1, 3)[0]
    params, cfg = case.params(), case.cfg
    q = storage.pair_queries(case.template, case.A, case.B, cfg.vocab)[0]
    moved = {**params, "W_OV": params["W_OV"] * (1 + 1e-12)}
    b = forward_error_bounds(params, cfg, q.tensor())["logits"][q.slot]
    with C.precision(C.SOUNDNESS_BITS):
        exact = C.evaluate_query(C.arb_params(params, cfg), cfg, q).logits
        assert C.enclosure_ratio(forward(params, cfg, q.tensor()).logits[q.slot], exact, b) <= 1
        assert C.enclosure_ratio(forward(moved, cfg, q.tensor()).logits[q.slot], exact, b) > 1


def test_soundness_table_reports_every_bound():
    rows = C.soundness_table(1, 0)
    assert [r["bound"] for r in rows] == list(C.KIT_BOUNDS + C.claim_bounds())
    assert all(r["draws"] >= 1 and 0 <= r["max_ratio"] <= 1 for r in rows)
    assert "max err/bound" in C.format_soundness_table(rows)


# ---------------------------------------------------------------------------------------------
# the command


def test_certify_command_proves_c3_and_writes_json(tmp_path, capsys):
    path = tmp_path / "c3.json"
    assert main(["certify", "C3", "--draws", "3", "--seed", "1", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert [r["status"] for r in data["rows"]] == ["proved"] * 3
    assert data["summary"]["proved"] == 3
    assert "3/3 proved" in capsys.readouterr().out


@pytest.mark.parametrize("status, code", [("proved", 0), ("undecided", 1), ("refuted", 1)])
def test_certify_command_exit_status_follows_the_statuses(monkeypatch, capsys, status, code):
    """Exit 0 only when every draw is proved: an undecided draw is not a pass."""
    monkeypatch.setattr(C, "certify_case", lambda claim, case, eta, max_bits: C.Certificate(claim, "s", status, 64))
    assert C.run_certify("C3", draws=2, seed=0) == code
    assert f"2 {status}" in capsys.readouterr().out or status == "proved"


@pytest.mark.parametrize(
    "argv",
    [
        ["certify", "C2a"],
        ["certify", "C3", "--draws", "0"],
        ["certify", "C3", "--seed", "-1"],
        ["certify", "C3", "--max-bits", "x"],
    ],
)
def test_certify_command_bad_arguments_exit_2(argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


def test_missing_flint_names_the_install_command(monkeypatch, capsys):
    monkeypatch.setattr(C, "flint", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[certify\]"'):
        C.require_flint()
    assert C.run_certify("C3", draws=1) == 1
    assert 'pip install -e ".[certify]"' in capsys.readouterr().err
