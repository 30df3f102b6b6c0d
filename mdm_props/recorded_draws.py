"""A verify report's recorded draws, read back as data and never as code (``verify --replay``).

A report is untrusted input: a row names a claim, which must be registered, and its ``draw`` is a
plain record of :func:`mdm_props.search.describe` whose every field is checked here (type and range)
before anything is built from it. The draw's argument builder (``"args"``) is not looked up from the
report: the report may only repeat the builder that the registry states for the claim
(:attr:`mdm_props.registry.Claim.builder`; none means :func:`mdm_props.search.case_args`), so a
report naming any other ``module:name`` is refused without importing anything.

Ranges are those of the seeded draws (:func:`mdm_props.strategies.sample_case`): a replay re-runs a
draw that a runner could have made, so a hand-edited size cannot allocate beyond them.

A claim whose draws are not one-layer :class:`~mdm_props.strategies.Case` s (C9's deep blocks and
k-token facts) reads its own: its runner's module (named by the registry, never by the report) defines
``RECORDED_ARGS(draw) -> (device -> the checker's positional arguments)``, which checks every field the
same way. :func:`replay_arguments` is the one entry for both kinds, used by the CLI and by
:func:`mdm_props.search.replay` alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import registry
from .validation import require_bool, require_choice, require_int, require_number, require_seed

__all__ = ["read_report", "recorded_draw", "replay_arguments"]


def read_report(path: str | Path) -> tuple[dict[str, dict], int | None]:
    """The rows of the verify report at ``path`` by id (a JSON object with a list ``claims`` of objects,
    each with a string ``id``, no id twice) and its seed (None when not a seed). A ValueError says what
    is wrong."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"cannot read a verify report from {str(path)!r} ({err})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("claims"), list):
        raise ValueError(f"{str(path)!r} is not a verify report: expected a JSON object with a list 'claims'")
    rows: dict[str, dict] = {}
    for i, row in enumerate(doc["claims"]):
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            raise ValueError(f"{str(path)!r}: row {i} is not an object with a string 'id'")
        if row["id"] in rows:
            raise ValueError(f"{str(path)!r}: two rows have the id {row['id']!r}; a report has one row per id")
        rows[row["id"]] = row
    env = doc.get("environment")
    seed = env.get("seed") if isinstance(env, dict) else None
    return rows, seed if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 else None


def _template(value: Any, vocab: int, max_length: int) -> list:
    """[length, a, b, fillers]: integers, fillers a list of token ids (the Template checks the slots)."""
    if not (isinstance(value, list) and len(value) == 4 and isinstance(value[3], list)):
        raise ValueError(f"draw['template'] must be [length, a, b, [fillers]]; got {value!r}")
    length = require_int("draw['template'] length", value[0], minimum=3, maximum=max_length)
    a = require_int("draw['template'] slot a", value[1], minimum=0, maximum=length - 1)
    b = require_int("draw['template'] slot b", value[2], minimum=0, maximum=length - 1)
    fillers = [require_int("draw['template'] filler", f, minimum=0, maximum=vocab - 1) for f in value[3]]
    return [length, a, b, fillers]


def _in_range(name: str, value: Any, low: float, high: float) -> float:
    x = require_number(name, value, positive=True)
    if not low <= x <= high:
        raise ValueError(f"{name} must be a number in [{low:g}, {high:g}]; got {value!r}")
    return x


def recorded_draw(claim: registry.Claim, draw: Any, check) -> dict:
    """The draw of a report row for ``claim``, checked field by field (a ValueError names the field and
    what is allowed). ``check`` is the claim's registered checker: it takes ``eta`` exactly when the
    draw must carry a step size."""
    import inspect

    from .model import ABSOLUTE_KINDS, ATTENTIONS, POSITIONAL_ENCODINGS
    from .strategies import D_HEAD, ETAS, MAX_LENGTH, MAX_SEED, N_HEADS, ORTH_EXTRA, ROPE_BASES, SCALES, VOCAB

    if not isinstance(draw, dict):
        raise ValueError(f"the draw must be a JSON object written by describe(); got {type(draw).__name__}")
    steps = "eta" in inspect.signature(check).parameters
    fields = {"pos", "vocab", "d_model", "d_head", "n_heads", "attention", "absolute_kind", "rope_base"}
    fields |= {"merged_ov", "seed", "scale", "orthonormal", "template", "A", "B"}
    optional = {"merged_ov"} | ({"args"} if claim.builder else set())
    required = (fields | ({"eta"} if steps else set())) - optional
    known = fields | optional | ({"eta"} if steps else set())
    missing, unknown = sorted(required - set(draw)), sorted(set(draw) - known)
    if missing:
        raise ValueError(
            f"the draw lacks {', '.join(missing)}; a replayable {claim.id} draw (one layer, search.describe) "
            f"has the fields {', '.join(sorted(known))}"
        )
    if unknown:
        raise ValueError(
            f"the draw has fields a {claim.id} draw does not: {', '.join(unknown)}; allowed: {', '.join(sorted(known))}"
        )
    if "args" in draw and draw["args"] != claim.builder:
        # compared as text: nothing the report names is ever imported
        raise ValueError(
            f"draw['args'] must be {claim.id}'s registered argument builder {claim.builder!r}; got {draw['args']!r}"
        )
    out = dict(draw)
    out["pos"] = require_choice("draw['pos']", draw["pos"], POSITIONAL_ENCODINGS)
    out["attention"] = require_choice("draw['attention']", draw["attention"], ATTENTIONS)
    out["absolute_kind"] = require_choice("draw['absolute_kind']", draw["absolute_kind"], ABSOLUTE_KINDS)
    vocab = out["vocab"] = require_int("draw['vocab']", draw["vocab"], minimum=VOCAB[0], maximum=VOCAB[1])
    out["d_model"] = require_int("draw['d_model']", draw["d_model"], minimum=1, maximum=VOCAB[1] + ORTH_EXTRA)
    out["d_head"] = require_int("draw['d_head']", draw["d_head"], minimum=1, maximum=D_HEAD[1])
    out["n_heads"] = require_int("draw['n_heads']", draw["n_heads"], minimum=1, maximum=max(N_HEADS))
    out["rope_base"] = _in_range("draw['rope_base']", draw["rope_base"], min(ROPE_BASES), max(ROPE_BASES))
    if "merged_ov" in draw:
        out["merged_ov"] = require_bool("draw['merged_ov']", draw["merged_ov"])
    out["seed"] = require_seed("draw['seed']", draw["seed"], maximum=MAX_SEED)
    out["scale"] = _in_range("draw['scale']", draw["scale"], min(SCALES), max(SCALES))
    out["orthonormal"] = require_bool("draw['orthonormal']", draw["orthonormal"])
    out["template"] = _template(draw["template"], vocab, MAX_LENGTH)
    out["A"] = require_int("draw['A']", draw["A"], minimum=0, maximum=vocab - 1)
    out["B"] = require_int("draw['B']", draw["B"], minimum=0, maximum=vocab - 1)
    if steps:
        out["eta"] = _in_range("draw['eta']", draw["eta"], min(ETAS), max(ETAS))
    return out


def replay_arguments(claim: registry.Claim, draw: Any):
    """``(check, arguments)`` for re-running a recorded draw of ``claim``: its registered checker and a
    function ``device -> the checker's positional arguments``, after every field of ``draw`` is checked
    (:func:`recorded_draw`, or the claim module's ``RECORDED_ARGS``) and the case is built once on the CPU
    (its tokens and parameters are checked too). Nothing the report names is imported: the checker, the
    argument builder and the reader all come from the registry. A ValueError says what is wrong."""
    import importlib

    from .search import case_args, case_from_description

    if not isinstance(claim, registry.Claim):
        raise ValueError(f"claim must be a registered Claim (registry.get(id)); got {type(claim).__name__}")
    check = registry.resolve(claim.checker)  # the registry's name, never the report's
    reader = getattr(importlib.import_module(claim.module), "RECORDED_ARGS", None)
    if reader is not None:
        arguments = reader(draw)
        arguments("cpu")  # the parameters can be drawn
        return check, arguments
    checked = recorded_draw(claim, draw, check)
    case = case_from_description(checked)  # the model and template check their own fields
    case.template.check_tokens(case.cfg.vocab, case.A, case.B)
    case.params("cpu")  # the parameters can be drawn (e.g. orthonormal needs d_model >= vocab + 1)
    build = registry.resolve(claim.builder) if claim.builder else case_args
    extra = (checked["eta"],) if "eta" in checked else ()
    return check, lambda device: (*build(case, device), *extra)
