"""The result constructors every checker uses: what counts as holding, and the margins reported."""

import math

import pytest

from mdm_props.checks import identity, inequality, summarize


def test_identity_holds_within_its_tolerance_and_fails_beyond():
    ok = identity("C0.1", "x", 1.0 + 1e-15, 1.0, 2e-15)
    bad = identity("C0.1", "x", 1.0 + 3e-15, 1.0, 1e-15)
    assert ok.holds and 0 < ok.margin < 1 and ok.error_ratio < 1
    assert not bad.holds and bad.margin < 0 and bad.error_ratio > 2.5


def test_weak_inequality_met_only_within_rounding_holds_with_margin_zero():
    r = inequality("C4a", "R >= 0", -1e-17, 0.0, ">=", scale=1e-20, tolerance=1e-16)
    assert r.holds and r.margin == 0.0
    far = inequality("C4a", "R >= 0", 3e-20, 0.0, ">=", scale=1e-20, tolerance=1e-16)
    assert far.holds and far.margin == pytest.approx(3.0)


def test_inequality_violated_beyond_its_tolerance_has_a_negative_margin():
    r = inequality("C3", "ip >= 0", -2e-16, 0.0, ">=", scale=1.0, tolerance=1e-16)
    assert not r.holds and r.margin < 0 and r.error == pytest.approx(2e-16)


def test_strict_inequality_fails_at_the_bound_whatever_the_tolerance():
    assert not inequality("C3", "ip > 0", 0.0, 0.0, ">", scale=1.0, tolerance=1.0).holds
    assert inequality("C3", "ip < 1", 0.5, 1.0, "<", scale=1.0).margin == pytest.approx(0.5)


def test_non_finite_observations_never_hold():
    assert not identity("C0.2", "x", math.nan, 1.0, 1.0).holds
    assert not inequality("C3", "x", math.inf, 0.0, "<=", scale=1.0).holds


@pytest.mark.parametrize(
    "kwargs, message", [({"relation": "=="}, "relation must be one of"), ({"scale": 0.0}, "scale must be > 0")]
)
def test_bad_arguments_are_refused(kwargs, message):
    args = {"relation": ">", "scale": 1.0} | kwargs
    with pytest.raises(ValueError, match=message):
        inequality("C3", "x", 1.0, 0.0, **args)


def test_summary_reports_the_worst_margin_and_ratio():
    rs = [identity("C1b", "a", 1.0, 1.0, 1e-15), inequality("C1b", "b", 0.2, 0.0, ">", scale=1.0)]
    s = summarize(rs)
    assert s == {
        "draws": 2,
        "worst_margin": 0.2,
        "worst_error_ratio": 0.0,
        "holds": True,
        "not_applicable": 0,
        "undecided": 0,
    }
    with pytest.raises(ValueError, match="at least one"):
        summarize([])


def test_undecided_results_are_counted_not_judged():
    from mdm_props.checks import STATUSES, undecided

    u = undecided("C4b", "Taylor test", "no window", window=[3])
    assert u.status == "undecided" and u.status in STATUSES and not u.holds and "no window" in str(u)
    ok, bad = identity("C4b", "a", 1.0, 1.0, 0.1), identity("C4b", "a", 2.0, 1.0, 0.1)
    assert (ok.status, bad.status) == ("holds", "violated")
    s = summarize([u, ok])
    assert s["holds"] and s["undecided"] == 1 and s["worst_margin"] == ok.margin
    assert not summarize([u, bad])["holds"]
    alone = summarize([u])
    assert alone["holds"] and alone["undecided"] == 1 and math.isnan(alone["worst_margin"])
