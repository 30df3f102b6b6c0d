"""The ``mdm-props`` command: report schema, exit codes 0/1/2, determinism, explain, plot."""

import importlib
import json
import subprocess
import sys

import pytest

from mdm_props import checks, cli, registry, search

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


@pytest.mark.parametrize(
    ("undecided", "decided", "status"), [(1, 1, "holds"), (1, 0, "undecided"), (2, 1, "undecided")]
)
def test_undecided_checks_are_counted_and_a_mostly_undecided_row_fails(
    tmp_path, monkeypatch, capsys, undecided, decided, status
):
    """A row holds while at most half of its decidable checks are undecided (cli.UNDECIDED_SHARE); beyond that it
    is undecided and verify exits 1. Not-applicable checks are not decidable: they do not count in the share."""
    module = importlib.import_module(registry.get("C4b").module)

    def runner(draws, seed, device):
        out = [checks.undecided("C4b", "Taylor test", "regime below every floor tried", window=[30, 31])] * undecided
        return out + [checks.identity("C4b", "order", 2.0, 2.0, 0.1)] * decided

    monkeypatch.setattr(module, "run_c4b", runner)
    monkeypatch.setattr(module, "NEGATIVE_CONTROLS", [])
    code, report = verify(tmp_path, "--claims", "C4b", "--examples", "1")
    row = report["claims"][0]
    assert row["undecided"] == undecided and row["status"] == status and code == (0 if status == "holds" else 1)
    assert "regime below every floor tried" in row["reason"]
    out = capsys.readouterr().out
    assert "undec" in out and f"{undecided} checks undecided" in out


def test_not_applicable_checks_are_counted_only_for_a_claim_that_declares_them(tmp_path, monkeypatch):
    """C8 (counts_not_applicable) holds with n/a layers and fails when nothing was decided; C3 fails on any."""
    na = checks.not_applicable("C8", "decrease", "not aligned: ⟨G_f, G_r⟩ < 0", layer=0)
    ok = checks.identity("C8", "decrease", 1.0, 1.0, 0.1)
    module = importlib.import_module(registry.get("C8").module)
    monkeypatch.setattr(module, "NEGATIVE_CONTROLS", [])
    for results, status in (([na, ok, ok], "holds"), ([na], "not-applicable")):
        monkeypatch.setattr(module, "run_c8", lambda draws, seed, device, results=results: results)
        code, report = verify(tmp_path, "--claims", "C8", "--examples", "1")
        row = report["claims"][0]
        assert row["status"] == status and row["not_applicable"] == 1 and code == (0 if status == "holds" else 1)
        assert row["not_applicable_reasons"] == {"not aligned": 1}
    c3 = importlib.import_module(registry.get("C3").module)
    monkeypatch.setattr(c3, "run_c3", lambda draws, seed, device: [checks.not_applicable("C3", "q", "H-orth fails: x")])
    monkeypatch.setattr(c3, "NEGATIVE_CONTROLS", [])
    code, report = verify(tmp_path, "--claims", "C3", "--examples", "1")
    assert code == 1 and report["claims"][0]["status"] == "not-applicable"


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
        (["verify", "--claims", "Cghost"], "unknown claim id 'Cghost'"),
        (["verify", "--device", "tpu"], "invalid choice: 'tpu'"),
        (["verify", "--examples", "0"], "argument --examples: must be an integer in [1, 100000]; got 0"),
        (["verify", "--examples", "-3"], "argument --examples: must be an integer in [1, 100000]; got -3"),
        (["verify", "--examples", "2.5"], "argument --examples: must be an integer; got '2.5'"),
        (
            ["verify", "--seed", "-1"],
            "argument --seed: must be a non-negative integer <= 18446744073709551615 (64 bits); got -1",
        ),
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


def test_bench_prints_draws_per_second_and_the_ratio(capsys):
    assert cli.main(["bench", "--claims", "C1b", "--draws", "6", "--per-draw", "2"]) == 0
    out = capsys.readouterr().out
    assert "machine:" in out and "ratio" in out and out.strip().splitlines()[-1].startswith("C1b")


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
        (["verify", "--claims", ""], "--claims must name at least one id"),
        (["verify", "--claims", "C1b,,C3"], "empty item"),
        (["explain", "Cghost"], "unknown claim id"),
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
    for cid in ("C1b", "C3v"):  # re-runs exactly that draw: the same worst check, its status and values
        assert cli.main(["verify", "--replay", str(tmp_path / "report.json"), cid]) == 0
        out = capsys.readouterr().out
        worst = rows[cid]["worst_check"]
        assert worst["quantity"] in out and worst["status"] in out
        # verify evaluates a batch of draws, the replay a batch of one: kernels that block by batch size
        # (AVX-512 BLAS) may round differently, so the replayed values agree within the check's derived
        # rounding tolerance (each evaluation is within its share of it from the exact value), not bitwise
        (again,) = [r for r in search.replay(cid, rows[cid]["draw"]) if r.quantity == worst["quantity"]]
        assert again.status == worst["status"]
        assert abs(again.observed - worst["observed"]) <= worst["tolerance"]
        assert abs(again.reference - worst["reference"]) <= worst["tolerance"]


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


# ---------------------------------------------------------------------------------------------
# issue 24: the bad-input battery. Every case exits 2 before any work (the functions that do the work
# are replaced by ones that fail the test), with no traceback and a message naming the argument.
# "{tmp}" is a fresh folder, "{ro}" a folder nothing can be written into.

BATTERY = {
    "verify": [
        (["verify", "--json", ""], ["--json must be a file path"]),  # before: exit 0, nothing written
        (["verify", "--json", "{tmp}"], ["--json must be a file path, not a directory"]),
        (["verify", "--json", "{tmp}/missing/r.json"], ["--json: the folder", "does not exist"]),
        (["verify", "--json", "{ro}/r.json"], ["--json: cannot write"]),
        (["verify", "--json", "{tmp}/r.txt"], ["--json must end in .json"]),
        (["verify", "--examples", "0"], ["argument --examples", "[1, 100000]"]),
        (["verify", "--examples", str(10**12)], ["argument --examples", "[1, 100000]"]),
        (["verify", "--examples", "2.5"], ["argument --examples: must be an integer"]),
        (["verify", "--seed", "-1"], ["argument --seed", "<= 18446744073709551615"]),
        (["verify", "--seed", str(2**64)], ["argument --seed", "<= 18446744073709551615"]),
        (["verify", "--seed", str(2**200)], ["argument --seed", "<= 18446744073709551615"]),
        (["verify", "--seed", "x"], ["argument --seed: must be an integer"]),
        (["verify", "--claims", ""], ["--claims must name at least one id"]),
        (["verify", "--claims", " , "], ["--claims must name at least one id"]),
        (["verify", "--claims", "C1b,,C3"], ["--claims has an empty item"]),
        (["verify", "--claims", "C3,C3"], ["--claims must not repeat an id"]),
        (["verify", "--claims", "Cghost"], ["--claims: unknown claim id 'Cghost'"]),
        (["verify", "--device", "tpu"], ["argument --device", "invalid choice"]),
        (["verify", "--replay", "{tmp}/r.json", "C3", "--claims", "C3"], ["--replay re-runs one recorded draw"]),
        (["verify", "--replay", "{tmp}/r.json", "C3", "--json", ""], ["--replay re-runs one recorded draw"]),
        (["verify", "--replay", "{tmp}/r.json"], ["argument --replay: expected 2 arguments"]),
    ],
    "bench": [
        (["bench", "--claims", ""], ["--claims must name at least one of C1a"]),  # before: an empty table
        (["bench", "--claims", "C2a"], ["--claims: C2a not allowed; allowed: C1a"]),
        (["bench", "--claims", "C3,C3"], ["--claims must not repeat an id"]),
        (["bench", "--claims", "C3", "--sweep", "C1a"], ["--sweep must be one of the benched claims C3; got 'C1a'"]),
        (["bench", "--draws", "0"], ["argument --draws", "[1, 1000000]"]),
        (["bench", "--draws", str(10**12)], ["argument --draws", "[1, 1000000]"]),
        (["bench", "--per-draw", "0"], ["argument --per-draw", "[1, 100000]"]),
        (["bench", "--sizes", "0"], ["--sizes must be an integer in [1, 100000]"]),
        (["bench", "--sizes", "x"], ["--sizes must be an integer"]),
        (["bench", "--sizes", "4,,16"], ["--sizes has an empty item"]),
        (["bench", "--sizes", str(10**9)], ["--sizes must be an integer in [1, 100000]"]),
        (["bench", "--plot", "{tmp}/b.png"], ["--plot", "needs --sizes"]),  # before: drew nothing
        (["bench", "--sizes", "4", "--plot", "{tmp}"], ["--plot must be a file path, not a directory"]),
        (["bench", "--sizes", "4", "--plot", "{tmp}/missing/b.png"], ["--plot: the folder", "does not exist"]),
        (["bench", "--sizes", "4", "--plot", "{tmp}/b.txt"], ["--plot must end in .png"]),
        (["bench", "--sizes", "4", "--plot", "{tmp}/DIR"], ["--plot must end in .png"]),  # before: wrote DIR.png
        (["bench", "--sizes", "4", "--plot", "{ro}/b.png"], ["--plot: cannot write"]),
        (["bench", "--sizes", "4", "--plot", ""], ["--plot must be a file path"]),
        (["bench", "--seed", str(2**64)], ["argument --seed", "<= 18446744073709551615"]),
        (["bench", "--device", "tpu"], ["argument --device", "invalid choice"]),
    ],
    "plot": [
        (["plot", "corr", "--out", "{tmp}"], ["--out must be a file path, not a directory"]),
        (["plot", "corr", "--out", "{tmp}/missing/x.png"], ["--out: the folder", "does not exist"]),  # before: created
        (["plot", "corr", "--out", "{tmp}/x.txt"], ["--out must end in .png"]),  # before: PNG bytes in a .txt
        (["plot", "corr", "--out", ""], ["--out must be a file path"]),
        (["plot", "depth", "--out", "{ro}/x.png"], ["--out: cannot write"]),
        (["plot", "bars", "--out", "x.png"], ["argument figure", "invalid choice"]),
        (["plot", "corr"], ["the following arguments are required: --out"]),
    ],
    "certify": [
        (["certify", "C3", "--json", "{tmp}"], ["--json must be a file path, not a directory"]),
        (["certify", "C3", "--json", "{tmp}/missing/c.json"], ["--json: the folder", "does not exist"]),
        (["certify", "C3", "--json", "{ro}/c.json"], ["--json: cannot write"]),
        (["certify", "C3", "--json", ""], ["--json must be a file path"]),
        (["certify", "C3", "--json", "{tmp}/c.txt"], ["--json must end in .json"]),
        (["certify", "C3", "--max-bits", "10"], ["argument --max-bits: must be an integer in [64, 1024]"]),
        (["certify", "C3", "--max-bits", "0"], ["argument --max-bits: must be an integer in [64, 1024]"]),
        (["certify", "C3", "--max-bits", "4096"], ["argument --max-bits: must be an integer in [64, 1024]"]),
        (["certify", "C3", "--max-bits", "x"], ["argument --max-bits: must be an integer"]),
        (["certify", "C3", "--draws", "0"], ["argument --draws", "[1, 100000]"]),
        (["certify", "C3", "--draws", str(10**9)], ["argument --draws", "[1, 100000]"]),
        (["certify", "C3", "--seed", "-1"], ["argument --seed", "<= 18446744073709551615"]),
        (["certify", "C3", "--seed", str(2**64)], ["argument --seed", "<= 18446744073709551615"]),
        (["certify", "C2a"], ["argument target", "invalid choice"]),
    ],
    "experiment": [
        (["--seed", str(2**200)], ["--seed must be a non-negative integer <= 18446744073709551614"]),
        (["--seed", str(2**64 - 1)], ["--seed must be a non-negative integer <= 18446744073709551614"]),
        (["--out", ""], ["--out must be a directory path"]),  # before: wrote into the current directory
        (["--out", "{tmp}/file"], ["--out must be a directory", "not a directory"]),
        (["--out", "{tmp}/missing/out"], ["--out: the folder", "does not exist"]),
        (["--out", "{ro}/out"], ["--out: cannot write"]),
        (["--steps", "0"], ["argument --steps", "[1, 1000000]"]),
        (["--steps", str(10**12)], ["argument --steps", "[1, 1000000]"]),
        (["--seeds", "0"], ["argument --seeds", "[1, 1000]"]),
        (["--pairs", str(10**9)], ["argument --pairs", "[2, 1024]"]),
        (["--d-model", str(10**6)], ["argument --d-model", "[1, 512]"]),
        (["--regimes", "bogus"], ["argument --regimes", "invalid choice"]),
        (["--lr", "nan"], ["argument --lr", "finite number > 0"]),
    ],
    "report": [
        (["report", "--out", ""], ["--out"]),
        (["report", "--out", "{tmp}"], ["--out", "directory"]),
        (["report", "--out", "{tmp}/missing/results.md"], ["--out: the folder", "does not exist"]),
        (["report", "--out", "{tmp}/results.txt"], ["--out must end in .md"]),
        (["report", "--out", "{ro}/results.md"], ["--out: cannot write"]),
        (["report", "--out", "{tmp}/r.md", "--experiment", "nodir"], ["--experiment must be NAME=DIR"]),
        (["report", "--out", "{tmp}/r.md", "--experiment", "e2={tmp}/missing"], ["--experiment must be NAME=DIR"]),
        (["report", "--out", "{tmp}/r.md", "--seed", str(2**64)], ["argument --seed: must be a non-negative integer"]),
    ],
    "explain": [
        ([""], ["claim: unknown claim id ''"]),
        (["C42"], ["claim: unknown claim id 'C42'"]),
        (["C1,C3"], ["claim: unknown claim id 'C1,C3'"]),
        ([], ["the following arguments are required: claim"]),
    ],
}


def _argv(command, argv, tmp, ro):
    argv = [a.replace("{tmp}", str(tmp)).replace("{ro}", str(ro)) for a in argv]
    if command == "experiment":  # the small experiment, then the bad flag (the last one wins)
        return [*REVERSAL, *argv]
    return ["explain", *argv] if command == "explain" else argv


@pytest.fixture
def no_work(monkeypatch):
    """Replace every function that does a subcommand's work with one that fails the test."""
    from mdm_props import bench, certified, report, reversal_report, search
    from mdm_props.claims import c2_correlated_routes, c7_alignment_at_init

    def work(*args, **kwargs):
        raise AssertionError("work started before the arguments were refused")

    for module, name in [
        (cli, "_run_claim"),
        (cli, "_run_negative"),
        (search, "replay"),
        (bench, "run"),
        (c2_correlated_routes, "plot_correlation"),
        (c7_alignment_at_init, "plot_depth"),
        (certified, "run_certify"),
        (reversal_report, "run_reversal_experiment"),
        (report, "verify_report"),
    ]:
        monkeypatch.setattr(module, name, work)


@pytest.fixture
def unwritable(tmp_path):
    """A folder that accepts no file: a read-only one, or (as root, whom permissions do not stop) /sys."""
    import os

    if os.geteuid() == 0:
        return "/sys"
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    return ro


def refused(argv, capsys) -> str:
    """``cli.main(argv)`` exits 2 with one usage error and no traceback; returns stderr."""
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    captured = capsys.readouterr()
    assert exc.value.code == 2, captured
    assert "Traceback" not in captured.err and captured.out == ""
    assert "usage: mdm-props" in captured.err
    return captured.err


@pytest.mark.parametrize(
    "command, argv, fragments",
    [(c, a, f) for c, cases in BATTERY.items() for a, f in cases],
    ids=[f"{c}:{' '.join(a)}" for c, cases in BATTERY.items() for a, _ in cases],
)
def test_the_bad_input_battery_exits_2_before_any_work(command, argv, fragments, tmp_path, unwritable, no_work, capsys):
    (tmp_path / "file").write_text("x")
    err = refused(_argv(command, argv, tmp_path, unwritable), capsys)
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert not (tmp_path / "missing").exists()  # no folder is ever created


def test_the_battery_covers_every_subcommand_but_probe():
    """probe's arguments are tests/test_probe.py's (issue 24's probe part)."""
    commands = set(cli.build_parser()._subparsers._group_actions[0].choices)  # noqa: SLF001
    assert set(BATTERY) == commands - {"probe"}
    assert all(len(cases) >= 4 for cases in BATTERY.values())


@pytest.mark.parametrize(
    "argv, extra, requirement",
    [
        (["plot", "corr", "--out", "{tmp}/x.png"], "plot", "matplotlib>=3.7"),
        (["bench", "--sizes", "4", "--plot", "{tmp}/b.png"], "plot", "matplotlib>=3.7"),
        (["certify", "C3"], "certify", "python-flint>=0.9"),
    ],
)
def test_a_missing_extra_is_one_message_shape_exit_2(argv, extra, requirement, tmp_path, monkeypatch, no_work, capsys):
    """Before: exit 1, exit 2 or a traceback, and the certify hint asked for python-flint >= 0.6."""
    from mdm_props import arguments

    real = importlib.util.find_spec
    module = arguments.EXTRAS[extra][0][0]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    err = refused([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    flag = "--plot" if "--plot" in argv else f"mdm-props {argv[0]}"
    assert (
        f"{flag} needs the '{extra}' extra ({requirement} is not installed); "
        f"install it with: pip install 'mdm_props[{extra}]'"
    ) in err


def test_an_old_python_flint_is_refused_with_the_version_pyproject_asks_for(monkeypatch, no_work, capsys):
    pytest.importorskip("flint")
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda d: "0.6.0" if d == "python-flint" else real(d))
    err = refused(["certify", "C3"], capsys)
    assert "python-flint>=0.9 is needed, python-flint 0.6.0 is installed" in err


def test_the_extras_are_those_pyproject_states():
    from pathlib import Path

    import tomllib

    from mdm_props.arguments import EXTRAS

    pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    for extra, (modules, requirements) in EXTRAS.items():
        assert list(requirements) == extras[extra], extra
        assert len(modules) == len(requirements)


def test_the_certify_install_hint_asks_for_the_version_pyproject_requires():
    """certified.INSTALL_HINT (printed when python-flint is missing) names the requirement of EXTRAS, the
    one copy of pyproject's (before: it asked for python-flint>=0.6 while pyproject requires >=0.9)."""
    from mdm_props import certified
    from mdm_props.arguments import EXTRAS

    (requirement,) = EXTRAS["certify"][1]
    assert f'"{requirement}"' in certified.INSTALL_HINT and "0.6" not in certified.INSTALL_HINT


# ---------------------------------------------------------------------------------------------
# replay reads data, never code


def _draw(claim_id):
    """A draw as the claim's runner records it (search.describe), through JSON."""
    import random

    from mdm_props.search import describe
    from mdm_props.strategies import N_HEADS, sample_case

    case = sample_case(random.Random(7), n_heads=N_HEADS)
    more = {"eta": 0.01} if claim_id in ("C1b", "C1c") else {}
    if registry.get(claim_id).builder:
        more["args"] = registry.get(claim_id).builder
    return json.loads(json.dumps(describe(case, **more)))


def _report(tmp_path, rows):
    path = tmp_path / "r.json"
    path.write_text(rows if isinstance(rows, str) else json.dumps(rows))
    return str(path)


def _edited(claim_id, **fields):
    draw = {**_draw(claim_id), **fields}
    return {"claims": [{"id": claim_id, "draw": {k: v for k, v in draw.items() if v is not DROP}}]}


DROP = object()
REPLAY_BATTERY = [
    ("C3", "not json", "cannot read a verify report"),
    ("C3", [], "is not a verify report"),
    ("C3", {"claims": [{"draw": {}}]}, "row 0 is not an object with a string 'id'"),
    ("C3", {"claims": [{"id": "C3", "draw": None}] * 2}, "two rows have the id 'C3'"),  # before: the last one
    ("C1b", {"claims": [{"id": "C3", "draw": None}]}, "no row 'C1b'"),
    ("X", {"claims": [{"id": "X", "draw": {"args": "this:s"}}]}, "unknown claim id 'X'"),
    ("C3~arm", {"claims": [{"id": "C3~arm", "negative_control": True}]}, "is a negative control"),
    ("C3", {"claims": [{"id": "C3", "draw": None}]}, "records no draw"),
    ("C3", _edited("C3", args="this:s"), "the draw has fields a C3 draw does not: args"),
    ("C3v", _edited("C3v", args="this:s"), "draw['args'] must be C3v's registered argument builder"),
    ("C3", _edited("C3", orthonormal="yes"), "draw['orthonormal'] must be True or False"),  # before: accepted
    ("C3", _edited("C3", template=5), "draw['template'] must be [length, a, b, [fillers]]"),  # before: TypeError
    ("C3", _edited("C3", template=[3, 0, 2, [9]]), "draw['template'] filler must be an integer in"),
    ("C3", _edited("C3", template=[3, 2, 0, []]), "slots must satisfy a < b"),
    ("C3", _edited("C3", vocab=10**9), "draw['vocab'] must be an integer in [3, 8]"),
    ("C3", _edited("C3", d_model=10**6), "draw['d_model'] must be an integer in"),
    ("C3", _edited("C3", seed=-1), "draw['seed'] must be a non-negative integer"),
    ("C3", _edited("C3", scale=float("nan")), "draw['scale'] must be a finite number > 0"),
    ("C3", _edited("C3", pos=5), "draw['pos'] must be one of"),
    ("C3", _edited("C3", A=99), "draw['A'] must be an integer in"),
    ("C3", _edited("C3", B=_draw("C3")["A"]), "A and B must be distinct"),
    ("C3", _edited("C3", pos="rope", d_head=3), "d_head must be even"),
    ("C3", _edited("C3", extra=1), "the draw has fields a C3 draw does not: extra"),
    ("C3", _edited("C3", seed=DROP), "the draw lacks seed"),
    ("C1b", _edited("C1b", eta=DROP), "the draw lacks eta"),
    ("C1b", _edited("C1b", eta=-1.0), "draw['eta'] must be a finite number > 0"),
]


@pytest.mark.parametrize("row, report, message", REPLAY_BATTERY, ids=[m for _, _, m in REPLAY_BATTERY])
def test_replay_refuses_every_malformed_report_with_exit_2(row, report, message, tmp_path, no_work, capsys):
    err = refused(["verify", "--replay", _report(tmp_path, report), row], capsys)
    assert f"--replay: {message}" in err or (message in err and "--replay" in err), err


def test_a_report_cannot_import_a_module(tmp_path, monkeypatch, no_work, capsys):
    """A report naming a module (``this:s`` or one that records its own import) is refused, and nothing
    is imported. Before: replay imported draw['args']'s module and called it with (case, device)."""
    spy = tmp_path / "spy_module.py"
    marker = tmp_path / "imported"
    spy.write_text(f"open({str(marker)!r}, 'w').close()\ndef s(case, device):\n    return ()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for claim_id in ("C3v", "C3"):
        for name in ("spy_module:s", "this:s"):
            sys.modules.pop(name.partition(":")[0], None)
            refused(["verify", "--replay", _report(tmp_path, _edited(claim_id, args=name)), claim_id], capsys)
            assert not marker.exists() and "spy_module" not in sys.modules and "this" not in sys.modules
    assert importlib.import_module("spy_module") and marker.exists()  # the spy does record an import


def test_a_well_formed_report_replays(tmp_path, capsys):
    """The positive control of the replay battery: the draws it edits replay as they are."""
    for claim_id in ("C3", "C1b", "C3v"):
        assert cli.main(["verify", "--replay", _report(tmp_path, _edited(claim_id)), claim_id]) == 0
    assert "replaying draw" in capsys.readouterr().out


def test_every_registered_builder_resolves():
    for claim in registry.CLAIMS:
        if claim.builder is not None:
            assert callable(registry.resolve(claim.builder)), claim.id


def test_the_library_replay_validates_as_the_cli_does(tmp_path, monkeypatch):
    """search.replay (the library path) checks every field and takes the builder from the registry, as
    ``verify --replay`` does. Before: replay(check, draw) imported draw['args']'s module and called it."""
    from mdm_props import search

    spy = tmp_path / "spy_module_lib.py"
    marker = tmp_path / "imported"
    spy.write_text(f"open({str(marker)!r}, 'w').close()\ndef s(case, device):\n    return ()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for claim_id in ("C3v", "C3"):
        with pytest.raises(ValueError, match="args"):
            search.replay(claim_id, _edited(claim_id, args="spy_module_lib:s")["claims"][0]["draw"])
        assert not marker.exists() and "spy_module_lib" not in sys.modules
    with pytest.raises(ValueError, match="draw\\['orthonormal'\\] must be True or False"):
        search.replay("C3", _edited("C3", orthonormal="yes")["claims"][0]["draw"])
    with pytest.raises(ValueError, match="unknown claim id"):
        search.replay("C99", _draw("C3"))
    assert all(r.holds for r in search.replay("C3v", _draw("C3v")))  # the positive control


# ---------------------------------------------------------------------------------------------
# Ctrl-C: exit 130, one line, no traceback; writers flush what they have, marked "complete": false


def _interrupt_after(n, result):
    calls = []

    def fake(*args, **kwargs):
        calls.append(args)
        if len(calls) > n:
            raise KeyboardInterrupt
        return result(*args) if callable(result) else result

    return fake


def interrupted(argv, capsys) -> str:
    assert cli.main(argv) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.strip().splitlines()[-1].endswith("interrupted (Ctrl-C); exit 130")
    return err


def test_ctrl_c_in_verify_keeps_the_finished_rows_marked_incomplete(tmp_path, monkeypatch, capsys):
    row = lambda job, *a: {"id": job.id, "status": "holds", "seconds": 0.0}  # noqa: E731
    monkeypatch.setattr(cli, "_run_claim", _interrupt_after(1, row))
    monkeypatch.setattr(cli, "_run_negative", _interrupt_after(0, row))
    path = tmp_path / "r.json"
    interrupted(["verify", "--claims", "C1b,C3", "--json", str(path)], capsys)
    report = json.loads(path.read_text())
    assert report["complete"] is False and [r["id"] for r in report["claims"]] == ["C1b"]


def test_ctrl_c_in_certify_keeps_the_finished_certificates(tmp_path, monkeypatch, capsys):
    """Before: certify --json wrote nothing when interrupted."""
    pytest.importorskip("flint")
    from mdm_props import certified as C

    cert = lambda claim, case, eta, max_bits: C.Certificate(claim, "s", "proved", 64)  # noqa: E731
    monkeypatch.setattr(C, "certify_case", _interrupt_after(2, cert))
    path = tmp_path / "c.json"
    err = interrupted(["certify", "C3", "--draws", "5", "--json", str(path)], capsys)
    doc = json.loads(path.read_text())
    assert doc["complete"] is False and [r["draw"] for r in doc["rows"]] == [0, 1]
    assert "interrupted after 2 rows" in err


def test_ctrl_c_in_an_experiment_writes_the_finished_runs_marked_incomplete(tmp_path, monkeypatch, capsys):
    """Before: the partial results.json did not say it was partial."""
    from mdm_props import reversal

    monkeypatch.setattr(reversal, "run_one", _interrupt_after(1, reversal.run_one))
    out = tmp_path / "out"
    interrupted([*REVERSAL, "--out", str(out)], capsys)
    doc = json.loads((out / "results.json").read_text())
    assert doc["complete"] is False and len(doc["runs"]) == 1
    assert (out / "table.md").read_text().startswith("INCOMPLETE")


@pytest.mark.parametrize(
    "argv, module, name",
    [
        (["bench", "--claims", "C3"], "mdm_props.bench", "run"),
        (["plot", "corr", "--out", "{tmp}/x.png"], "mdm_props.claims.c2_correlated_routes", "plot_correlation"),
        (["explain", "C3"], "mdm_props.cli", "explain_claim"),
    ],
)
def test_ctrl_c_in_any_other_subcommand_exits_130(argv, module, name, tmp_path, monkeypatch, capsys):
    # the interrupt is planted after the extras check: the test needs no extra (CI installs no matplotlib)
    monkeypatch.setattr("mdm_props.arguments.missing_extra", lambda extra: None)
    monkeypatch.setattr(importlib.import_module(module), name, _interrupt_after(0, None))
    interrupted([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)


def test_a_real_sigint_exits_130_without_a_traceback(tmp_path):
    """The one end-to-end interrupt: SIGINT to a running `mdm-props verify` process."""
    import signal

    path = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "mdm_props", "verify", "--claims", "C0.1,C3,C4b", "--json", str(path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()  # the first progress line: the work has started
    assert line.startswith("[ 1/"), line
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted (Ctrl-C); exit 130" in err
    assert json.loads(path.read_text())["complete"] is False


# ---------------------------------------------------------------------------------------------
# --help without torch


def test_the_command_tree_and_its_help_do_not_import_torch():
    """Before: `mdm-props --help` took 7–8 s, torch imported to print help."""
    code = (
        "import sys, mdm_props.cli as c; p = c.build_parser(); p.format_help(); "
        "[s.format_help() for s in p._subparsers._group_actions[0].choices.values() "
        "if s.prog.split()[-1] in ('verify', 'bench', 'plot', 'explain')]; "
        "print(sorted(m for m in ('torch', 'numpy', 'mdm_props.model') if m in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res


def test_lazy_subcommands_get_their_arguments_when_parsed(capsys):
    """certify, experiment reversal and probe add their flags on first use: --help and parsing see them."""
    parser = cli.build_parser()
    args = parser.parse_args(["certify", "C3", "--draws", "3"])
    assert args.draws == 3 and args.func is cli.cmd_certify
    with pytest.raises(SystemExit):
        cli.main(["experiment", "reversal", "--help"])
    assert "--d-model" in capsys.readouterr().out


def test_make_install_reinstalls_when_the_extras_change(tmp_path):
    """Before: `make install EXTRAS=test,plot` after `make verify` said "Nothing to be done"."""
    import shutil
    from pathlib import Path

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    root = Path(__file__).resolve().parent.parent
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    (venv / ".installed-test").touch()  # `make install` (EXTRAS=test) done after the last pyproject change

    def dry_run(extras):
        cmd = ["make", "-n", "-C", str(root), "install", f"VENV={venv}", f"EXTRAS={extras}"]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    assert "pip install" not in dry_run("test")
    assert 'pip install -q -e ".[test,plot]"' in dry_run("test,plot")


@pytest.mark.parametrize(
    "argv",
    [
        ["verify", "--claims", "C3"],
        ["bench", "--claims", "C3"],
        ["plot", "corr", "--out", "{tmp}/x.png"],
        ["certify", "C3", "--draws", "1"],
        [*REVERSAL],
    ],
)
def test_the_battery_would_see_work_start(argv, tmp_path, no_work):
    """The battery's negative control: with good arguments the work starts, and ``no_work`` says so, so
    a bad case that were not refused could not pass unnoticed."""
    if argv[0] == "certify":
        pytest.importorskip("flint")
    if argv[0] == "plot":
        pytest.importorskip("matplotlib")
    with pytest.raises(AssertionError, match="work started before the arguments were refused"):
        cli.main([a.replace("{tmp}", str(tmp_path)) for a in argv])


def test_report_writes_the_stamped_page_with_each_experiments_table_and_figures(tmp_path, monkeypatch):
    """`mdm-props report`: verify's rows, the stamp, and per experiment its table.md and its figures copied
    beside the page (a link into the experiment's own folder would break when that folder goes)."""
    import mdm_props.report as report

    doc = {
        "claims": [{"id": "C3", "kind": "per-draw", "status": "holds", "draws": 4, "checks": 12, "worst_margin": 0.5}],
        "environment": {"git_commit": "abc1234", "seed": 7, "device": "cpu", "torch": "2.x"},
        "complete": True,
        "exit_status": 0,
    }
    monkeypatch.setattr(report, "verify_report", lambda seed, device: dict(doc))
    exp = tmp_path / "rev"
    exp.mkdir()
    (exp / "table.md").write_text("| a | b |\n|---|---|\n| 1 | 2 |\n")
    (exp / "signatures.png").write_bytes(b"\x89PNG fake")
    page = tmp_path / "site" / "results.md"
    page.parent.mkdir()
    assert cli.main(["report", "--out", str(page), "--seed", "7", "--experiment", f"rev={exp}"]) == 0
    text = page.read_text()
    assert "- commit: `abc1234`" in text and "| C3 | per-draw | holds | 4 | 12 |" in text
    assert "## Experiment: rev" in text and "| 1 | 2 |" in text
    assert "![rev: results-rev-signatures](figures/results-rev-signatures.png)" in text
    assert (page.parent / "figures" / "results-rev-signatures.png").read_bytes() == b"\x89PNG fake"


def test_a_claims_note_is_printed_under_the_table_and_kept_in_its_json_row(tmp_path, capsys):
    """Claim.note (declared in the claim module, here C4b's) travels with the row; a claim without one has none."""
    note = registry.get("C4b").note
    assert note and registry.get("C3").note is None
    code, report = verify(tmp_path, "--claims", "C4b,C3", "--examples", "1")
    assert code == 0
    rows = {r["id"]: r for r in report["claims"]}
    assert rows["C4b"]["note"] == note and "note" not in rows["C3"]
    out = capsys.readouterr().out
    assert f"note: C4b: {note}" in out and "note: C3" not in out
