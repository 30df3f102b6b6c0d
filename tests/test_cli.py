"""The ``mdm-props`` command: report schema, exit codes 0/1/2, determinism, explain, plot."""

import importlib
import json
import subprocess
import sys

import pytest

from mdm_props import checks, cli, registry

ROW_KEYS = {"id", "kind", "status", "draws", "worst_margin", "worst_error_ratio", "seconds", "hypotheses"}


def verify(tmp_path, *extra, name="report.json"):
    path = tmp_path / name
    code = cli.main(["verify", "--json", str(path), *extra])
    return code, json.loads(path.read_text())


def test_verify_writes_the_documented_json_schema_and_exits_0(tmp_path, capsys):
    code, report = verify(tmp_path, "--claims", "C1b,C3", "--examples", "3", "--seed", "5")
    assert code == 0
    assert set(report) == {"claims", "environment"}
    assert {"torch", "python", "device", "seed"} <= set(report["environment"])
    assert report["environment"]["seed"] == 5 and report["environment"]["device"] == "cpu"
    ids = [r["id"] for r in report["claims"]]
    assert ids[0] == "C1b" and "C3" in ids
    assert any(r["negative_control"] for r in report["claims"])  # the claims' negative controls ran too
    for row in report["claims"]:
        assert ROW_KEYS <= set(row)
        assert row["status"] in ("holds", "counterexample-found")
        assert row["draws"] >= 1
    out = capsys.readouterr()
    assert "C1b" in out.out and "holds" in out.out
    assert "[ 1/" in out.err  # progress lines go to stderr


def test_verify_exits_1_when_a_checker_reports_a_violation(tmp_path, monkeypatch):
    module = importlib.import_module(registry.get("C1b").module)

    def broken(draws, seed, device):  # an evidence change off by 1e-6, far beyond any rounding bound
        return [checks.identity("C1b", "Δε", 1.0 + 1e-6, 1.0, 1e-15)]

    monkeypatch.setattr(module, "run_c1b", broken)
    code, report = verify(tmp_path, "--claims", "C1b", "--examples", "2")
    assert code == 1
    row = report["claims"][0]
    assert row["status"] == "violated" and row["worst_error_ratio"] > 1e8


@pytest.mark.parametrize("decided", [True, False])
def test_undecided_checks_are_counted_not_failed(tmp_path, monkeypatch, capsys, decided):
    module = importlib.import_module(registry.get("C4b").module)

    def runner(draws, seed, device):
        out = [checks.undecided("C4b", "Taylor test", "regime below every floor tried", window=[30, 31])]
        return out + ([checks.identity("C4b", "order", 2.0, 2.0, 0.1)] if decided else [])

    monkeypatch.setattr(module, "run_c4b", runner)
    monkeypatch.setattr(module, "NEGATIVE_CONTROLS", [])
    code, report = verify(tmp_path, "--claims", "C4b", "--examples", "1")
    row = report["claims"][0]
    assert code == 0 and row["undecided"] == 1 and row["status"] == ("holds" if decided else "undecided")
    assert "regime below every floor tried" in row["reason"]
    out = capsys.readouterr().out
    assert "undec" in out and "1 checks undecided" in out


def test_verify_exits_1_when_a_checker_crashes(tmp_path, monkeypatch):
    module = importlib.import_module(registry.get("C3").module)

    def crash(draws, seed, device):
        raise RuntimeError("boom")

    monkeypatch.setattr(module, "run_c3", crash)
    code, report = verify(tmp_path, "--claims", "C3", "--examples", "2")
    assert code == 1 and report["claims"][0]["status"] == "error" and "boom" in report["claims"][0]["reason"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["verify", "--claims", "C9"], "unknown claim id 'C9'"),
        (["verify", "--device", "tpu"], "invalid choice: 'tpu'"),
        (["verify", "--examples", "0"], "argument --examples: must be an integer >= 1; got 0"),
        (["verify", "--examples", "-3"], "argument --examples: must be an integer >= 1; got -3"),
        (["verify", "--examples", "2.5"], "argument --examples: must be an integer; got '2.5'"),
        (["verify", "--seed", "-1"], "argument --seed: must be a non-negative integer; got -1"),
        (["explain", "C42"], "unknown claim id 'C42'"),
        (["plot", "bars", "--out", "x.png"], "invalid choice: 'bars'"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_cuda_without_a_gpu_is_refused_with_exit_2(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: --device cuda is valid here")
    with pytest.raises(SystemExit) as exc:
        cli.main(["verify", "--device", "cuda", "--claims", "C3"])
    assert exc.value.code == 2 and "cuda" in capsys.readouterr().err


def test_same_seed_same_numbers(tmp_path):
    strip = lambda rep: [{k: v for k, v in r.items() if k != "seconds"} for r in rep["claims"]]  # noqa: E731
    _, a = verify(tmp_path, "--claims", "C1c,C4a", "--examples", "4", "--seed", "11", name="a.json")
    _, b = verify(tmp_path, "--claims", "C1c,C4a", "--examples", "4", "--seed", "11", name="b.json")
    _, c = verify(tmp_path, "--claims", "C1c,C4a", "--examples", "4", "--seed", "12", name="c.json")
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)


def test_explain_prints_statement_kind_hypotheses_and_doc_page(capsys):
    assert cli.main(["explain", "C3"]) == 0
    out = capsys.readouterr().out
    claim = registry.get("C3")
    assert claim.statement in out and "kind: per-draw" in out and f"docs/{claim.doc}" in out
    assert "H-orth" in out and "negative controls:" in out


def test_plot_corr_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "corr.png"
    assert cli.main(["plot", "corr", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_module_entry_point_runs():
    res = subprocess.run([sys.executable, "-m", "mdm_props", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and "mdm_props" in res.stdout


def test_plot_without_matplotlib_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert cli.main(["plot", "corr", "--out", str(tmp_path / "x.png")]) == 1
    assert "pip install 'mdm_props[plot]'" in capsys.readouterr().err


def test_bench_prints_draws_per_second_and_the_ratio(capsys):
    assert cli.main(["bench", "--claims", "C1b", "--draws", "6", "--per-draw", "2"]) == 0
    out = capsys.readouterr().out
    assert "machine:" in out and "ratio" in out and out.strip().splitlines()[-1].startswith("C1b")


def test_bench_refuses_a_claim_without_a_batched_path(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--claims", "C2a"])
    assert exc.value.code == 2 and "no batched path" in capsys.readouterr().err
