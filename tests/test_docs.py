"""Docs that cannot drift: the theory page against the registry, every path and short dotted name the
docs mention, every documented `mdm-props` command line against its subcommand's parser, and every
status and hypothesis that verify prints explained on README or docs/index.md."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest

from mdm_props import registry
from mdm_props.checks import STATUSES

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md", ROOT / "CONTRIBUTING.md"]
SECTION = re.compile(r"^### (C[0-9A-Za-z.]+)\s*$", re.M)
PATH = re.compile(r"`((?:mdm_props|tests|docs|scripts)/[\w./-]+\.(?:py|md|png|sh))`")
SHORT_DOTTED = re.compile(r"`([a-z][a-z0-9_]*(?:[.:][A-Za-z_]\w*)+)`")  # `model.forward`, `claims.c3_x:check`
MODULES = {p.stem for p in (ROOT / "mdm_props").glob("*.py")} | {"claims"}
COMMAND = re.compile(r"^\s*(?:\$ )?mdm-props ([^\n#`]*)", re.M)
INLINE_COMMAND = re.compile(r"`mdm-props ([^`\n]*)`")  # a command in running text or a table cell
CLAIM_ROW = re.compile(r"^\| (C[0-9][0-9A-Za-z.]*) \| [^|]+ \| ([a-z-]+) \| ([^|]+) \|", re.M)


def test_theory_page_has_a_section_per_registered_claim_and_no_other():
    sections = SECTION.findall((ROOT / "docs" / "theory.md").read_text())
    ids = [c.id for c in registry.CLAIMS]
    assert sorted(set(sections)) == sorted(sections), "a claim has two sections"
    assert set(sections) == set(ids), (
        f"missing: {sorted(set(ids) - set(sections))}; unknown: {sorted(set(sections) - set(ids))}"
    )


def test_theory_sections_fail_for_a_ghost_id():
    """The comparison above can fail: a section for an unregistered id is reported."""
    text = (ROOT / "docs" / "theory.md").read_text() + "\n### Cghost\nnot a claim\n"
    assert "Cghost" in set(SECTION.findall(text)) - {c.id for c in registry.CLAIMS}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_path_and_short_dotted_name_on_a_page_resolves(page):
    text = page.read_text()
    bad = [p for p in PATH.findall(text) if "*" not in p and not (ROOT / p).exists()]
    for name in (n for n in SHORT_DOTTED.findall(text) if re.split(r"[.:]", n)[0] in MODULES):
        if name.endswith(".py"):  # a module's file name
            if not (ROOT / "mdm_props" / name.replace(".py", "").replace(".", "/")).with_suffix(".py").exists():
                bad.append(name)
            continue
        full = "mdm_props." + name.replace(":", ".")
        module, _, attr = full.rpartition(".")
        try:
            importlib.import_module(full)
            continue
        except ImportError:
            pass
        try:
            getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            bad.append(name)
    assert not bad, f"{page.name}: {bad}"


def documented_commands() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for m in [*COMMAND.finditer(text), *INLINE_COMMAND.finditer(text)]:
            line = m.group(1).strip().rstrip("\\").strip()
            if m.re is INLINE_COMMAND and len(line.split()) < 2:
                continue  # `mdm-props certify` in running text names a subcommand; it is not a command line
            if line and "…" not in line and "..." not in line and "<" not in line and "[" not in line:
                found.append((page.name, line))
    return found


def test_every_documented_command_line_parses():
    from mdm_props.cli import build_parser

    commands = documented_commands()
    assert len(commands) >= 5  # the docs do show commands
    parser = build_parser()
    bad = []
    for page, line in commands:
        try:
            parser.parse_args(shlex.split(line))
        except SystemExit as exc:
            if exc.code != 0:
                bad.append(f"{page}: mdm-props {line}")
    assert not bad, "\n".join(bad)


def test_every_status_and_hypothesis_verify_prints_is_explained():
    text = (ROOT / "README.md").read_text() + (ROOT / "docs" / "index.md").read_text()
    missing = [s for s in STATUSES if f"`{s}`" not in text]
    missing += [h for h in registry.HYPOTHESES if h not in text]
    assert not missing, missing


def readme_claim_rows(text: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """id → (kind, hypotheses) of README's claims table (rows `| id | claim | kind | hypotheses | …`)."""
    rows = {}
    for cid, kind, hyps in CLAIM_ROW.findall(text):
        hyps = hyps.strip()
        rows[cid] = (kind, () if hyps in ("–", "-", "") else tuple(h.strip() for h in hyps.split(",")))
    return rows


def test_readme_claims_table_is_the_registry():
    """One README row per registered claim, with the registry's kind and hypotheses (in its order)."""
    rows = readme_claim_rows((ROOT / "README.md").read_text())
    expected = {c.id: (c.kind, tuple(c.hypotheses)) for c in registry.CLAIMS}
    assert rows == expected


def test_readme_claims_table_check_fails_for_a_wrong_kind():
    text = (ROOT / "README.md").read_text().replace("| C3 | ", "| C3 | x | typical | H-rel |\n| C3old | ", 1)
    rows = readme_claim_rows(text)
    assert rows["C3"] != (registry.get("C3").kind, tuple(registry.get("C3").hypotheses))


def test_every_theory_section_links_its_doc_page_and_checker():
    text = (ROOT / "docs" / "theory.md").read_text()
    parts = dict(zip(SECTION.findall(text), SECTION.split(text)[2::2], strict=True))
    bad = []
    for claim in registry.CLAIMS:
        body = parts.get(claim.id, "")
        short = claim.checker.removeprefix("mdm_props.")
        if f"({claim.doc})" not in body or f"`{short}`" not in body:
            bad.append(f"{claim.id}: needs [..]({claim.doc}) and `{short}`")
    assert not bad, "\n".join(bad)


def test_results_page_lists_every_registered_claim_and_control_at_an_ancestor_commit():
    """docs/results.md is generated by `mdm-props report`: every registered claim and negative control has
    a row, and the commit it is stamped with is an ancestor of the checked-out commit."""
    import subprocess

    text = (ROOT / "docs" / "results.md").read_text()
    ids = {m for m in re.findall(r"^\| (C[^ |]+) \|", text, re.M)}
    expected = {c.id for c in registry.CLAIMS} | {n.id for c in registry.CLAIMS for n in c.negative_controls()}
    assert expected <= ids, f"missing from docs/results.md: {sorted(expected - ids)}"
    commit = re.search(r"^- commit: `([0-9a-f]{7,40})", text, re.M)
    assert commit, "docs/results.md is not stamped with a commit"
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the stamp cannot be compared")
    res = subprocess.run(
        ["git", "-C", str(ROOT), "merge-base", "--is-ancestor", commit.group(1), "HEAD"], capture_output=True
    )
    if res.returncode == 128 and b"shallow" in res.stderr:
        pytest.skip("shallow clone")
    assert res.returncode == 0, f"results.md stamped with {commit.group(1)}, not an ancestor of HEAD"
