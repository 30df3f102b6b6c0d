"""The shared progress bar: counts, non-terminal throttling, quiet mode."""

import io

import pytest

from mdm_props.progress import Progress


def test_progress_non_tty_writes_one_line_per_tenth():
    out = io.StringIO()
    with Progress(100, "work", stream=out) as bar:
        for _ in range(100):
            bar.update(1)
    lines = out.getvalue().splitlines()
    assert 10 <= len(lines) <= 11  # 0/10 .. 10/10 tenths, each printed once
    assert lines[-1].startswith("work  100/100  100%")


def test_progress_quiet_prints_nothing_and_callback_sets_count():
    out = io.StringIO()
    bar = Progress(5, "x", quiet=True, stream=out)
    bar.callback(3, 5)
    assert bar.done == 3 and out.getvalue() == ""


def test_progress_rejects_negative_total():
    with pytest.raises(ValueError, match="total"):
        Progress(-1, "x")
