"""``mdm-props probe``: adapters, self-tests, signatures, CLI (transformers tests skip without the hf extra)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from mdm_props import probe as P
from mdm_props.adapters import ProbeError, ProjectAdapter, llada_to_llama_state_dict
from mdm_props.claims import c6_c8_deep_storage as deep
from mdm_props.claims.c5_reflected_route import check_c5
from mdm_props.cli import main
from mdm_props.facts import Template
from mdm_props.model import forward


@pytest.fixture(scope="module")
def facts_llada():
    a = ProjectAdapter.from_preset("llada-like")
    return a, P.fact_pairs(a, 12, 0)


@pytest.mark.parametrize("name", ["llada-like", "smdm-like"])
def test_reflection_at_rounding_on_presets_reproduces_c5(name):
    a = ProjectAdapter.from_preset(name, seed=3)
    facts = P.fact_pairs(a, 8, 1)
    rt = P.reflection_test(a, facts, causal=False)
    assert rt["passed"] and rt["tolerance_kind"].startswith("derived")
    worst = max(check_c5(a.parameters(), a.cfg, Template(3, 0, 2, (r,)), A, B)[0].error for A, r, B in facts)
    assert rt["defect"] == pytest.approx(worst, abs=1e-15)  # the same float64 evaluation as C5's checker


def test_reflection_o1_for_shifted_readout_maps_to_slot_a_plus_2():
    a = ProjectAdapter.from_preset("dream-like")
    rt = P.reflection_test(a, P.fact_pairs(a, 8, 0), causal=False)
    assert not rt["passed"] and rt["defect"] > 1e-3
    assert rt["shifted"]["at_rounding"] and rt["shifted"]["forward_slot"] == 2


def test_causal_project_model_reported_causal_and_signatures_refused():
    a = ProjectAdapter.from_preset("llada-like").causal_twin()
    with pytest.raises(P.CausalModelError) as exc:
        P.probe(a, pairs=8, contrast=False)
    st = exc.value.report["self_tests"]
    assert st["bidirectionality"]["verdict"] == "causal"
    assert not st["reflection"]["passed"] and "causal" in st["reflection"]["maps_to"]
    assert "signatures" not in exc.value.report


def test_query_keys_reproduce_model_scores(facts_llada):
    for name in ("llada-like", "dream-like"):
        a = ProjectAdapter.from_preset(name)
        tok = P.query_tokens(a, facts_llada[1])[0]
        scores = forward(a.parameters(), a.cfg, tok).scores
        for layer, (q, k) in enumerate(a.query_keys(a.parameters(), tok)):
            torch.testing.assert_close(q @ k.transpose(-1, -2) * a.score_scale, scores[:, layer], rtol=0, atol=1e-14)


def test_signatures_on_llada_like(facts_llada):
    a, facts = facts_llada
    sig = P.signatures(a, facts)
    assert len(sig["layers"]) == 3 and len(sig["layers"][0]["heads"]) == 4
    h0 = sig["layers"][0]["heads"][0]
    assert h0["c2a_prediction"] == pytest.approx(0.1731, abs=1e-3)  # THEORY C2a: d_k = 4, g = 4 (≈ base-independent)
    # storage alignment at standard init (C7, typical): every fact's value/output cosine is positive here
    assert all(row["value_output_cos"]["positive_rate"] == 1.0 for row in sig["layers"])


# ---------------------------------------------------------------------------------------------
# C7: the probe's per-layer storage rates are C7's rates


def _probe_layer_signs(case, causal: bool = False) -> list[bool]:
    """The probe on one C7 draw (a model and its fact A r B): per layer, is cos(G_f^ℓ, G_r^ℓ) > 0?"""
    a = ProjectAdapter(case.cfg, case.params())
    a = a.causal_twin() if causal else a
    fact = [(case.A, case.template.fillers[0], case.B)]
    return (P.storage_cosines(a, P.fact_gradients(a, fact))[0] > 0).tolist()


def _counts(signs) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for draw in signs:
        for layer, s in enumerate(draw, 1):
            cell = out.setdefault(layer, [0, 0])
            cell[0] += s
            cell[1] += 1
    return out


# C7's pooled MDM group in run_c7(120, 0) splits its draws over the encodings in turn (alignment_signs): 30 draws
# each, encoding i seeded with seed + i. The probe reads rope and none (the encodings its reflection supports).
C7_SHARES = (("rope", 0), ("none", 3))


@pytest.mark.parametrize("pos,seed", C7_SHARES)
def test_probe_reproduces_c7_rates_on_c7_draws(pos, seed):
    """Done-when of issue 11: the probe on the presets reproduces the C7 rates. On C7's own draws (the rope
    and none shares of the documented table's MDM group: plain blocks and the llada-, dream-, smdm-like
    presets at C7's settings, depth 1–4, Gaussian embeddings) the probe's per-layer storage cosine
    (:func:`mdm_props.probe.storage_cosines`, the value path W_OV^ℓ) has C7's sign (``layer_cosines``) for
    every draw and layer, so its per-layer counts *are* ``alignment_signs``' counts: an identity of two
    float64 computations of one statistic, no rate comparison and so no false-alarm level."""
    cases = list(deep.c7_group_cases(30, seed, kind="mdm", pos=pos))
    assert pos != "rope" or {c.cfg.norm for c in cases} == {"none", "rms"}  # plain and preset blocks both drawn
    probe_signs = [_probe_layer_signs(c) for c in cases]
    c7_signs = [(deep.layer_cosines(c.params(), c.cfg, *c.queries()) > 0).tolist() for c in cases]
    assert probe_signs == c7_signs
    ref = deep.alignment_signs(30, seed, kind="mdm", pos=pos)
    assert _counts(probe_signs) == ref["per_layer"]
    # meta: the same draws with H-bi dropped (the probe's causal twin: same weights, causal mask) give other
    # per-layer counts, so the equality above can fail
    assert _counts([_probe_layer_signs(c, causal=True) for c in cases]) != ref["per_layer"]


def test_probe_refuses_c7_arm_draws():
    """C7's ARM draws (causal attention) are reported causal: the probe gives no C7 rate for them."""
    for case in deep.c7_group_cases(8, 997, kind="arm", pos="rope"):
        assert P.bidirectionality(ProjectAdapter(case.cfg, case.params()))["verdict"] == "causal"


def test_fact_pairs_and_bad_arguments():
    a = ProjectAdapter.from_preset("llada-like")
    facts = P.fact_pairs(a, 40, 0)
    assert len({(r, B) for _, r, B in facts}) == 40 and all(len({A, r, B}) == 3 for A, r, B in facts)
    with pytest.raises(ValueError, match="pairs"):
        P.fact_pairs(a, 2, 0)
    with pytest.raises(ProbeError, match="model must be one of"):
        ProjectAdapter.from_preset("gpt-like")


def test_cli_preset_json(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["probe", "--model", "smdm-like", "--pairs", "8", "--no-contrast", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["self_tests"]["reflection"]["passed"] and rep["signatures"]["pairs"] == 8
    assert "signatures over 8 facts" in capsys.readouterr().out


def test_cli_bad_paths_exit_2_nothing_written(tmp_path):
    out = tmp_path / "r.json"
    assert main(["probe", "--hf-config", str(tmp_path / "missing"), "--json", str(out)]) == 2
    assert main(["probe", "--model", "llada-like", "--json", str(tmp_path / "no" / "r.json")]) == 2
    assert not out.exists() and os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# transformers (the hf extra)


def _tiny(kind="llama", causal=False, seed=0, tied=False):
    transformers = pytest.importorskip("transformers")
    from mdm_props.adapters import hf_model_from_config

    cls = transformers.LlamaConfig if kind == "llama" else transformers.Qwen2Config
    cfg = cls(
        vocab_size=9,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        is_causal=causal,
        tie_word_embeddings=tied,
        rope_theta=5e5,
        max_position_embeddings=64,
    )
    return hf_model_from_config(cfg, seed=seed)


def _agreement(hf, cfg, params, tokens):
    """|z_hf − z_project| and its tolerance: 8 × the float32 yardstick (the largest change of the
    transformers logits when θ and the whole computation run in float32). transformers computes RMSNorm
    and the RoPE tables in float32 even for float64 inputs; those casts are a subset of the float32 run's
    roundings with the same first-order sensitivities, so their effect is of the yardstick's size (an
    estimate, not a bound; the factor 8 covers sign coincidences)."""
    V = cfg.vocab
    z = hf.logits(hf.parameters(), tokens)[..., :V]
    z32 = hf.logits({k: v.float() for k, v in hf.parameters().items()}, tokens)[..., :V].double()
    err = float((z - forward(params, cfg, tokens).logits).abs().max())
    return err, 8 * float((z32 - z).abs().max())


@pytest.mark.parametrize("kind,offset", [("llama", 0), ("qwen2", 1)])
def test_hf_bidirectional_agrees_with_project_model(kind, offset):
    from mdm_props.adapters import HFAdapter, project_model_from_hf

    hf = HFAdapter(_tiny(kind), mask_id=8, readout_offset=offset)
    cfg, params = project_model_from_hf(hf)
    tokens = torch.tensor([[1, 2, 8], [3, 4, 5], [8, 0, 7]])
    err, tol = _agreement(hf, cfg, params, tokens)
    assert err <= tol, (err, tol)
    # meta: a perturbed input (one query weight moved by 1e-3) is rejected
    bad = dict(params, W_Q=params["W_Q"].clone())
    bad["W_Q"][0, 0, 0, 0] += 1e-3
    err_bad, _ = _agreement(hf, cfg, bad, tokens)
    assert err_bad > tol


def test_hf_probe_self_tests_and_signatures():
    from mdm_props.adapters import HFAdapter

    hf = HFAdapter(_tiny("llama"), mask_id=8)
    rep = P.probe(hf, pairs=8, contrast=True)
    st = rep["self_tests"]
    assert st["bidirectionality"]["verdict"] == "bidirectional"
    assert not st["float64"]["passed"] and any("norm" in m for m in st["float64"]["not_float64"])
    assert st["reflection"]["passed"] and st["reflection"]["tolerance_kind"].startswith("float32")
    assert rep["signatures"]["layers"][0]["heads"][0]["c2a_prediction"] is not None
    assert rep["causal_contrast"]["causal_mask"]


def test_hf_qwen2_readout_offset_maps_to_slot_a_plus_2():
    from mdm_props.adapters import HFAdapter

    hf = HFAdapter(_tiny("qwen2"), mask_id=8, readout_offset=1)
    rt = P.reflection_test(hf, P.fact_pairs(hf, 8, 0), causal=False)
    assert not rt["passed"] and rt["shifted"]["at_rounding"]


def test_hf_causal_reported_and_refused():
    from mdm_props.adapters import HFAdapter

    with pytest.raises(P.CausalModelError) as exc:
        P.probe(HFAdapter(_tiny("llama", causal=True), mask_id=8), pairs=8)
    assert exc.value.report["self_tests"]["bidirectionality"]["verdict"] == "causal"


def _llada_named(model):
    """A synthetic LLaDA-named state dict (LLaDA's names and shapes) holding ``model``'s weights."""
    inverse = {}
    for k, v in model.state_dict().items():
        if k.startswith("model.layers."):
            _, _, l, *rest = k.split(".")
            sub = ".".join(rest[:-1])
            name = {
                "self_attn.q_proj": "q_proj",
                "self_attn.k_proj": "k_proj",
                "self_attn.v_proj": "v_proj",
                "self_attn.o_proj": "attn_out",
                "mlp.gate_proj": "ff_proj",
                "mlp.up_proj": "up_proj",
                "mlp.down_proj": "ff_out",
                "input_layernorm": "attn_norm",
                "post_attention_layernorm": "ff_norm",
            }[sub]
            inverse[f"model.transformer.blocks.{l}.{name}.{rest[-1]}"] = v.clone()
        else:
            inverse[
                {
                    "model.embed_tokens.weight": "model.transformer.wte.weight",
                    "model.norm.weight": "model.transformer.ln_f.weight",
                    "lm_head.weight": "model.transformer.ff_out.weight",
                }[k]
            ] = v.clone()
    return inverse


def test_llada_name_map_reproduces_logits():
    from mdm_props.adapters import HFAdapter

    src = _tiny("llama", seed=1)
    state = _llada_named(src)
    assert "model.transformer.blocks.1.ff_proj.weight" in state and "model.transformer.ff_out.weight" in state
    dst = _tiny("llama", seed=2)
    dst.load_state_dict(llada_to_llama_state_dict(state), strict=True)
    tokens = torch.tensor([[1, 2, 8, 3]])
    a, b = HFAdapter(src, mask_id=8), HFAdapter(dst, mask_id=8)
    assert torch.equal(a.logits(a.parameters(), tokens), b.logits(b.parameters(), tokens))
    with pytest.raises(ProbeError, match="not a LLaDA name"):
        llada_to_llama_state_dict({"model.transformer.blocks.0.att_proj.weight": torch.zeros(1)})


def test_cli_hf_checkpoint_causal_and_unsupported(tmp_path):
    save_file = pytest.importorskip("safetensors.torch").save_file  # the hf extra; skipped without it

    m = _tiny("llama")
    good = tmp_path / "llada"
    good.mkdir()
    m.config.mask_token_id = 8
    m.config.save_pretrained(good)
    save_file({k: v.contiguous() for k, v in _llada_named(m).items()}, str(good / "model.safetensors"))
    out = tmp_path / "r.json"
    assert main(["probe", "--hf-model", str(good), "--pairs", "8", "--no-contrast", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["self_tests"]["bidirectionality"]["passed"]
    causal = tmp_path / "causal"
    causal.mkdir()
    cfg = json.loads((good / "config.json").read_text())
    (causal / "config.json").write_text(json.dumps({**cfg, "is_causal": True}))
    out2 = tmp_path / "c.json"
    assert main(["probe", "--hf-config", str(causal), "--json", str(out2)]) == 2 and not out2.exists()
    bad = tmp_path / "gpt2"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    assert main(["probe", "--hf-config", str(bad), "--json", str(out2)]) == 2 and not out2.exists()
