"""The mutation script (`make mutants`, not run by CI) stays usable: every planted bug still matches the
code it mutates exactly once, so a refactor that moves the code fails here instead of in the next
mutation run."""

import dataclasses
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_mutants():
    spec = importlib.util.spec_from_file_location("mdm_props_mutants", ROOT / "tests" / "mutation" / "mutants.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module.MUTANTS


def test_every_mutant_matches_its_code_exactly_once():
    mutants = load_mutants()
    assert len(mutants) >= 15 and len({m.name for m in mutants}) == len(mutants)
    bad = [
        (m.name, (ROOT / m.path).read_text().count(m.old))
        for m in mutants
        if (ROOT / m.path).read_text().count(m.old) != 1
    ]
    assert not bad, bad
    assert all(dataclasses.is_dataclass(m) and m.old != m.new for m in mutants)
