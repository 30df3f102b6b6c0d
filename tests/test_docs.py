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
        for m in COMMAND.finditer(page.read_text()):
            line = m.group(1).strip().rstrip("\\").strip()
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
