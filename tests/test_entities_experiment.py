"""`mdm-props experiment entities` (E2, THEORY §2c): argument refusal (exit 2 before training), a
tiny end-to-end grid and its results.json schema, the accuracy definitions, interrupt marking,
divergence reporting, and the checkpoint round trip through the probe's transformers adapter."""

import json
import math
from pathlib import Path

import pytest
import torch

from mdm_props import cli
from mdm_props import entities_experiment as ex
from mdm_props import entities_report as report
from mdm_props.checkpoints import require_checkpointable, save_checkpoint, transformers_logit_tolerance
from mdm_props.model import forward
from mdm_props.params import init_params

# seconds on one core: 2 k × 2 depths × 2 encodings × 4 regimes, 2 seeds, 4 steps
TINY = ["--ks", "1", "2", "--depths", "1", "2", "--encodings", "rope", "alibi", "--seeds", "2"]
TINY += ["--steps", "4", "--log-every", "2", "--facts", "5", "--no-plot", "--quiet"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2")
    assert cli.main(["experiment", "entities", "--out", str(out), *TINY]) == 0
    return out, json.loads((out / "results.json").read_text())


@pytest.mark.parametrize(
    "argv, name",
    [
        (["--ks", "0"], "--ks"),
        (["--ks", "7"], "--ks"),
        (["--depths", "5"], "--depths"),
        (["--regimes", "mdm-full"], "--regimes"),
        (["--encodings", "sinusoid"], "--encodings"),
        (["--seeds", "0"], "--seeds"),
        (["--lr", "-1"], "--lr"),
        (["--facts", "3"], "--facts"),
        (["--d-head", "3"], "d_head"),
        (["--checkpoints", "some"], "--checkpoints"),
        (["--steps", "x"], "--steps"),
        (["--facts", "4", "--ks", "5"], "ks"),
        (["--d-head", "6"], "d_head * n_heads"),
    ],
)
def test_bad_arguments_exit_2_before_training(argv, name, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        cli.main(["experiment", "entities", "--out", str(out), *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert name in err and "Traceback" not in err
    assert not (out / "results.json").exists()


def test_missing_out_and_an_out_that_is_a_file_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["experiment", "entities"])
    assert exc.value.code == 2 and "--out" in capsys.readouterr().err
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(SystemExit) as exc:
        cli.main(["experiment", "entities", "--out", str(f)])
    assert exc.value.code == 2 and "not a directory" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: --device cuda is accepted")
def test_cuda_without_a_gpu_exits_2_with_the_reason(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["experiment", "entities", "--out", str(tmp_path), "--device", "cuda"])
    assert exc.value.code == 2 and "cuda.is_available() is False" in capsys.readouterr().err


def test_results_json_has_one_record_per_cell_and_seed_with_four_accuracies(tiny_run):
    out, doc = tiny_run
    assert doc["complete"] is True and doc["jobs_done"] == doc["jobs"] == 2 * 2 * 2 * 4
    keys = [(r["k"], r["regime"], r["encoding"], r["depth"], r["seed"]) for r in doc["records"]]
    expected = {
        (k, g, e, L, s) for k in (1, 2) for g in ex.REGIMES for e in ("rope", "alibi") for L in (1, 2) for s in (0, 1)
    }
    assert len(keys) == len(set(keys)) and set(keys) == expected
    for r in doc["records"]:
        assert set(r["reverse"]) == set(ex.ACCURACIES)
        for name, stat in r["reverse"].items():
            lo, hi = stat["ci"]
            assert stat["trials"] == (5 * r["k"] if name == "per_token" else 5)
            assert stat["rate"] == stat["successes"] / stat["trials"] and 0 <= lo <= stat["rate"] <= hi <= 1
        assert 0 <= r["forward_exact"] <= 1
        assert [h["step"] for h in r["history"]] == [0, 2, 4]
        for h in r["history"]:
            assert all(len(h[s]) == r["depth"] for s in ex.SIGNATURES)
            assert all(-1 - 1e-12 <= c <= 1 + 1e-12 for c in h["cos"] if math.isfinite(c))
            assert all(0 <= a <= 1 + 1e-12 for a in h["attn_fwd"] + h["attn_rev"])
    for row in doc["summary"]:
        assert row["exact"]["trials"] == 5 * (row["seeds"] - row["diverged"])


def test_checkpoints_are_written_for_rope_seed_0_only_in_the_right_format(tiny_run):
    out, doc = tiny_run
    for r in doc["records"]:
        if r["encoding"] == "rope" and r["seed"] == 0:
            path = out / r["checkpoint"]
            cfg = json.loads((path / "config.json").read_text())
            init = json.loads((Path(f"{path}@init") / "config.json").read_text())
            assert cfg == init
            if r["regime"] == "arm":
                assert cfg["model_type"] == "llama" and cfg["architectures"] == ["LlamaForCausalLM"]
                assert "is_causal" not in cfg
            else:
                assert cfg["model_type"] == "llada" and cfg["architectures"] == ["LLaDAModelLM"]
        else:
            assert r["checkpoint"] is None


def test_accuracies_count_exact_per_token_bag_and_reversed():
    target = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    pred = torch.tensor([[1, 2, 3], [6, 5, 4], [7, 9, 8]])
    assert ex.accuracies(pred, target) == {
        "exact": (1, 3),
        "per_token": (3 + 1 + 1, 9),
        "bag": (3, 3),
        "reversed": (1, 3),
    }


def test_queries_never_show_b_before_a_in_training_and_read_a_in_the_reverse_query():
    facts = ex.entity_facts(6, 3, 0)
    for regime in ex.REGIMES:
        q = ex.make_queries(facts, regime)
        assert torch.equal(q.rev_targets, facts.A)
        if regime != "arm":  # B r [M]^k: B at the entity slots, A's slots masked
            assert torch.equal(q.rev_tokens[:, q.rev_entity], facts.B)
            assert bool((q.rev_tokens[:, q.rev_slots] == facts.vocab).all())
            assert bool((q.fwd_tokens[:, q.fwd_slots] == facts.vocab).all())
    # the training masks only ever corrupt "A r B" (A first): the unit masks expand to token masks
    units = ex.entity_units(3)
    assert units.sum().item() == 7 and torch.equal(units.any(0), torch.ones(7, dtype=torch.bool))


def test_subset_masks_are_unbiased_for_the_exact_masked_objective():
    """Σ_{S≠∅} f(S)/(|S| C(n, |S|)) = E[w f(S)] (identity of the estimator): for f = 1{i ∈ S} the left
    side is Σ_s C(n−1, s−1)/(s C(n, s)) = Σ_s 1/n = 1; the sample mean of w·1{0 ∈ S} over 200,000 draws
    has standard deviation ≤ √(E[w²])/√200000 ≤ n/√200000 = 0.011 (n = 5), so 6σ = 0.07."""
    gen = torch.Generator().manual_seed(0)
    mask, w = ex.subset_masks(1, 1000, 200, 5, gen)
    assert mask.any(-1).all()
    est = float((w * mask[..., 0]).mean())
    assert abs(est - 1.0) < 6 * 5 / math.sqrt(200_000)


def test_a_diverged_run_is_reported_and_kept(tmp_path):
    cfg = ex.EntitiesConfig(
        ks=(1,), depths=(1,), encodings=("rope",), regimes=("mdm-forward",), facts=4, steps=3, seeds=2, lr=1e300
    )
    records, _ = ex.run_job(cfg, 1, "mdm-forward", "rope", 1)
    assert all(r.diverged for r in records) and len(records) == 2
    row = report.summary(records)[0]
    assert row["diverged"] == 2 and row["exact"] is None and math.isnan(row["forward_exact"])


def test_ctrl_c_leaves_results_marked_incomplete_and_exits_130(tmp_path, monkeypatch, capsys):
    calls = []
    real = report.run_job

    def interrupted(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(report, "run_job", interrupted)
    code = cli.main(["experiment", "entities", "--out", str(tmp_path), *TINY])
    assert code == 130
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["complete"] is False and doc["jobs_done"] == 1 and len(doc["records"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted" in err[0] and "incomplete" in err[0]


def test_only_rope_llada_like_models_can_be_saved():
    cfg = ex.EntitiesConfig(facts=4).model_config(2, "mdm-forward", "alibi", 1)
    with pytest.raises(ValueError, match="pos='alibi'"):
        require_checkpointable(cfg)


def _project_model_from_checkpoint():
    """The probe's map from a loaded checkpoint back to the project's parameters (``project_model_from_hf``;
    issue 23 renames it ``project_model_from_checkpoint``)."""
    from mdm_props import adapters

    return getattr(adapters, "project_model_from_checkpoint", None) or adapters.project_model_from_hf


@pytest.mark.parametrize("regime", ["mdm-forward", "arm"])
def test_checkpoint_round_trip_through_the_probe_adapter(regime, tmp_path):
    """The saved checkpoint, read by the probe's loader (``adapters.load_hf``) and mapped back by
    ``adapters.project_model_from_hf``, gives the trained parameters bit for bit (identity), and the
    transformers model's logits agree with the trained model's within
    :func:`mdm_props.checkpoints.transformers_logit_tolerance` (derived there: the adjoint first-order
    bound scaled from float64 to float32 rounding, transformers computing norms, RoPE angles and softmax
    in float32). Meta: the same check rejects a checkpoint whose head is perturbed by 10 tolerances."""
    pytest.importorskip("transformers")
    pytest.importorskip("safetensors")
    from mdm_props.adapters import load_hf

    project_model_from_hf = _project_model_from_checkpoint()
    config = ex.EntitiesConfig(facts=5, steps=6, seeds=1, ks=(2,), depths=(2,), encodings=("rope",))
    (record,), (params,) = ex.run_job(config, 2, regime, "rope", 2)
    cfg = config.model_config(2, regime, "rope", 2)
    fmt = "llama" if regime == "arm" else "llada"
    save_checkpoint(tmp_path / "ckpt", params, cfg, fmt)
    adapter = load_hf(str(tmp_path / "ckpt"), weights=True)
    if regime == "arm":  # a plain Llama is causal; the loader's default config says bidirectional
        adapter = adapter.causal_twin()
    _, back = project_model_from_hf(adapter)
    assert set(back) == set(params) and all(torch.equal(back[n], params[n]) for n in params)

    tokens = ex.entity_facts(5, 2, 0).sequences()
    z = forward(params, cfg, tokens).logits
    tol = transformers_logit_tolerance(params, cfg, tokens)
    z_hf = adapter.logits(adapter.parameters(), tokens)[..., : cfg.vocab]
    assert bool(((z_hf - z).abs() <= tol).all()), float(((z_hf - z).abs() / tol).max())

    # meta: perturb the saved head by 10 × the largest tolerance per unit logit and reload
    bad = dict(params)
    h = params["U"]
    scale = 10 * float(tol.max()) / float(forward(params, cfg, tokens).hidden.abs().sum(-1).max())
    bad["U"] = h + scale * torch.sign(h)
    save_checkpoint(tmp_path / "bad", bad, cfg, fmt)
    moved = load_hf(str(tmp_path / "bad"), weights=True)
    if regime == "arm":
        moved = moved.causal_twin()
    z_bad = moved.logits(moved.parameters(), tokens)[..., : cfg.vocab]
    assert not bool(((z_bad - z).abs() <= tol).all())


def test_saved_init_is_the_seeded_initialisation(tiny_run):
    pytest.importorskip("transformers")
    from mdm_props.adapters import load_hf

    project_model_from_hf = _project_model_from_checkpoint()
    out, doc = tiny_run
    r = next(r for r in doc["records"] if r["checkpoint"] and r["regime"] == "mdm-entity")
    cfg = ex.EntitiesConfig(facts=5).model_config(r["k"], r["regime"], "rope", r["depth"])
    _, back = project_model_from_hf(load_hf(f"{out / r['checkpoint']}@init", weights=True))
    init = init_params(cfg, r["seed"])
    assert all(torch.equal(back[n], init[n]) for n in init)


def test_figures_are_drawn_and_a_missing_matplotlib_is_named(tiny_run, tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    out, doc = tiny_run
    config = ex.EntitiesConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in doc["config"].items()})
    records = [ex.RunRecord(**r) for r in doc["records"]]
    paths = report.plot_figures(config, records, doc["summary"], tmp_path)
    assert [p.name for p in paths] == ["accuracy_vs_k.png", "layer_cosine.png"]
    assert all(p.stat().st_size > 1000 for p in paths)

    import mdm_props.plots

    def missing():
        raise ImportError("plotting needs matplotlib: pip install 'mdm_props[plot]'")

    monkeypatch.setattr(mdm_props.plots, "pyplot", missing)
    argv = [a for a in TINY if a != "--no-plot"] + ["--ks", "1", "--depths", "1", "--encodings", "alibi"]
    assert cli.main(["experiment", "entities", "--out", str(tmp_path / "np"), *argv]) == 0
    assert "no figures: plotting needs matplotlib: pip install 'mdm_props[plot]'" in capsys.readouterr().err
    assert not (tmp_path / "np" / "accuracy_vs_k.png").exists()


def test_results_json_is_standard_json_with_null_for_non_finite_values(tmp_path):
    cfg = ex.EntitiesConfig(
        ks=(1,), depths=(1,), encodings=("rope",), regimes=("mdm-forward",), facts=4, steps=3, seeds=1, lr=1e300
    )
    records, _ = ex.run_job(cfg, 1, "mdm-forward", "rope", 1)
    path = report.write_results(tmp_path, report.results_document(cfg, records, 1.0, complete=True))
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    doc = json.loads(text)
    assert doc["records"][0]["diverged"] is True and doc["summary"][0]["forward_exact"] is None


@pytest.mark.parametrize("regime, attention", [("mdm-forward", "bidirectional"), ("arm", "causal")])
def test_the_probe_reads_a_saved_checkpoint_with_the_attention_it_was_trained_with(regime, attention, tmp_path):
    """A saved E2 checkpoint is identified by the probe (LLaDA: an MDM; plain Llama: an ARM) and its attention
    self-test measures that attention. Regression: the self-test compared two sequences in one batched call,
    where BLAS rounds the rows differently (1.8e-15) and a causal checkpoint read as "partially causal"."""
    pytest.importorskip("safetensors")
    from mdm_props.adapters import load_hf
    from mdm_props.probe import bidirectionality

    config = ex.EntitiesConfig(facts=5, steps=6, seeds=1, ks=(1,), depths=(1,), encodings=("rope",))
    (_,), (params,) = ex.run_job(config, 1, regime, "rope", 1)
    cfg = config.model_config(1, regime, "rope", 1)
    save_checkpoint(tmp_path / "ckpt", params, cfg, "llama" if regime == "arm" else "llada")
    adapter = load_hf(str(tmp_path / "ckpt"), weights=True)
    result = bidirectionality(adapter)
    assert adapter.arch.attention == attention
    assert result["verdict"] == attention and result["passed"], result["detail"]
