"""The command line's argument layer: one set of rules for every subcommand, checked before any work.

Each ``require_*`` here returns the checked value or raises a ValueError whose message names the flag
and what is allowed (the vocabulary of :mod:`mdm_props.validation`); a subcommand turns it into
``parser.error`` (exit 2, its usage, no traceback). :func:`int_type` is the argparse ``type`` for a
bounded integer. Nothing here imports torch, so ``mdm-props --help`` stays fast.

* output files (:func:`require_output_file`): a non-empty path, not a directory, with the documented
  suffix, whose folder exists and accepts the file (checked by opening it for appending; a file this
  creates is removed again). Folders are never created: ``/missing/x.png`` is refused everywhere.
* output directories (:func:`require_output_dir`): a non-empty path that is a writable directory, or
  that does not exist yet and whose parent folder is a writable directory (created when written).
* id lists (:func:`require_id_list`): comma-separated, non-empty, no empty item, no repeat,
  optionally from an allowed set.
* integers (:func:`int_type`): bounds the code can hold; seeds within 64 bits (:data:`SEED_MAX`,
  :func:`mdm_props.validation.require_seed`), budgets with documented upper bounds (:data:`BUDGETS`).
* extras (:func:`require_extra`): one message shape naming the extra, what it installs and the pip
  command, the requirements as pyproject states them (:data:`EXTRAS`; ``tests/test_cli.py`` compares).
* interrupts (:func:`interruptible`): Ctrl-C in any subcommand exits 130 with one line on stderr and
  no traceback (writers flush what they have, marked ``"complete": false``, before it propagates).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .validation import SEED_MAX, require_int, require_seed

__all__ = [
    "BUDGETS",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "EXTRAS",
    "JSON_SUFFIX",
    "PNG_SUFFIX",
    "SEED_MAX",
    "budget_type",
    "int_type",
    "interruptible",
    "missing_extra",
    "require_extra",
    "require_id_list",
    "require_output_dir",
    "require_output_file",
    "seed_type",
]

JSON_SUFFIX = (".json",)  # every --json writes JSON
PNG_SUFFIX = (".png",)  # every figure is a PNG
EXIT_USAGE = 2  # a bad argument: argparse's own exit status
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a Ctrl-C

# The documented upper bounds of the work budgets (draws per claim and the like). Each is far above
# any default (the defaults run in seconds to minutes) and stops a typo such as 10**12 from running
# for days or building a list that does not fit in memory; docs and --help state them.
BUDGETS = {
    # draws per claim (a default claim draws 20–2,000): every check's result is kept until the report,
    # 1–7 KB a draw (measured with tracemalloc for C1a–C4b), so at most ~0.7 GB a claim
    "verify --examples": 100_000,
    "bench --draws": 1_000_000,  # batched draws per claim (default 10,000); a batch holds seeds, not tensors
    "bench --per-draw": 100_000,  # draws timed one by one (default 200)
    "bench --sizes": 100_000,  # largest batch size of the sweep (each size draws 2 x max(sizes))
    "certify --draws": 100_000,  # certified draws (default 100; ~0.1–1 s a draw)
}

# extra: (importable modules, requirements as pyproject.toml states them)
EXTRAS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "plot": (("matplotlib",), ("matplotlib>=3.7",)),
    "certify": (("flint",), ("python-flint>=0.9",)),
    "hf": (("transformers", "safetensors"), ("transformers>=5", "safetensors>=0.4")),
}


def _listing(values: Iterable[Any]) -> str:
    return ", ".join(str(v) for v in values)


# ---------------------------------------------------------------------------------------------
# paths


def _writable_dir(flag: str, folder: Path, text: str) -> None:
    if not folder.is_dir():
        raise ValueError(f"{flag}: the folder {str(folder)!r} of {text!r} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{flag}: cannot write into the folder {str(folder)!r} of {text!r} (permission denied)")


def require_output_file(flag: str, text: Any, suffixes: Sequence[str] = ()) -> Path:
    """``text`` as a writable output file: non-empty, not a directory, ending in one of ``suffixes``
    (when given), its folder exists and accepts the file. Checked by opening it for appending (a file
    this creates is removed again), so a read-only disk is caught too."""
    if not isinstance(text, (str, os.PathLike)) or not str(text):
        raise ValueError(f"{flag} must be a file path; got {text!r}")
    text = str(text)
    path = Path(text)
    if path.is_dir() or text.endswith(("/", os.sep)):
        raise ValueError(f"{flag} must be a file path, not a directory; got {text!r}")
    if suffixes and path.suffix.lower() not in suffixes:
        raise ValueError(f"{flag} must end in {' or '.join(suffixes)}; got {text!r}")
    _writable_dir(flag, path.parent, text)
    existed = path.exists()
    try:
        with path.open("a"):
            pass
    except OSError as err:
        raise ValueError(f"{flag}: cannot write {text!r} ({err.strerror or err})") from None
    if not existed:
        path.unlink()
    return path


def require_output_dir(flag: str, text: Any) -> Path:
    """``text`` as an output directory: non-empty; an existing writable directory, or a new one whose
    parent folder exists and is writable (it is created when the results are written)."""
    if not isinstance(text, (str, os.PathLike)) or not str(text):
        raise ValueError(f"{flag} must be a directory path; got {text!r}")
    text = str(text)
    path = Path(text)
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{flag} must be a directory; {text!r} exists and is not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"{flag}: cannot write into {text!r} (permission denied)")
        return path
    _writable_dir(flag, path.parent, text)
    return path


# ---------------------------------------------------------------------------------------------
# lists and integers


def require_id_list(flag: str, text: Any, allowed: Sequence[str] | None = None) -> list[str]:
    """Comma-separated ids (blanks around commas ignored): at least one, no empty item, no repeat, each
    one of ``allowed`` when given. ``--claims ''`` would otherwise mean "nothing" or "everything"."""
    what = f"at least one of {_listing(allowed)}" if allowed else "at least one id (comma-separated)"
    if not isinstance(text, str) or not text.strip(", \t"):
        raise ValueError(f"{flag} must name {what}; got {text!r}")
    ids = [i.strip() for i in text.split(",")]
    if not all(ids):
        raise ValueError(f"{flag} has an empty item: {text!r}; it must name {what}")
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"{flag} must not repeat an id; {_listing(repeated)} repeated in {text!r}")
    if allowed is not None:
        unknown = [i for i in ids if i not in allowed]
        if unknown:
            raise ValueError(f"{flag}: {_listing(unknown)} not allowed; allowed: {_listing(allowed)}")
    return ids


def _parse_int(text: str) -> int:
    """An integer written in decimal (``_`` separators allowed, as Python allows them)."""
    return int(text)


def int_type(flag: str, minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer in [minimum, maximum]; argparse prefixes the flag to the message."""

    def convert(text: str) -> int:
        try:
            value = _parse_int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer; got {text!r}") from None
        try:
            return require_int(flag, value, minimum=minimum, maximum=maximum)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err).removeprefix(f"{flag} ")) from None

    convert.__name__ = flag.lstrip("-")  # argparse names the type in some messages
    return convert


def budget_type(name: str, minimum: int = 1) -> Callable[[str], int]:
    """:func:`int_type` for the budget ``name`` of :data:`BUDGETS` (``"verify --examples"``)."""
    return int_type(name.split()[-1], minimum, BUDGETS[name])


def seed_type(flag: str = "--seed", spread: int = 0) -> Callable[[str], int]:
    """An argparse ``type`` for a seed: an integer in [0, SEED_MAX − spread] (a command that uses the
    seeds ``seed … seed + spread`` keeps every one of them within 64 bits)."""

    def convert(text: str) -> int:
        try:
            value = _parse_int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer; got {text!r}") from None
        try:
            return require_seed(flag, value, maximum=SEED_MAX - spread)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err).removeprefix(f"{flag} ")) from None

    convert.__name__ = flag.lstrip("-")
    return convert


# ---------------------------------------------------------------------------------------------
# extras


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def missing_extra(extra: str) -> str | None:
    """None when every module of ``extra`` is importable at the version pyproject asks for, else a
    message (one shape for every extra) naming the extra, its requirements and the pip command. Finds
    modules without importing them (``importlib.util.find_spec``)."""
    modules, requirements = EXTRAS[extra]
    bad = []
    for module, requirement in zip(modules, requirements, strict=True):
        dist, _, minimum = requirement.partition(">=")
        if importlib.util.find_spec(module) is None:
            bad.append(f"{requirement} is not installed")
            continue
        try:
            have = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue  # importable without distribution metadata (a source checkout): take it as it is
        if minimum and _version_tuple(have) < _version_tuple(minimum):
            bad.append(f"{requirement} is needed, {dist} {have} is installed")
    if not bad:
        return None
    return f"needs the {extra!r} extra ({'; '.join(bad)}); install it with: pip install 'mdm_props[{extra}]'"


def require_extra(flag: str, extra: str) -> None:
    """ValueError ``{flag} needs the 'extra' extra (...); install it with: pip install ...`` when missing."""
    problem = missing_extra(extra)
    if problem is not None:
        raise ValueError(f"{flag} {problem}")


# ---------------------------------------------------------------------------------------------
# interrupts


def interruptible(command: str, run: Callable[[], int]) -> int:
    """``run()``, with Ctrl-C turned into one line on stderr and exit status 130 (no traceback).
    Writers flush their partial results (marked ``"complete": false``) on the way out, before this."""
    try:
        return run()
    except KeyboardInterrupt:
        print(f"\n{command}: interrupted (Ctrl-C); exit {EXIT_INTERRUPTED}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
