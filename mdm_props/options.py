"""Configuration dataclasses whose fields state, once, their help text and what is allowed; the
validation and the command-line flags are derived from those fields.

A field declared with :func:`option` carries its help text and its allowed values: ``minimum``
and ``maximum`` for an ``int``, ``positive``/``finite`` for a ``float``, ``choices`` for a ``str`` or a
``tuple[str, ...]`` (a non-empty subset); a ``bool`` is True or False. :func:`validate` checks an
instance against them with the ``require_*`` of :mod:`mdm_props.validation` (call it from
``__post_init__``); :func:`add_arguments` turns the fields into argparse flags (``d_model`` →
``--d-model``; a bool is a switch that flips its default; ``flag=None`` keeps a field off the
command line) whose values the same ``require_*`` check at parse time; :func:`from_args` builds the
instance from the parsed namespace.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable, Sequence
from typing import Any

from .validation import require_bool, require_choice, require_int, require_number, require_subset

__all__ = ["add_arguments", "arg_type", "from_args", "option", "validate"]


def option(
    default: Any,
    help: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    positive: bool = True,
    finite: bool = True,
    choices: Sequence[str] | None = None,
    flag: str | None = "",
) -> Any:
    """A dataclass field with its help text and allowed values (see the module docstring).

    ``flag``: the command-line flag ("" derives it from the name, None keeps the field off the
    command line). ``positive`` and ``finite`` apply to floats, ``minimum`` and ``maximum`` to ints.
    """
    meta: dict[str, Any] = {"help": help, "minimum": minimum, "maximum": maximum, "positive": positive}
    meta |= {"finite": finite}
    meta |= {"choices": choices, "flag": flag}
    return dataclasses.field(default=default, metadata=meta)


def _kind(cls: type, f: dataclasses.Field) -> str:
    hint = typing.get_type_hints(cls)[f.name]
    if hint in (bool, int, float, str):
        return hint.__name__
    if typing.get_origin(hint) is tuple:
        return "tuple"
    raise TypeError(f"{cls.__name__}.{f.name}: option() supports bool, int, float, str and tuple[str, ...]; got {hint}")


def _requirement(cls: type, f: dataclasses.Field) -> Callable[[str, Any], Any]:
    """The ``require_*`` call that field ``f`` of ``cls`` states, as a function of (name, value)."""
    m, kind = f.metadata, _kind(cls, f)
    if kind == "bool":
        return require_bool
    if kind == "int":
        return lambda name, value: require_int(name, value, minimum=m["minimum"], maximum=m["maximum"])
    if kind == "float":
        return lambda name, value: require_number(name, value, positive=m["positive"], finite=m["finite"])
    if kind == "str":
        return (lambda name, value: require_choice(name, value, m["choices"])) if m["choices"] else _no_check
    return lambda name, value: require_subset(name, value, m["choices"])


def _no_check(name: str, value: Any) -> Any:
    return value


def _options(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def validate(obj: Any) -> None:
    """Check every :func:`option` field of the dataclass instance ``obj`` and store its normalised
    value (a tuple for a subset, a float for a number); a ValueError names the first bad field."""
    cls = type(obj)
    for f in _options(cls):
        object.__setattr__(obj, f.name, _requirement(cls, f)(f.name, getattr(obj, f.name)))


def arg_type(name: str, require: Callable[..., Any], **allowed: Any) -> Callable[[str], Any]:
    """An argparse ``type``: parse the text (a float for ``require_number``, else an int) and apply
    ``require(name, value, **allowed)``; argparse prefixes the flag, so the message drops the name."""
    parse = float if require is require_number else int

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be {'a number' if parse is float else 'an integer'}; got {text!r}"
            ) from None
        try:
            return require(name, value, **allowed)
        except ValueError as err:
            message = str(err)
            raise argparse.ArgumentTypeError(message.removeprefix(f"{name} ")) from None

    convert.__name__ = name  # argparse names the type in some messages
    return convert


def _flag(f: dataclasses.Field, kind: str) -> str:
    if f.metadata["flag"]:
        return f.metadata["flag"]
    stem = f.name.replace("_", "-")
    return f"--no-{stem}" if kind == "bool" and f.default else f"--{stem}"


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per :func:`option` field of ``cls`` (except ``flag=None``), dest = the field name,
    default = the field default, values checked at parse time by the field's ``require_*``."""
    for f in _options(cls):
        m, kind = f.metadata, _kind(cls, f)
        if m["flag"] is None:
            continue
        default: Any = f.default
        flag, text = _flag(f, kind), m["help"]
        if kind == "bool":
            action = "store_false" if default else "store_true"
            parser.add_argument(flag, dest=f.name, action=action, help=text)
        elif kind in ("int", "float"):
            kw = (
                {"minimum": m["minimum"], "maximum": m["maximum"]}
                if kind == "int"
                else {"positive": m["positive"], "finite": m["finite"]}
            )
            require = require_int if kind == "int" else require_number
            parser.add_argument(
                flag,
                dest=f.name,
                type=arg_type(f.name, require, **kw),
                default=default,
                help=f"{text} (default {default:g})",
            )
        elif kind == "str":
            parser.add_argument(
                flag, dest=f.name, choices=m["choices"], default=default, help=f"{text} (default {default})"
            )
        else:
            every = tuple(default) == tuple(m["choices"])
            parser.add_argument(
                flag,
                dest=f.name,
                nargs="+",
                choices=m["choices"],
                default=list(default),
                metavar=f.name.removesuffix("s").upper(),
                help=f"{text} (default: {'all' if every else ' '.join(default)})",
            )


def from_args(cls: type, args: argparse.Namespace) -> Any:
    """The ``cls`` instance that the flags of :func:`add_arguments` describe (validated by ``cls``)."""
    kwargs = {f.name: getattr(args, f.name) for f in _options(cls) if f.metadata["flag"] is not None}
    return cls(**kwargs)
