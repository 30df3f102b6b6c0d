"""mdm_props.options: a config dataclass's fields give its validation and its command-line flags,
so the two cannot drift apart."""

import argparse
import dataclasses

import pytest

from mdm_props.options import add_arguments, from_args, option, validate
from mdm_props.reversal import ExperimentConfig


@dataclasses.dataclass(frozen=True)
class Toy:
    n: int = option(3, "a count", minimum=1, maximum=9)
    rate: float = option(0.5, "a rate")
    shift: float = option(-1.0, "any finite shift", positive=False)
    mode: str = option("a", "a mode", choices=("a", "b"))
    parts: tuple[str, ...] = option(("x",), "some parts", choices=("x", "y", "z"))
    verbose: bool = option(False, "talk more")
    tied: bool = option(True, "untie", flag="--untied")
    hidden: int = option(2, "not on the command line", minimum=0, flag=None)

    def __post_init__(self):
        validate(self)


def parser_for(cls) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toy")
    add_arguments(parser, cls)
    return parser


def test_no_flags_give_the_defaults_and_every_flag_reaches_its_field():
    parser = parser_for(Toy)
    assert from_args(Toy, parser.parse_args([])) == Toy()
    argv = ["--n", "5", "--rate", "2", "--shift", "-3", "--mode", "b", "--parts", "z", "y", "--verbose", "--untied"]
    got = from_args(Toy, parser.parse_args(argv))
    assert got == Toy(n=5, rate=2.0, shift=-3.0, mode="b", parts=("z", "y"), verbose=True, tied=False)
    assert type(got.rate) is float and got.parts == ("z", "y")


def test_a_field_with_flag_none_is_not_on_the_command_line():
    with pytest.raises(SystemExit):
        parser_for(Toy).parse_args(["--hidden", "3"])
    assert "--hidden" not in parser_for(Toy).format_help()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--n", "0"], "argument --n: must be an integer in [1, 9]; got 0"),
        (["--n", "10"], "argument --n: must be an integer in [1, 9]; got 10"),
        (["--n", "1.5"], "argument --n: must be an integer; got '1.5'"),
        (["--rate", "-1"], "argument --rate: must be a finite number > 0; got -1.0"),
        (["--rate", "inf"], "argument --rate: must be a finite number > 0; got inf"),
        (["--shift", "nan"], "argument --shift: must be a finite number; got nan"),
        (["--mode", "c"], "argument --mode: invalid choice: 'c'"),
        (["--parts", "w"], "argument --parts: invalid choice: 'w'"),
    ],
)
def test_bad_flags_are_refused_at_parse_time_naming_the_flag_and_the_allowed_values(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        parser_for(Toy).parse_args(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("n", 0, r"n must be an integer in \[1, 9\]; got 0"),
        ("rate", 0.0, "rate must be a finite number > 0"),
        ("mode", "c", "mode must be one of a, b; got 'c'"),
        ("parts", ("x", "x"), "parts must not repeat a value"),
        ("verbose", 1, "verbose must be True or False; got 1"),
        ("hidden", -1, "hidden must be an integer >= 0; got -1"),
    ],
)
def test_construction_applies_the_same_requirements(field, value, message):
    with pytest.raises(ValueError, match=message):
        Toy(**{field: value})


def test_every_experiment_field_is_an_option_and_the_defaults_round_trip():
    fields = dataclasses.fields(ExperimentConfig)
    assert all("help" in f.metadata for f in fields)
    parser = argparse.ArgumentParser()
    add_arguments(parser, ExperimentConfig)
    assert from_args(ExperimentConfig, parser.parse_args([])) == ExperimentConfig()
    on_cli = {f.name for f in fields if f.metadata["flag"] is not None}
    assert on_cli == set(vars(parser.parse_args([])))
    assert {f.name for f in fields} - on_cli == {"rope_base", "threads"}  # the flags of the command stay as they were


def test_an_unsupported_field_type_is_refused_by_name():
    @dataclasses.dataclass
    class Bad:
        xs: list = option(None, "a list")

    with pytest.raises(TypeError, match=r"Bad\.xs: option\(\) supports"):
        validate(Bad())
