"""Completeness of the specification: every registered claim has a runner, tests, a doc page and
(where required) a negative control; every marker names a registered claim."""

import dataclasses
from pathlib import Path

import pytest

from mdm_props import registry

TESTS = Path(__file__).resolve().parent


def test_every_claim_is_complete():
    problems = registry.audit(TESTS)
    assert not problems, "\n".join(problems)


def test_audit_reports_a_claim_without_tests_docs_or_runner(tmp_path):
    ghost = dataclasses.replace(registry.get("C3"), id="C9", doc="claims/C9-missing.md", module="mdm_props.claims.c3")
    problems = registry.audit(TESTS, claims=registry.CLAIMS + (ghost,))
    assert any("C9: no runner" in p for p in problems)
    assert any("C9: no test marked claim" in p for p in problems)
    assert any("C9: doc page docs/claims/C9-missing.md is missing" in p for p in problems)
    assert any("C9: no test marked negative_control" in p for p in problems)


def test_audit_reports_a_marker_naming_an_unknown_claim(tmp_path):
    (tmp_path / "test_fake.py").write_text('import pytest\n@pytest.mark.claim("C7")\ndef test_x():\n    assert True\n')
    problems = registry.audit(tmp_path, claims=())
    assert problems == ["marker claim('C7') in test_fake.py names an unknown claim"]


def test_every_claim_states_a_known_kind_and_the_c1_to_c4_claims_need_negative_controls():
    assert {c.kind for c in registry.CLAIMS} <= set(registry.KINDS)
    assert all(c.needs_negative_control for c in registry.CLAIMS if not c.id.startswith("C0"))


@pytest.mark.parametrize("bad", ["C9", "X", ""])
def test_unknown_claim_ids_are_refused(bad):
    with pytest.raises(ValueError, match="unknown claim id"):
        registry.select([bad]) if bad else registry.get(bad)


def test_family_selection_expands_in_registry_order():
    assert [c.id for c in registry.select(["C4", "C1b"])] == ["C4a", "C4b", "C4c", "C1b"]
