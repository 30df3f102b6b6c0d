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


def test_pytest_prints_a_margin_summary_per_claim_with_xdist(tmp_path):
    """`pytest -n 2` ends with one line per claim checked through assert_holds: draws, checks, smallest
    margin, largest err/tol, status (the workers send their rows to the controller)."""
    import subprocess
    import sys

    root = TESTS.parent
    res = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "-q", "-p", "no:cacheprovider",
                          "tests/test_c3.py::test_c3_runner_holds_and_is_deterministic",
                          "tests/test_c1.py::test_runners_hold_and_are_deterministic"],
                         cwd=root, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    assert "claim margins" in out, out[-3000:]
    lines = {line.split()[0]: line.split() for line in out.splitlines()[out.splitlines().index(
        next(ln for ln in out.splitlines() if "claim margins" in ln)) + 2:] if line.strip()}
    for claim, draws in (("C3", "6"), ("C1a", "4"), ("C1b", "4"), ("C1c", "4")):
        assert claim in lines and lines[claim][1] == draws and lines[claim][-1] == "holds", (claim, out[-2000:])
        assert float(lines[claim][3]) > 0 and float(lines[claim][4]) <= 1
