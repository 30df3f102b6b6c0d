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
    assert set(report) == {"claims", "environment", "complete"}
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
        (["verify", "--claims", "C99"], "unknown claim id 'C99'"),
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


# ---------------------------------------------------------------------------------------------
# issue 9: outputs checked before the work, selection, usage, reproducible reports


@pytest.mark.parametrize("where", ["missing-dir/report.json", "."])
def test_an_unwritable_json_path_is_refused_before_any_work(tmp_path, capsys, where):
    """Before: the report failed only after every claim had run, with a traceback and exit 1."""
    path = tmp_path / where
    with pytest.raises(SystemExit) as exc:
        cli.main(["verify", "--claims", "C1b", "--examples", "1", "--json", str(path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--json" in err and "[ 1/" not in err
    assert "usage: mdm-props verify" in err  # the subcommand's usage, not the top-level one


@pytest.mark.parametrize(
    "argv, message",
    [
        (["verify", "--claims", ""], "--claims must name at least one"),
        (["verify", "--claims", "C1b,,C3"], "empty item"),
        (["explain", "C99"], "unknown claim id"),
    ],
)
def test_bad_selections_exit_2_with_the_subcommand_usage(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and f"usage: mdm-props {argv[0]}" in err


def test_an_exact_claim_id_wins_over_its_family():
    """Before: C3 also selected C3v (family C3), and C3 alone could not be chosen."""
    assert [c.id for c in registry.select(["C3"])] == ["C3"]
    assert [c.id for c in registry.select(["C3v"])] == ["C3v"]
    assert [c.id for c in registry.select(["C1"])] == ["C1a", "C1b", "C1c"]
    with pytest.raises(ValueError, match="ids"):
        registry.select([])


def test_explain_accepts_a_family(capsys):
    assert cli.main(["explain", "C1"]) == 0
    out = capsys.readouterr().out
    assert all(f"{i}: " in out for i in ("C1a", "C1b", "C1c"))


def test_the_report_carries_draws_counterexamples_versions_and_replays(tmp_path, capsys):
    code, report = verify(tmp_path, "--claims", "C1b,C3v", "--examples", "2", "--seed", "3")
    assert code == 0 and report["complete"]
    env = report["environment"]
    assert {"numpy", "scipy", "mpmath", "hypothesis", "git_commit"} <= set(env)
    rows = {r["id"]: r for r in report["claims"]}
    for cid in ("C1b", "C3v"):
        assert rows[cid]["draw"]["seed"] >= 0 and "template" in rows[cid]["draw"]
        assert rows[cid]["worst_check"]["status"] == "holds"
    assert "eta" in rows["C1b"]["draw"] and rows["C3v"]["draw"]["args"].endswith(":factored_case")
    negatives = [r for r in report["claims"] if r["negative_control"]]
    assert negatives and all(r["counterexample"] for r in negatives)
    capsys.readouterr()
    for cid in ("C1b", "C3v"):  # re-runs exactly that draw: the same worst check, to the last bit
        assert cli.main(["verify", "--replay", str(tmp_path / "report.json"), cid]) == 0
        out = capsys.readouterr().out
        assert rows[cid]["worst_check"]["text"] in out


def test_replay_refuses_rows_without_a_draw(tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"claims": [{"id": "C2a", "draw": None}], "environment": {"seed": 0}}))
    with pytest.raises(SystemExit) as exc:
        cli.main(["verify", "--replay", str(path), "C2a"])
    assert exc.value.code == 2 and "records no draw" in capsys.readouterr().err


def test_verify_table_documents_every_column():
    """README's column table names every column the table prints (before: `checks` and `s` were missing)."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    import io

    buf = io.StringIO()
    cli.print_table([], out=buf)
    columns = buf.getvalue().splitlines()[0].split()
    assert columns and all(f"| `{c}` |" in readme for c in columns), columns


REVERSAL = [
    "experiment",
    "reversal",
    "--pairs",
    "2",
    "--d-model",
    "8",
    "--d-head",
    "8",
    "--steps",
    "3",
    "--seeds",
    "2",
    "--regimes",
    "mdm-forward",
    "--encodings",
    "rope",
    "--no-plot",
    "--quiet",
]


def test_experiment_out_at_an_existing_file_is_refused_before_training(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(SystemExit) as exc:
        cli.main([*REVERSAL, "--out", str(target)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "not a directory" in err and "training" not in err
    assert "usage: mdm-props experiment reversal" in err


def test_a_diverged_run_is_reported_and_every_run_saved(tmp_path, capsys):
    """Before: --lr 1e300 crashed the summary (statistics.pstdev of NaN) and lost every run."""
    assert cli.main([*REVERSAL, "--lr", "1e300", "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "diverged" in captured.out and "diverged" in captured.err
    runs = (tmp_path / "out" / "runs.csv").read_text().splitlines()
    assert len(runs) == 3 and runs[0].split(",").count("diverged") == 1
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert all(r["diverged"] for r in doc["runs"]) and doc["summary"][0]["diverged"] == 2
