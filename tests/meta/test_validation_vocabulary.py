"""The validation vocabulary (mdm_props.validation): each require_* accepts exactly what it says it
accepts, returns the normalised value, and otherwise raises a ValueError that names the argument
and what is allowed."""

import inspect
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdm_props import validation
from mdm_props.validation import (
    SEED_MAX,
    require_bool,
    require_choice,
    require_int,
    require_number,
    require_seed,
    require_subset,
)

REQUIRE = [require_bool, require_choice, require_int, require_number, require_seed, require_subset]


def test_the_vocabulary_is_exactly_the_documented_names_each_with_a_one_line_docstring():
    public = sorted(n for n, v in vars(validation).items() if inspect.isfunction(v) and not n.startswith("_"))
    functions = sorted(n for n in validation.__all__ if callable(getattr(validation, n)))
    assert public == functions == sorted(f.__name__ for f in REQUIRE)
    for f in REQUIRE:
        doc = (f.__doc__ or "").strip()
        assert doc and "\n" not in doc, f.__name__
        assert list(inspect.signature(f).parameters)[0] == "name", f.__name__


@given(value=st.integers(-10, 10), minimum=st.integers(-5, 5))
def test_require_int_accepts_exactly_the_integers_at_or_above_the_minimum(value, minimum):
    if value >= minimum:
        assert require_int("n", value, minimum=minimum) == value
    else:
        with pytest.raises(ValueError, match=rf"^n must be an integer >= {minimum}; got {value}$"):
            require_int("n", value, minimum=minimum)


@given(value=st.integers(-10, 10), low=st.integers(-5, 0), high=st.integers(0, 5))
def test_require_int_with_both_ends_names_the_interval(value, low, high):
    if low <= value <= high:
        assert require_int("k", value, minimum=low, maximum=high) == value
    else:
        with pytest.raises(ValueError, match=rf"k must be an integer in \[{low}, {high}\]; got {value}"):
            require_int("k", value, minimum=low, maximum=high)


@pytest.mark.parametrize("value", [True, False, 2.0, "3", None, 1.5])
def test_require_int_refuses_bools_floats_and_strings(value):
    with pytest.raises(ValueError, match="steps must be an integer"):
        require_int("steps", value)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        require_seed("seed", value)


@given(value=st.integers(-3, 3))
def test_require_seed_is_a_non_negative_integer(value):
    if value >= 0:
        assert require_seed("seed", value) == value
    else:
        with pytest.raises(
            ValueError, match=rf"^seed must be a non-negative integer <= {SEED_MAX} \(64 bits\); got {value}$"
        ):
            require_seed("seed", value)


@pytest.mark.parametrize("value", [SEED_MAX + 1, 2**200])
def test_require_seed_refuses_seeds_beyond_64_bits(value):
    assert require_seed("seed", SEED_MAX) == SEED_MAX  # torch.Generator.manual_seed holds it
    with pytest.raises(ValueError, match=rf"^seed must be a non-negative integer <= {SEED_MAX} \(64 bits\)"):
        require_seed("seed", value)
    with pytest.raises(ValueError, match=r"^seed must be a non-negative integer <= 9 \(64 bits\); got 10$"):
        require_seed("seed", 10, maximum=9)


@given(value=st.floats(allow_nan=True, allow_infinity=True) | st.integers(-3, 3))
def test_require_number_positive_finite_accepts_exactly_the_finite_positive_numbers(value):
    if math.isfinite(value) and value > 0:
        out = require_number("lr", value, positive=True, finite=True)
        assert out == value and type(out) is float
    else:
        with pytest.raises(ValueError, match=r"^lr must be a finite number > 0; got "):
            require_number("lr", value, positive=True, finite=True)


def test_require_number_flags_name_what_is_allowed():
    assert require_number("x", -2) == -2.0
    assert require_number("x", math.inf, finite=False) == math.inf
    with pytest.raises(ValueError, match=r"^x must be a finite number; got nan$"):
        require_number("x", math.nan)
    with pytest.raises(ValueError, match=r"^x must be a number > 0; got 0$"):
        require_number("x", 0, positive=True, finite=False)
    with pytest.raises(ValueError, match=r"^x must be a number > 0; got nan$"):
        require_number("x", math.nan, positive=True, finite=False)
    for bad in (True, "1.0", None, 1j):
        with pytest.raises(ValueError, match=r"^x must be a finite number; got "):
            require_number("x", bad)


def test_require_choice_lists_the_allowed_values():
    assert require_choice("optimizer", "sgd", ("adam", "sgd")) == "sgd"
    with pytest.raises(ValueError, match=r"^optimizer must be one of adam, sgd; got 'lbfgs'$"):
        require_choice("optimizer", "lbfgs", ("adam", "sgd"))
    with pytest.raises(ValueError, match=r"^pos must be one of a, b; got \['a'\]$"):
        require_choice("pos", ["a"], ("a", "b"))
    with pytest.raises(ValueError, match="must be one of"):  # unhashable against a set
        require_choice("pos", ["a"], frozenset({"a"}))


def test_require_subset_normalises_and_names_the_bad_value():
    allowed = ("rope", "alibi", "none")
    assert require_subset("encodings", ["none", "rope"], allowed) == ("none", "rope")
    assert require_subset("encodings", "alibi", allowed) == ("alibi",)  # a lone string is one value
    with pytest.raises(ValueError, match=r"^encodings: unknown value 'xpos'; allowed values are rope, alibi, none$"):
        require_subset("encodings", ("rope", "xpos"), allowed)
    with pytest.raises(ValueError, match=r"^encodings must name at least one of rope, alibi, none; got none$"):
        require_subset("encodings", (), allowed)
    with pytest.raises(ValueError, match=r"^encodings must not repeat a value; got \['rope', 'rope'\]$"):
        require_subset("encodings", ("rope", "rope"), allowed)
    with pytest.raises(ValueError, match=r"^encodings must be a sequence of values from rope, alibi, none; got 3$"):
        require_subset("encodings", 3, allowed)


@pytest.mark.parametrize("value", [0, 1, "True", None])
def test_require_bool_accepts_only_true_and_false(value):
    assert require_bool("tied", True) is True and require_bool("tied", False) is False
    with pytest.raises(ValueError, match=rf"^tied must be True or False; got {value!r}$"):
        require_bool("tied", value)
