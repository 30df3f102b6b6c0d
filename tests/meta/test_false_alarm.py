"""The stated false-alarm level is the level used.

Each claim with statistical checks states its false-alarm level in the registry (``Claim.false_alarm``,
1e-6, a literal there); each statistical check reports the level its interval or critical value was
computed at (``details["alpha"]``); ``mdm-props verify`` compares the two (:func:`mdm_props.statistics.level_problem`)
and marks a row ``wrong-level`` when they differ. Here: each registered checker, called with its defaults,
uses the stated level; the level it reports is the one it used (another level moves its critical value);
and verify's comparison fails a run whose level differs from the stated one.
"""

import dataclasses

import pytest
import torch

from mdm_props import cli, registry, statistics
from mdm_props.claims import c2_correlated_routes as c2
from mdm_props.model import ModelConfig
from mdm_props.params import init_params

OTHER_LEVEL = 1e-2


def _c04(check, **kw):
    cfg = ModelConfig(vocab=5, d_model=6, d_head=4, pos="rope", attention="bidirectional")
    return check(init_params(cfg, 3), cfg, torch.tensor([1, 4, 2]), 400, 7, **kw)


def _c2a(check, **kw):
    sample = c2.sample_scores(16, 8, 1e4, 2, 300, seed=5)
    return [check(sample["s_f"], sample["s_r"], 8, 1e4, 4.0, **kw)]


_HI = {"per_layer": {1: [200, 200]}, "chosen": [200, 200]}
_LO = {"per_layer": {1: [30, 50]}, "chosen": [30, 50]}

# claim id → its registered checker called on a small fixed input (keyword arguments passed through)
CALLS = {
    "C0.4": _c04,
    "C2a": _c2a,
    "C2c": lambda check, **kw: [check("C2c", "rate", 20, 20, **kw)],
    "C4c": lambda check, **kw: check({"rope": (30, 40), "t5": (20, 30), "absolute": (4, 10)}, **kw),
    "C7": lambda check, **kw: check({"rope": _HI, "t5": _HI, "arm": _LO}, **kw),
    "C6a": lambda check, **kw: check({"chosen": [14, 500], "per_layer": {1: [14, 500]}, "per_norm": {}}, **kw),
}
STATED = [c for c in registry.CLAIMS if c.false_alarm is not None]


def run(claim, **kw):
    return CALLS[claim.id](registry.resolve(claim.checker), **kw)


def test_every_distributional_and_typical_claim_states_its_level_and_has_a_call_here():
    assert {c.id for c in registry.CLAIMS if c.kind in ("distributional", "typical")} <= {c.id for c in STATED}
    assert set(CALLS) == {c.id for c in STATED}
    assert all(c.false_alarm == 1e-6 for c in STATED)
    with pytest.raises(ValueError, match="false-alarm"):
        dataclasses.replace(registry.BY_ID["C2c"], false_alarm=None)
    with pytest.raises(ValueError, match="false_alarm"):
        dataclasses.replace(registry.BY_ID["C2c"], false_alarm=1.5)


@pytest.mark.parametrize("claim", [pytest.param(c, marks=pytest.mark.meta(c.id), id=c.id) for c in STATED])
def test_each_checker_uses_the_stated_level_by_default(claim):
    results = run(claim)
    assert statistics.reported_levels(results), "no check reports the level it used"
    assert statistics.level_problem(results, claim.false_alarm) is None, statistics.reported_levels(results)


@pytest.mark.parametrize("claim", [pytest.param(c, id=c.id) for c in STATED])
def test_the_reported_level_is_the_level_used(claim):
    """Another level moves the statistical check's critical value (its bound, tolerance or interval) and is
    reported as such: the report is not a label."""
    stated, other = run(claim), run(claim, alpha=OTHER_LEVEL)
    pick = lambda rs: [r for r in rs if "alpha" in r.details]  # noqa: E731
    assert statistics.reported_levels(other) == [OTHER_LEVEL] * len(pick(other))
    assert statistics.level_problem(other, claim.false_alarm) is not None
    moved = [
        (a.observed, a.reference, a.tolerance) != (b.observed, b.reference, b.tolerance)
        for a, b in zip(pick(stated), pick(other), strict=True)
    ]
    assert all(moved), [str(r) for r in pick(other)]


def test_level_problem_names_missing_and_wrong_levels():
    ok = c2.check_rate("C2c", "rate", 20, 20)
    wrong = c2.check_rate("C2c", "rate", 20, 20, alpha=OTHER_LEVEL)
    assert statistics.level_problem([ok], 1e-6) is None
    assert "1 of 2 statistical checks used false-alarm level 0.01" in statistics.level_problem([ok, wrong], 1e-6)
    plain = dataclasses.replace(ok, details={})
    assert "none of its 1 checks reports one" in statistics.level_problem([plain], 1e-6)


@pytest.mark.meta("C4c")
def test_verify_fails_a_row_whose_checks_used_another_level():
    """verify's row reports the levels used; a claim stating another level than its checks use is
    ``wrong-level`` (exit 1), whatever the checks' own verdicts."""
    claim = registry.BY_ID["C4c"]
    row = cli._run_claim(claim, 6, 0, "cpu")
    assert row["false_alarm"] == {"stated": 1e-6, "used": [1e-6]} and row["status"] != "wrong-level"
    bad = cli._run_claim(dataclasses.replace(claim, false_alarm=OTHER_LEVEL), 6, 0, "cpu")
    assert bad["status"] == "wrong-level" and "not the stated 0.01" in bad["reason"], bad
    assert bad["status"] not in cli.STATUS_OK
