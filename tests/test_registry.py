"""Completeness of the specification: every registered claim has a checker, a runner and bounds that
resolve, tests, a meta-test, a doc page and (where required) a negative control; every marker names a
registered claim; every dotted name a doc page mentions resolves."""

import dataclasses
import importlib
import re
from pathlib import Path

import pytest

from mdm_props import registry

TESTS = Path(__file__).resolve().parent


def test_every_claim_is_complete():
    problems = registry.audit(TESTS)
    assert not problems, "\n".join(problems)


def test_audit_reports_a_claim_without_tests_docs_or_runner(tmp_path):
    ghost = dataclasses.replace(
        registry.get("C3"),
        id="Cghost",
        doc="claims/Cghost-missing.md",
        runner="mdm_props.claims.c3_aligned_storage:run_cghost",
        checker="mdm_props.claims.c3:check_c3",
        bounds=(),
    )
    problems = registry.audit(TESTS, claims=registry.CLAIMS + (ghost,))
    assert any(
        "Cghost: runner 'mdm_props.claims.c3_aligned_storage:run_cghost' does not resolve" in p for p in problems
    )
    assert any("Cghost: checker 'mdm_props.claims.c3:check_c3' does not resolve" in p for p in problems)
    assert any("Cghost: no bound registered" in p for p in problems)
    assert any("Cghost: no meta-test marked meta" in p for p in problems)
    assert any("Cghost: no test marked claim" in p for p in problems)
    assert any("Cghost: doc page docs/claims/Cghost-missing.md is missing" in p for p in problems)
    assert any("Cghost: no test marked negative_control" in p for p in problems)


def test_audit_reports_a_marker_naming_an_unknown_claim(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_fake.py").write_text(
        'import pytest\n@pytest.mark.claim("Cnowhere")\ndef test_x():\n    assert True\n'
    )
    problems = registry.audit(tests, claims=())
    assert problems == ["marker claim('Cnowhere') in tests/test_fake.py names an unknown claim"]


def test_every_claim_states_a_known_kind_and_the_c1_to_c4_claims_need_negative_controls():
    assert {c.kind for c in registry.CLAIMS} <= set(registry.KINDS)
    assert all(c.needs_negative_control for c in registry.CLAIMS if not c.id.startswith("C0"))


@pytest.mark.parametrize("bad", ["Cghost", "X", ""])
def test_unknown_claim_ids_are_refused(bad):
    with pytest.raises(ValueError, match="unknown claim id"):
        registry.select([bad]) if bad else registry.get(bad)


def test_family_selection_expands_in_registry_order():
    assert [c.id for c in registry.select(["C4", "C1b"])] == ["C4a", "C4b", "C4c", "C1b"]


def test_following_a_claim_reaches_each_piece_in_one_hop():
    c3 = registry.get("C3")
    assert registry.resolve(c3.checker).__name__ == "check_c3"
    assert registry.resolve(c3.runner).__name__ == "run_c3"
    assert [registry.resolve(b).__name__ for b in c3.bounds] == ["c3_tolerances"]
    assert (TESTS.parent / c3.tests).is_file() and (registry.DOCS / c3.doc).is_file()
    assert {n.id for n in c3.negative_controls()} == {"C3~arm", "C3~non-orth", "C3~absolute"}


@pytest.mark.parametrize("bad", ["mdm_props.rounding", "mdm_props.nowhere:x", "mdm_props.rounding:nothing"])
def test_resolve_names_what_does_not_resolve(bad):
    with pytest.raises(ValueError, match="dotted name|does not resolve"):
        registry.resolve(bad)


DOTTED = re.compile(r"`(mdm_props(?:\.\w+)+)(?:[.:](\w+))?`")


def dotted_names_in_docs() -> list[tuple[str, str]]:
    """(page, name) for every `mdm_props.…` name in backticks on a doc page or the README."""
    pages = sorted(registry.DOCS.rglob("*.md")) + [TESTS.parent / "README.md", TESTS.parent / "CONTRIBUTING.md"]
    return [(p.name, m.group(0).strip("`")) for p in pages if p.is_file() for m in DOTTED.finditer(p.read_text())]


def test_every_dotted_name_in_the_docs_resolves():
    """A rename that forgets the docs fails here: `mdm_props.claims.c3_aligned_storage.check_c3`,
    `mdm_props.rounding:gamma` and `mdm_props.storage` style names must import."""
    names = dotted_names_in_docs()
    assert len(names) > 10  # the docs do name code
    bad = []
    for page, name in names:
        module, _, attr = name.replace(":", ".").rpartition(".")
        try:
            importlib.import_module(name.replace(":", "."))
            continue
        except ImportError:
            pass
        try:
            getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            bad.append(f"{page}: {name}")
    assert not bad, "\n".join(bad)


def test_a_family_is_never_the_prefix_of_another_familys_id():
    """C10 is its own family: selecting C1 can never take it (a family is the id up to its first non-digit)."""
    c10 = dataclasses.replace(registry.get("C1a"), id="C10")
    assert c10.family == "C10" and registry.get("C1a").family == "C1"
    assert [registry.family_of(i) for i in ("C0.3", "C1b", "C3v", "C10", "C12a")] == ["C0", "C1", "C3", "C10", "C12"]
    with pytest.raises(ValueError, match="claim_id must start with 'C'"):
        registry.family_of("x1")


def test_the_rows_are_collected_from_the_claim_modules():
    """Every row comes from its claim module's ``CLAIMS`` (registry.py names no claim), in numeric module order."""
    for c in registry.CLAIMS:
        assert c in importlib.import_module(c.module).CLAIMS
    families = [int(c.family[1:]) for c in registry.CLAIMS]
    assert families == sorted(families)
