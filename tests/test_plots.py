"""The claims' figures (C2a's correlation, C7's depth rates) on mdm_props.plots (matplotlib is optional)."""

import sys

import pytest

from mdm_props.claims import c2_correlated_routes as c2
from mdm_props.claims import c7_alignment_at_init as c7

PNG = b"\x89PNG\r\n\x1a\n"


def test_plot_correlation_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = c2.plot_correlation(tmp_path / "corr.png", bases=(1e4, 5e5), max_d_k=16, max_delta=8, d_k=8)
    assert out == tmp_path / "corr.png"
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 1000


@pytest.mark.parametrize(
    "where, message",
    [
        ("missing/corr.png", "the folder .* does not exist"),  # before: the folders were created
        ("corr.txt", r"path must end in \.png"),  # before: PNG bytes in a .txt file
        (".", "must be a file path, not a directory"),
    ],
)
def test_the_output_path_is_checked_before_the_figure_is_computed(tmp_path, where, message):
    with pytest.raises(ValueError, match=message):
        c2.plot_correlation(tmp_path / where)
    assert not (tmp_path / "missing").exists()


def test_missing_matplotlib_gives_an_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'mdm_props\[plot\]'"):
        c2.plot_correlation(tmp_path / "x.png")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bases": ()}, "bases must name at least one"),
        ({"bases": (1.0,)}, "bases must be numbers > 1"),
        ({"d_k": 7}, "d_k must be an even integer"),
        ({"delta": 0}, "delta must be an integer >= 1"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        c2.plot_correlation(tmp_path / "x.png", **kwargs)


def test_plot_depth_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = c7.plot_depth(tmp_path / "depth.png", draws=2, scales=(1.0, 10.0), depths=(1, 2))
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 1000
    with pytest.raises(ValueError, match="scales must be numbers > 0"):
        c7.plot_depth(tmp_path / "x.png", scales=(0.0,))


def test_plot_depth_shows_progress(tmp_path, capsys):
    """One progress line per tenth of the points on stderr (before: a minute without output)."""
    pytest.importorskip("matplotlib")
    c7.plot_depth(tmp_path / "depth.png", draws=1, scales=(1.0,), depths=(1,))
    err = capsys.readouterr().err
    assert "plot depth  2/2  100%" in err, err
    c7.plot_depth(tmp_path / "depth.png", draws=1, scales=(1.0,), depths=(1,), quiet=True)
    assert capsys.readouterr().err == ""
