"""The one assertion of the claim tests (`mdm_props.checks.assert_holds`): it asserts every result,
names the failing ones, and points Hypothesis' targeting at the *smallest* margin (``target``
maximises, so it receives −margin); every claim property test goes through it."""

import ast
from pathlib import Path

import hypothesis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdm_props import checks

TESTS = Path(__file__).resolve().parent.parent


def _results(margins):
    return [checks.identity("meta-test", f"q{i}", 2.0 - m, 1.0, 1.0) for i, m in enumerate(margins)]  # margin m


def test_assert_holds_targets_the_negated_smallest_margin(monkeypatch):
    seen = []
    monkeypatch.setattr(hypothesis, "target", lambda value, label="": seen.append((value, label)))

    @settings(max_examples=3, database=None)
    @given(st.just(None))
    def inner(_):
        summary = checks.assert_holds(_results([0.5, 0.25, 0.75]))
        assert summary["worst_margin"] == 0.25

    inner()
    assert seen and all(v == -0.25 for v, _ in seen), seen


def test_assert_holds_outside_hypothesis_does_not_target(monkeypatch):
    seen = []
    monkeypatch.setattr(hypothesis, "target", lambda value, label="": seen.append(value))
    checks.assert_holds(_results([0.1]))
    assert seen == []


def test_assert_holds_names_every_failing_result():
    results = _results([0.5, -1.0, -2.0])
    with pytest.raises(AssertionError) as exc:
        checks.assert_holds(results)
    msg = str(exc.value)
    assert str(results[1]) in msg and str(results[2]) in msg and str(results[0]) not in msg


def test_assert_holds_refuses_an_empty_list():
    with pytest.raises(ValueError, match="results"):
        checks.assert_holds([])


def _claim_property_tests():
    """(file, function) for every test marked claim(...) and decorated with @given."""
    for path in sorted(TESTS.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            names = {ast.unparse(d).split("(")[0] for d in node.decorator_list}
            if "given" in names and "pytest.mark.claim" in names:
                yield path.name, node


def test_every_claim_property_test_asserts_through_assert_holds():
    """No claim property test calls hypothesis.target itself (the sign is assert_holds' job), and every
    one calls assert_holds (directly or through a local helper of its module)."""
    found, bad = 0, []
    for name, fn in _claim_property_tests():
        found += 1
        calls = {ast.unparse(c.func) for c in ast.walk(fn) if isinstance(c, ast.Call)}
        if "target" in calls or "hypothesis.target" in calls or "assert_holds" not in calls:
            bad.append(f"{name}::{fn.name}")
    assert found >= 10 and not bad, bad


def _root_conftest(config):
    root = (TESTS.parent / "conftest.py").resolve()
    return next(
        p
        for p in config.pluginmanager.get_plugins()
        if getattr(p, "__file__", None) and Path(p.__file__).resolve() == root
    )


def test_margin_summary_merges_the_workers_rows_and_prints_one_line_per_claim(request):
    """The xdist path in-process: a worker's MarginLog goes through workeroutput at session finish, the
    controller merges it when the node goes down and prints one line per claim (draws, checks, smallest
    margin, largest err/tol, status)."""
    from types import SimpleNamespace

    cf = _root_conftest(request.config)
    draw = lambda seed: {"seed": seed, "pos": "rope"}  # noqa: E731
    worker = SimpleNamespace(workeroutput={}, _mdm_margins=cf.MarginLog())
    worker._mdm_margins(
        [
            checks.identity("C3", "a", 1.0, 1.0, 1.0, draw=draw(1)),
            checks.identity("C3", "b", 1.5, 1.0, 1.0, draw=draw(2)),
        ]
    )
    worker._mdm_margins([checks.identity("C1b", "a", 3.0, 1.0, 1.0)])  # violated: error 2 > tolerance 1
    cf.pytest_sessionfinish(SimpleNamespace(config=worker))
    controller = SimpleNamespace(_mdm_margins=cf.MarginLog())
    controller._mdm_margins([checks.identity("C3", "c", 1.25, 1.0, 1.0)])  # another worker's draw, merged
    cf.pytest_testnodedown(SimpleNamespace(workeroutput=worker.workeroutput, config=controller), None)
    lines = []
    reporter = SimpleNamespace(section=lambda title: lines.append(title), write_line=lines.append)
    cf.pytest_terminal_summary(reporter, 0, controller)
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows["C3"][:5] == ["C3", "3", "3", "0.5", "0.5"] and rows["C3"][-1] == "holds", lines
    assert rows["C1b"][1:3] == ["1", "1"] and "VIOLATED" in rows["C1b"], lines


# ---------------------------------------------------------------------------------------------
# strict inequalities within rounding (a thorough run's C1b false alarm: tests/test_c1.py)


@pytest.mark.parametrize("relation", [">", "<"])
def test_a_strict_inequality_within_its_tolerance_is_undecided_and_beyond_it_violated(relation):
    """observed on the wrong side by less than the tolerance: undecided (neither holds nor fails
    assert_holds); by more: violated; on the right side: holds; with no tolerance a tie is violated.
    The batched check gives each draw the per-draw status."""
    import torch

    from mdm_props import batched

    s = 1 if relation == ">" else -1  # the wrong side of the bound 0 is −s·x
    cases = [(-s * 1e-16, 1e-14, "undecided"), (0.0, 1e-14, "undecided"), (-s * 2e-14, 1e-14, "violated")]
    cases += [(s * 1e-16, 1e-14, "holds"), (0.0, 0.0, "violated")]
    for observed, tol, status in cases:
        r = checks.inequality("X", "x > 0", observed, 0.0, relation, 1.0, tol)
        assert r.status == status, (observed, tol, r)
    checks.assert_holds([checks.inequality("X", "x > 0", -s * 1e-16, 0.0, relation, 1.0, 1e-14)])
    with pytest.raises(AssertionError, match="VIOLATED"):
        checks.assert_holds([checks.inequality("X", "x > 0", -s * 2e-14, 0.0, relation, 1.0, 1e-14)])
    observed, tols = zip(*[(o, t) for o, t, _ in cases], strict=True)
    b = batched.inequality_check("X", "x > 0", torch.tensor(observed), 0.0, relation, 1.0, torch.tensor(tols))
    assert [st for _, _, st in cases] == [b.result(i).status for i in range(len(cases))]
    assert b.failing.tolist() == [st == "violated" for _, _, st in cases]
    assert b.undecided is not None and b.undecided.tolist() == [st == "undecided" for _, _, st in cases]
