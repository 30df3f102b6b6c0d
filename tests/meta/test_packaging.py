"""One version source: pyproject.toml reads ``mdm_props.__version__`` instead of repeating it."""

import importlib.metadata
import pathlib
import re

import pytest

import mdm_props

PYPROJECT = pathlib.Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_pyproject_reads_the_version_from_the_package():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    meta = tomllib.loads(PYPROJECT.read_text())
    assert "version" not in meta["project"] and "version" in meta["project"]["dynamic"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "mdm_props.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", mdm_props.__version__)


def test_the_installed_metadata_agrees_with_the_package():
    """Fails after a version bump until the package is reinstalled (`pip install -e .`)."""
    assert importlib.metadata.version("mdm_props") == mdm_props.__version__
