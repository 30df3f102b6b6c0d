"""The batched path (mdm_props.batched) against the per-draw path: same draws, same verdicts, same margins
to rounding; a corrupted draw is caught at its own index.

Margin comparison, stated once: an inequality's margin is (signed distance to the bound)/scale, and both
paths' observed values lie within half the derived tolerance of the exact value (the tolerances carry
STORAGE_SAFETY = 2), so the two margins differ by at most (tol_batched + tol_per_draw)/scale (+1e-12 for
the division itself). An identity's margin is 1 − error/tolerance where the error is itself a rounding
residue whose value depends on the order of the float64 sums (vmap's batched kernels sum in another
order), so two correct evaluations differ in error/tolerance by about that residue: observed ≤ 0.012 on
these draws; we allow 0.05. A real defect (a wrong gradient, formula or step) moves error/tolerance by
≫ 1, as the corrupted-draw tests show.
"""

import random

import pytest
import torch

from mdm_props import batched, search, strategies
from mdm_props.claims import c1_reusable_evidence as c1
from mdm_props.claims import c3_aligned_storage as c3
from mdm_props.claims import c3v_separate_value_path as c3v
from mdm_props.claims import c4_reverse_loss_decrease as c4
from mdm_props.model import POSITIONAL_ENCODINGS
from mdm_props.params import init_params

IDENTITY_MARGIN_SLACK = 0.05

# claim: (batched checker, per-draw checker, per-draw arguments of a Case, sample_batches options)
CLAIMS = {
    "C1a": (c1.check_c1a_batch, c1.check_c1a, search.case_args, {"either_orthonormal": True}),
    "C1b": (c1.check_c1b_batch, c1.check_c1b, search.case_args, {"step": True}),
    "C1c": (c1.check_c1c_batch, c1.check_c1c, search.case_args, {"step": True}),
    "C3": (c3.check_c3_batch, c3.check_c3, search.case_args, {}),
    "C3v": (c3v.check_c3v_batch, c3v.check_c3v, c3v.factored_case, {}),
    "C4a": (c4.check_c4a_batch, c4.check_c4a, search.case_args, {}),
}


def batches(claim, draws=24, size=6, seed=5):
    return list(batched.sample_batches(draws, seed, size, n_heads=strategies.N_HEADS, **CLAIMS[claim][3]))


def per_draw(claim, batch, i):
    _, check, args, _ = CLAIMS[claim]
    return check(*args(batch.case(i), "cpu"), *(() if batch.etas is None else (batch.etas[i],)))


@pytest.mark.parametrize("seed", range(6))
def test_init_params_batch_equals_init_params_bit_for_bit(seed):
    rng = random.Random(seed)
    for _ in range(8):
        case = strategies.sample_case(rng, pos=POSITIONAL_ENCODINGS, orthonormal=rng.random() < 0.5, n_heads=(1, 2, 3))
        seeds, scales = (
            [rng.randint(0, strategies.MAX_SEED) for _ in range(5)],
            [rng.choice(strategies.SCALES) for _ in range(5)],
        )
        stacked = batched.init_params_batch(case.cfg, seeds, scales, orthonormal=case.orthonormal)
        for i, (s, c) in enumerate(zip(seeds, scales, strict=True)):
            single = init_params(case.cfg, s, scale=c, orthonormal=case.orthonormal)
            assert all(torch.equal(single[k], stacked[k][i]) for k in single), (case, i)


@pytest.mark.parametrize("claim", list(CLAIMS))
def test_batched_and_per_draw_agree_on_the_same_draws(claim):
    for batch in batches(claim):
        report = CLAIMS[claim][0](batch)
        for i in range(batch.size):
            expected, got = per_draw(claim, batch, i), report.results(i)
            assert [r.quantity for r in expected] == [r.quantity for r in got]
            assert got[0].details["draw"] == search.describe(
                batch.case(i), **({} if batch.etas is None else {"eta": batch.etas[i]})
            )
            for p, b in zip(expected, got, strict=True):
                assert p.holds == b.holds, (str(p), str(b))
                if p.relation == "==":
                    assert abs(p.margin - b.margin) <= IDENTITY_MARGIN_SLACK, (str(p), str(b))
                else:
                    slack = (p.tolerance + b.tolerance) / _scale(p) + 1e-12
                    assert abs(p.margin - b.margin) <= slack, (str(p), str(b), slack)


def _scale(r):
    """The margin scale of an inequality CheckResult: signed distance / margin (the margin is distance/scale)."""
    signed = r.observed - r.reference if r.relation in (">", ">=") else r.reference - r.observed
    return abs(signed / r.margin) if r.margin else 1.0


@pytest.mark.parametrize("claim", list(CLAIMS))
def test_report_selects_the_worst_draw_of_every_check(claim):
    batch = batches(claim, draws=8, size=8)[0]
    report = CLAIMS[claim][0](batch)
    i, margin = report.worst
    assert margin == min(min(r.margin for r in report.results(j)) for j in range(batch.size))
    assert i in {r.details["batch_index"] for r in report.selected()}
    assert min(r.margin for r in report.selected()) == margin


# ---------------------------------------------------------------------------------------------
# a corrupted draw is caught at its own index


J = 3  # the corrupted draw


def perturbed(params, j, name, rel=1e-6):
    """Draw j's parameter ``name`` moved by a relative ``rel`` (a fixed random direction); other draws untouched."""
    noise = torch.randn(params[name][j].shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = dict(params)
    out[name] = params[name].clone()
    out[name][j] = params[name][j] * (1 + rel * noise)
    return out


def corrupt_reverse_query(monkeypatch, module, name, param, reverse_slot):
    """Evaluate the reverse query's gradient (``module.name``; the query at slot b) with draw J's ``param``
    perturbed: the two queries of draw J no longer read the same parameters, which the identity must notice."""
    real = getattr(module, name)

    def wrapped(params, cfg, query, *rest):
        return real(perturbed(params, J, param) if query.slot == reverse_slot else params, cfg, query, *rest)

    monkeypatch.setattr(module, name, wrapped)


def ascent_at(monkeypatch, j):
    """Draw j's storage step taken with −η (ascent): the step input of that draw perturbed."""
    real = batched.storage_steps

    def wrapped(params, G, eta):
        eta = eta.clone()
        eta[j] = -eta[j]
        return real(params, G, eta)

    monkeypatch.setattr(batched, "storage_steps", wrapped)


def first_batch(claim, size=6):
    return batches(claim, draws=size, size=size, seed=11)[0]


def assert_caught_at(report, j):
    assert bool(report.holds.sum() == report.batch.size - 1) and not bool(report.holds[j]), report.holds
    assert report.worst[0] == j
    assert any(not r.holds and r.details["batch_index"] == j for r in report.selected())


@pytest.mark.meta("C3")
def test_c3_batch_catches_one_corrupted_draw(monkeypatch):
    batch = first_batch("C3")
    assert bool(c3.check_c3_batch(batch).holds.all())
    corrupt_reverse_query(monkeypatch, batched, "parameter_gradients", "E", batch.template.b)
    assert_caught_at(c3.check_c3_batch(batch), J)


@pytest.mark.meta("C4a")
def test_c4a_batch_catches_one_corrupted_draw(monkeypatch):
    batch = first_batch("C4a")
    assert bool(c4.check_c4a_batch(batch).holds.all())
    ascent_at(monkeypatch, J)
    assert_caught_at(c4.check_c4a_batch(batch), J)


@pytest.mark.meta("C3v")
def test_c3v_batch_catches_one_corrupted_draw(monkeypatch):
    batch = first_batch("C3v")
    assert bool(c3v.check_c3v_batch(batch).holds.all())
    corrupt_reverse_query(monkeypatch, batched, "parameter_gradients", "E", batch.template.b)
    assert_caught_at(c3v.check_c3v_batch(batch), J)


@pytest.mark.meta("C1b")
@pytest.mark.meta("C1c")
@pytest.mark.parametrize("claim", ["C1b", "C1c"])
def test_c1b_c1c_batch_catch_one_ascent_step(claim, monkeypatch):
    check = CLAIMS[claim][0]
    batch = first_batch(claim)
    assert bool(check(batch).holds.all())
    ascent_at(monkeypatch, J)
    assert_caught_at(check(batch), J)


@pytest.mark.meta("C1a")
def test_c1a_batch_catches_one_corrupted_draw(monkeypatch):
    """Draw J's W_OV perturbed (relative 1e-6) in the model evaluation only: its logits leave the value-path
    formula, which reads the unperturbed W_OV."""
    batch = first_batch("C1a")
    assert bool(c1.check_c1a_batch(batch).holds.all())
    real = batched.query_state
    monkeypatch.setattr(
        batched, "query_state", lambda params, cfg, query, out=None: real(perturbed(params, J, "W_OV"), cfg, query)
    )
    assert_caught_at(c1.check_c1a_batch(batch), J)


def test_batches_refuse_bad_input():
    case = strategies.sample_case(random.Random(0))
    with pytest.raises(ValueError, match="seeds"):
        batched.Batch(case.cfg, case.template, case.A, case.B, True, (), ())
    with pytest.raises(ValueError, match="batch_size"):
        next(batched.sample_batches(4, 0, 0))
    with pytest.raises(ValueError, match="size"):
        batched.batch_from_case(case, 0)
    with pytest.raises(ValueError, match="etas"):
        batched.batch_from_case(case, 2).eta_tensor()


def test_short_runs_spread_their_draws_over_many_structures():
    """A batch of 50 draws spans 25 structures (2 draws each), 10,000 draws 40 of 250; verify's runners split
    their draws over the encodings first (12–13 each), so its default 50 draws see at least 25 structures."""
    assert batched.batch_size_for(50) == 2 and batched.batch_size_for(10000) == batched.BATCH_SIZE
    assert batched.batch_size_for(1) == 1 and batched.batch_size_for(10**6) == batched.BATCH_SIZE
    structures = {
        tuple(sorted((k, str(v)) for k, v in r.details["draw"].items() if k not in ("seed", "scale")))
        for r in c3.run_c3(50, 0)
        if "draw" in r.details
    }
    assert len(structures) >= 25


@pytest.mark.parametrize(
    "change, hypothesis",
    [({"orthonormal": False}, "H-orth"), ({"attention": "causal"}, "H-bi"), ({"pos": "absolute"}, "H-rel")],
)
def test_batched_checkers_refuse_draws_outside_their_hypotheses(change, hypothesis):
    """A batched checker used outside its hypotheses raises, naming the hypothesis: never a vacuous pass."""
    import dataclasses

    case = strategies.sample_case(random.Random(0))
    if "orthonormal" in change:
        case = dataclasses.replace(case, orthonormal=False)
    else:
        case = dataclasses.replace(case, cfg=dataclasses.replace(case.cfg, **change))
    for check in (c3.check_c3_batch, c4.check_c4a_batch, c3v.check_c3v_batch):
        with pytest.raises(ValueError, match=hypothesis):
            check(batched.batch_from_case(case, 2))
