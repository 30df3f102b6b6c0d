"""`mdm-props experiment reversal`: the qualitative MDM-vs-ARM ordering on a small configuration,
the exactness of the logged signatures, argument refusal (exit code 2), determinism, and the files."""

import argparse
import csv
import json
import math

import pytest
import torch

from mdm_props import reversal as ex
from mdm_props import reversal_report as report
from mdm_props.facts import canonical_template, mdm_objective_exact
from mdm_props.model import forward
from mdm_props.params import init_params
from mdm_props.training import cosine_factor, fact_pairs, train

# The ordering test's configuration: 8 facts, d = d_k = 16, 80 Adam steps at lr 0.05.
SMALL = dict(pairs=8, d_model=16, d_head=16, steps=80, lr=0.05, log_every=40, encodings=("rope",))
# A tiny configuration for determinism and the output files: every regime, a relative and the absolute encoding.
TINY = dict(pairs=3, d_model=8, d_head=8, steps=6, lr=0.05, seeds=1, log_every=3, encodings=("rope", "absolute"))


@pytest.fixture(scope="module")
def small():
    return ex.run_reversal_experiment(ex.ExperimentConfig(**SMALL, seeds=2, regimes=("mdm-forward", "arm")))


def test_mdm_forward_training_answers_the_reverse_query_and_the_arm_does_not(small):
    """RoPE mdm-forward reverse accuracy exceeds the ARM's by at least 0.5 on every seed.

    The ARM cannot be expected to answer (B, r) → A: in causal next-token training on "A r B"
    the inputs are (A, r), so B is never read (at slot a or anywhere), and the subject A is never a
    target, so no loss term involves p(A | B, r). Its reverse accuracy is nevertheless not 0 by
    construction: with a tied unembedding, u_B is trained towards the forward output h(A, r) ∋ W_OV x_A,
    which can couple x_Aᵀ W_OV x_B back (measured: ARM reverse accuracy 0 to 0.25 over seeds 0–19 at
    this configuration, up to 0.42 at N = 64). The MDM's value path is position-free under RoPE
    (THEORY C1a), so the evidence W_OV x_B → u_A learned on (M, r, B) is read again in (B, r, M):
    measured reverse accuracy 1.0 on all 20 seeds 0–19. The 0.5 margin sits between the worst MDM
    seed (1.0) and the best ARM seed (0.25) with room on both sides; both forward accuracies are 1.
    """
    for seed in (0, 1):
        mdm = next(r for r in small.runs if r.regime == "mdm-forward" and r.seed == seed)
        arm = next(r for r in small.runs if r.regime == "arm" and r.seed == seed)
        assert mdm.forward_acc == 1.0 and arm.forward_acc == 1.0, (mdm, arm)
        assert mdm.reverse_acc - arm.reverse_acc >= 0.5, (seed, mdm.reverse_acc, arm.reverse_acc)
        assert mdm.reverse_logp > arm.reverse_logp


def test_logged_signatures_have_the_expected_shape_and_symmetries(small):
    """Histories are logged at steps 0, k, 2k, ..., steps; the MDM's token-aligned forward attention
    to B rises from its initial value as the forward fact is learned."""
    for run in small.runs:
        assert [h["step"] for h in run.history] == [0, 40, 80]
        for h in run.history:
            assert set(ex.SIGNATURES) <= set(h) and all(math.isfinite(h[k]) for k in ex.SIGNATURES)
            assert 0 <= h["attn_fwd"] <= 1 and 0 <= h["attn_rev"] <= 1 and -1 <= h["score_corr"] <= 1
        if run.regime == "mdm-forward":
            assert run.history[-1]["attn_fwd"] > run.history[0]["attn_fwd"]


@pytest.mark.parametrize("encoding", ["alibi", "none"])
def test_mask_to_b_scores_are_identical_in_both_configurations_under_symmetric_encodings(encoding):
    """THEORY C2 (reflection-symmetric case): under alibi and none the forward and reverse
    query→B scores are equal, so their across-pair correlation is 1 up to rounding."""
    cfg = ex.ExperimentConfig(pairs=5, d_model=8, d_head=8, encodings=(encoding,))
    mcfg = cfg.model_config("mdm-forward", encoding)
    vocab, relation, pairs = fact_pairs(5)
    probe = ex.make_probe("mdm-forward", canonical_template(relation), pairs, vocab, "cpu")
    sig = ex.signatures(init_params(mcfg, 1), mcfg, probe, pairs)
    assert sig["score_corr"] == pytest.approx(1.0, abs=1e-12)
    assert sig["attn_fwd"] == pytest.approx(sig["attn_rev"], rel=1e-12)


@pytest.mark.parametrize("regime", ex.REGIMES)
@pytest.mark.parametrize("encoding", ["rope", "absolute"])
def test_per_pair_storage_gradients_equal_one_backward_pass_per_pair(regime, encoding):
    """The batched per-pair ∂L_n/∂W_OV equals torch.autograd.grad of each pair's loss on its own
    (a few float64 roundings apart), for MDM and ARM queries, relative and absolute positions."""
    cfg = ex.ExperimentConfig(pairs=4, d_model=6, d_head=6).model_config(regime, encoding)
    vocab, relation, pairs = fact_pairs(4)
    probe = ex.make_probe(regime, canonical_template(relation), pairs, vocab, "cpu")
    params = init_params(cfg, 7)
    for query in (probe.fwd, probe.rev):
        G = ex.per_pair_storage_grads(params, cfg, query)
        for n in range(len(pairs)):
            p = {k: v.clone().requires_grad_(k == "W_OV") for k, v in params.items()}
            tokens, slot, target = (x[n] for x in query)
            nll = -torch.log_softmax(forward(p, cfg, tokens).logits[slot], -1)[target]
            (g,) = torch.autograd.grad(nll, p["W_OV"])
            torch.testing.assert_close(G[n], g[0], rtol=0, atol=1e-13 * float(g.abs().max()))


def test_mdm_full_loss_is_the_mean_of_the_exact_objective_per_sequence():
    """The batched all-masks loss equals facts.mdm_objective_exact averaged over the sequences."""
    cfg = ex.ExperimentConfig(pairs=3, d_model=6, d_head=6).model_config("mdm-full", "t5")
    _, relation, pairs = fact_pairs(3)
    seqs = torch.tensor([canonical_template(relation).sequence(A, B) for A, B in pairs])
    params = init_params(cfg, 2)
    exact = torch.stack([mdm_objective_exact(params, cfg, s) for s in seqs]).mean()
    torch.testing.assert_close(ex.mdm_full_loss(params, cfg, seqs), exact, rtol=1e-14, atol=0)


def test_same_seed_gives_the_same_table_and_histories():
    a = ex.run_reversal_experiment(ex.ExperimentConfig(**TINY))
    b = ex.run_reversal_experiment(ex.ExperimentConfig(**TINY))
    assert report.markdown(a) == report.markdown(b)
    assert [r.history for r in a.runs] == [r.history for r in b.runs]
    other = ex.run_one(ex.ExperimentConfig(**TINY), "mdm-forward", "rope", seed=1)
    assert other.history != a.runs[0].history  # the seed matters


def test_cli_writes_the_table_csv_and_json(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    argv = [
        "--pairs",
        "3",
        "--d-model",
        "8",
        "--d-head",
        "8",
        "--steps",
        "6",
        "--seeds",
        "1",
        "--log-every",
        "3",
        "--encodings",
        "rope",
        "absolute",
        "--no-plot",
        "--out",
        str(tmp_path),
    ]
    assert report.run_from_args(parser.parse_args(argv)) == 0
    out = capsys.readouterr()
    assert "| regime | encoding | forward acc | reverse acc |" in out.out
    assert "| mdm-forward | rope |" in out.out and "| arm | absolute |" in out.out
    assert "[  6/6]" in out.err  # one progress line per run
    with (tmp_path / "runs.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {r["regime"] for r in rows} == set(ex.REGIMES)
    with (tmp_path / "signatures.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 6 * 3  # steps 0, 3, 6
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["config"]["pairs"] == 3 and len(doc["runs"]) == 6 and len(doc["summary"]) == 6
    assert (tmp_path / "table.md").read_text() in out.out
    assert not (tmp_path / "signatures.png").exists()


def test_signature_figure_is_drawn_when_matplotlib_is_present(small, tmp_path):
    pytest.importorskip("matplotlib")
    path = report.plot_signatures(small, tmp_path / "sig.png")
    assert path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


BAD_ARGS = [
    (["--regimes", "bert"], "--regimes", "mdm-forward"),
    (["--encodings", "xpos"], "--encodings", "rope"),
    (["--pairs", "1"], "--pairs", "[2, 1024]"),
    (["--steps", "0"], "--steps", "[1, 1000000]"),
    (["--lr", "0"], "--lr", "> 0"),
    (["--lr", "-0.1"], "--lr", "> 0"),
    (["--lr", "nan"], "--lr", "> 0"),
    (["--seeds", "0"], "--seeds", "[1, 1000]"),
    (["--optimizer", "lbfgs"], "--optimizer", "adam"),
]


@pytest.mark.parametrize("argv, name, allowed", BAD_ARGS, ids=[" ".join(a) for a, _, _ in BAD_ARGS])
def test_bad_arguments_exit_2_naming_the_argument(argv, name, allowed, capsys):
    parser = argparse.ArgumentParser(prog="mdm-props experiment reversal")
    report.add_arguments(parser)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert name in err and allowed in err, err


def test_run_from_args_refuses_a_bad_namespace_with_exit_2(capsys):
    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    args = parser.parse_args([])
    args.regimes = ["mdm-forward", "gpt"]  # e.g. built by hand, bypassing argparse's choices
    assert report.run_from_args(args) == 2
    err = capsys.readouterr().err
    assert "regimes" in err and "'gpt'" in err and "mdm-forward, mdm-full, arm" in err


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("regimes", ("mdm",), "allowed values are mdm-forward, mdm-full, arm"),
        ("encodings", ("rope", "xpos"), "allowed values are rope, alibi, t5, none, absolute"),
        ("pairs", 1, r"pairs must be an integer in \[2, 1024\]"),
        ("steps", 0, r"steps must be an integer in \[1, 1000000\]"),
        ("lr", -1.0, "lr must be a finite number > 0"),
        ("seeds", 0, r"seeds must be an integer in \[1, 1000\]"),
        ("optimizer", "rmsprop", "optimizer must be one of adam, sgd"),
        ("d_head", 7, "d_head must be even"),
    ],
)
def test_config_refuses_bad_values_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        ex.ExperimentConfig(**{field: value})


def test_cuda_is_refused_cleanly_when_absent(capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    assert report.run_from_args(parser.parse_args(["--device", "cuda"])) == 2
    assert "cuda" in capsys.readouterr().err


def test_cosine_schedule_decays_to_zero_and_train_applies_it():
    """training.cosine_factor: ½(1 + cos(πt/T)) is 1 at t = 0, ½ at T/2, 0 at T; a zero factor
    freezes the parameters (the schedule reaches the optimiser), a constant 1 does not."""
    f = cosine_factor(10)
    assert (f(0), f(5), f(10)) == (1.0, pytest.approx(0.5, abs=1e-15), pytest.approx(0.0, abs=1e-15))
    params = {"w": torch.tensor([1.0, -2.0], dtype=torch.float64)}
    loss = lambda p: (p["w"] ** 2).sum()  # noqa: E731
    frozen = train(params, loss, steps=3, lr=0.1, lr_factor=lambda t: 0.0)
    moved = train(params, loss, steps=3, lr=0.1, lr_factor=lambda t: 1.0)
    assert torch.equal(frozen["w"], params["w"]) and not torch.equal(moved["w"], params["w"])
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        cosine_factor(0)
