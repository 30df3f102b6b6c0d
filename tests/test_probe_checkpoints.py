"""The probe on checkpoints: model identity (LLaDA, Dream, Llama, Qwen2), strict configs, bad directories,
arguments checked before any work, selected-layer gradients only, tolerances by compute dtype.

Tiny random checkpoints are written here (``write_random_checkpoint``: the families' own config keys and
tensor names, bf16, sharded safetensors); Llama and Qwen2 also as transformers writes them (skipped
without the ``hf`` extra)."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from mdm_props import checkpoint_reader as C
from mdm_props import probe as P
from mdm_props.adapters import DecoderAdapter, load_checkpoint
from mdm_props.cli import main

pytest.importorskip("safetensors")

LLADA = {
    "model_type": "llada",
    "architectures": ["LLaDAModelLM"],
    "d_model": 16,
    "n_heads": 4,
    "n_kv_heads": 2,
    "n_layers": 3,
    "mlp_hidden_size": 24,
    "block_type": "llama",
    "activation_type": "silu",
    "layer_norm_type": "rms",
    "rope": True,
    "rope_theta": 5e5,
    "rope_full_precision": True,
    "vocab_size": 12,
    "embedding_size": 12,
    "weight_tying": False,
    "mask_token_id": 11,
    "max_sequence_length": 64,
    "include_bias": False,
    "include_qkv_bias": False,
    "alibi": False,
    "init_std": 0.02,
    "precision": "amp_bf16",
}
DREAM = {
    "model_type": "Dream",
    "architectures": ["DreamModel"],
    "auto_map": {"AutoModel": "modeling_dream.DreamModel"},
    "hidden_size": 16,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_hidden_layers": 2,
    "intermediate_size": 24,
    "vocab_size": 12,
    "mask_token_id": 11,
    "rope_theta": 1e6,
    "rms_norm_eps": 1e-6,
    "max_position_embeddings": 64,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
    "use_sliding_window": False,
    "sliding_window": None,
}
LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 16,
    "intermediate_size": 24,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_hidden_layers": 2,
    "vocab_size": 12,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
    "max_position_embeddings": 64,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "use_cache": True,
    "dtype": "bfloat16",
}
QWEN2 = {**LLAMA, "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "layer_types": ["full_attention"] * 2}
CONFIGS = {"llada": LLADA, "dream": DREAM, "llama": LLAMA, "qwen2": QWEN2}


def _write(tmp_path, name, raw, seed=0):
    path = tmp_path / name
    C.write_random_checkpoint(str(path), raw, seed=seed, shard_bytes=3000)  # several shards
    return str(path)


def _run(tmp_path, *argv):
    out = tmp_path / "report.json"
    rc = main(["probe", *argv, "--pairs", "6", "--no-contrast", "--json", str(out)])
    return rc, (json.loads(out.read_text()) if out.exists() else None)


# ---------------------------------------------------------------------------------------------
# identity


@pytest.mark.parametrize(
    "family,attention,probed,offset",
    [
        ("llada", "bidirectional", "MDM", 0),
        ("dream", "bidirectional", "MDM", 1),
        ("llama", "causal", "ARM", 0),
        ("qwen2", "causal", "ARM", 0),
    ],
)
def test_identity_from_checkpoint(tmp_path, family, attention, probed, offset):
    path = _write(tmp_path, family, CONFIGS[family])
    rc, rep = _run(tmp_path, "--hf-model", path, "--layers", "0")
    assert rc == 0
    assert rep["attention"] == attention and rep["probed_as"].startswith(probed)
    assert rep["model"]["readout_offset"] == offset and rep["config"]["family"] == family
    assert rep["self_tests"]["attention"]["verdict"] == attention and rep["self_tests"]["attention"]["passed"]
    assert family in rep["attention_source"]
    assert rep["signatures"]["queries"] == probed.lower()
    if probed == "ARM":
        assert "without is_causal" in rep["attention_source"] and rep["self_tests"]["reflection"]["passed"] is None
    elif offset == 0:
        assert rep["self_tests"]["reflection"]["passed"]
    else:  # Dream: the reverse query maps to the forward sequence's conditional at slot a + 2
        assert not rep["self_tests"]["reflection"]["passed"]
        assert rep["self_tests"]["reflection"]["shifted"]["at_rounding"]


@pytest.mark.parametrize(
    "hint",
    [
        {"model_type": "llada"},
        {"architectures": ["LLaDAModelLM"]},
        {"auto_map": {"AutoModel": "modeling_llada.LLaDAModelLM"}},
    ],
)
def test_llada_recognised_by_any_hint(hint):
    raw = {k: v for k, v in LLADA.items() if k not in ("model_type", "architectures")} | hint
    spec = C.spec_from_config(raw, "config.json")
    assert spec.family == "llada" and spec.attention == "bidirectional"


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_plain_llama_without_is_causal_never_bidirectional(tmp_path, family):
    """Done-when of issue 23: a plain Llama (or Qwen2) config without is_causal is probed as an ARM, with
    its own causal attention; reported bidirectional only when the config or the command line says so."""
    path = _write(tmp_path, family, CONFIGS[family])
    rc, rep = _run(tmp_path, "--hf-config", path)
    assert rc == 0 and rep["attention"] == "causal" and rep["self_tests"]["attention"]["verdict"] == "causal"
    # is_causal: true is causal too; is_causal: false is an MDM (with a mask id)
    raw = dict(CONFIGS[family], is_causal=True)
    assert C.spec_from_config(raw, "c").attention == "causal"
    raw = dict(CONFIGS[family], is_causal=False, mask_token_id=11)
    spec = C.spec_from_config(raw, "c")
    assert spec.attention == "bidirectional" and spec.attention_source == "config is_causal: false"
    # --attention bidirectional overrides, and says so; without a mask id it is refused
    rc, _ = _run(tmp_path, "--hf-config", path, "--attention", "bidirectional")
    assert rc == 2
    rc, rep = _run(tmp_path, "--hf-config", path, "--attention", "bidirectional", "--mask-id", "11")
    assert rc == 0 and rep["attention"] == "bidirectional" and "--attention" in rep["attention_source"]
    assert rep["self_tests"]["attention"]["verdict"] == "bidirectional"


def test_attention_override_makes_llada_causal(tmp_path):
    path = _write(tmp_path, "llada", LLADA)
    rc, rep = _run(tmp_path, "--hf-config", path, "--attention", "causal")
    assert rc == 0 and rep["attention"] == "causal" and rep["probed_as"].startswith("ARM")
    assert rep["self_tests"]["attention"]["verdict"] == "causal"


def test_transformers_written_checkpoints(tmp_path):
    """Llama and Qwen2 as transformers 5 writes them: identified as ARMs; our logits agree with transformers'
    to its float32 norms (|Δ| ≤ 8 × the float32 yardstick; meta: one query weight moved by 1e-2 is rejected)."""
    transformers = pytest.importorskip("transformers")
    for cfg_cls, model_cls in (
        (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
    ):
        cfg = cfg_cls(
            vocab_size=11,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
        )
        torch.manual_seed(0)
        model = model_cls(cfg).double().eval()
        path = tmp_path / cfg.model_type
        model.save_pretrained(path)
        a = load_checkpoint(str(path), weights=True)
        assert a.spec.attention == "causal" and a.spec.family == cfg.model_type
        tok = torch.tensor([[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]])
        with torch.no_grad():
            ref = model(tok).logits
            z = a.logits(a.parameters(), tok)
            yard = 8 * float((a.logits(a.parameters(), tok, dtype=torch.float32).double() - z).abs().max())
            assert float((z - ref).abs().max()) <= yard
            bad = a.parameters()
            name = "model.layers.0.self_attn.q_proj.weight"
            bad[name] = bad[name].clone()
            bad[name][0, 0] += 1e-2
            assert float((a.logits(bad, tok) - ref).abs().max()) > yard


# ---------------------------------------------------------------------------------------------
# strict configs: LLaDA's options implemented (checked against equivalent weights) or refused


def _logits(raw, params, dtype=torch.float64):
    spec = C.spec_from_config(raw, "c")
    a = DecoderAdapter(spec, {k: v.to(dtype) for k, v in params.items()}, dtype=dtype)
    tok = torch.tensor([[1, 2, 11, 3], [4, 11, 5, 6]])
    with torch.no_grad():
        return a.logits(a.parameters(), tok), a


def test_llada_options_against_equivalent_weights():
    """gemma_rms (x̂ (1 + w)) = rms with weights 1 + w; input_emb_norm = the embedding × sqrt(d); scale_logits =
    the head × 1/sqrt(d); default LayerNorm = rms on a mean-free stream is not equal, so it is checked to differ.
    Equal to float64 rounding (8 × the scaled float32 yardstick of the reference)."""
    spec = C.spec_from_config(LLADA, "c")
    params = C.random_weights(spec, torch.float64, "cpu", seed=3)
    base, a = _logits(LLADA, params)
    yard = (
        8
        * 2.0**-29
        * float(
            (
                a.logits(a.parameters(), torch.tensor([[1, 2, 11, 3], [4, 11, 5, 6]]), dtype=torch.float32).double()
                - base
            )
            .abs()
            .max()
        )
    )
    d = LLADA["d_model"]
    cases = [
        ({"layer_norm_type": "gemma_rms"}, {k: (v - 1 if "norm" in k else v) for k, v in params.items()}),
        (
            {"input_emb_norm": True},
            dict(params, **{"model.embed_tokens.weight": params["model.embed_tokens.weight"] / math.sqrt(d)}),
        ),
        ({"scale_logits": True}, dict(params, **{"lm_head.weight": params["lm_head.weight"] * math.sqrt(d)})),
    ]
    for change, equivalent in cases:
        z, _ = _logits(LLADA | change, equivalent)
        assert float((z - base).abs().max()) <= max(yard, 1e-13), change
        z_wrong, _ = _logits(LLADA | change, params)  # the option is not a no-op
        assert float((z_wrong - base).abs().max()) > 1e-3, change
    z_ln, _ = _logits(LLADA | {"layer_norm_type": "default"}, params)
    assert float((z_ln - base).abs().max()) > 1e-3


@pytest.mark.parametrize(
    "change,field",
    [
        ({"layer_norm_type": "amd_compatible"}, "layer_norm_type"),
        ({"block_type": "sequential"}, "block_type"),
        ({"activation_type": "gelu"}, "activation_type"),
        ({"alibi": True}, "alibi"),
        ({"attention_layer_norm": True}, "attention_layer_norm"),
        ({"rope_theta": float("nan")}, "rope_theta"),
        ({"d_model": 0}, "d_model"),
        ({"clip_qkv": 8.0}, "clip_qkv"),
        ({"rope_full_precision": "yes"}, "rope_full_precision"),
    ],
)
def test_llada_unsupported_field_exits_2_naming_it(tmp_path, capsys, change, field):
    path = tmp_path / "llada"
    path.mkdir()
    (path / "config.json").write_text(json.dumps(LLADA | change))
    rc, rep = _run(tmp_path, "--hf-config", str(path))
    err = capsys.readouterr().err
    assert rc == 2 and rep is None and field in err and "config.json" in err, err


@pytest.mark.parametrize(
    "family,change,field",
    [
        ("llama", {"hidden_size": 0}, "hidden_size"),
        ("llama", {"rope_parameters": {"rope_theta": float("nan"), "rope_type": "default"}}, "rope_theta"),
        ("llama", {"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_scaling"),
        ("llama", {"hidden_act": "gelu"}, "hidden_act"),
        ("llama", {"is_causal": "no"}, "is_causal"),
        ("qwen2", {"use_sliding_window": True, "sliding_window": 2}, "sliding_window"),
        ("dream", {"is_causal": True}, "is_causal"),
        ("llama", {"some_new_option": 1}, "some_new_option"),
    ],
)
def test_hf_unsupported_field_exits_2_naming_it(tmp_path, capsys, family, change, field):
    path = tmp_path / family
    path.mkdir()
    (path / "config.json").write_text(json.dumps(CONFIGS[family] | change))
    rc, _ = _run(tmp_path, "--hf-config", str(path))
    err = capsys.readouterr().err
    assert rc == 2 and field in err, err


def test_rope_full_precision_is_read_and_reported():
    """rope_full_precision asks for RoPE in at least float32: both compute dtypes satisfy it (the tables are
    computed in float64 and the rotation in the compute dtype), so true and false give the same logits here."""
    spec = C.spec_from_config(LLADA, "c")
    params = C.random_weights(spec, torch.float64, "cpu", seed=1)
    z1, a1 = _logits(LLADA, params)
    z0, a0 = _logits(LLADA | {"rope_full_precision": False}, params)
    assert a1.spec.rope_full_precision and not a0.spec.rope_full_precision
    assert torch.equal(z0, z1) and a1.spec.notes["rope_full_precision"] == "used"


# ---------------------------------------------------------------------------------------------
# bad directories


def _corrupt(path):
    files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
    with open(os.path.join(path, files[0]), "r+b") as f:
        f.write(b"\xff" * 16)
    return files[0]


@pytest.mark.parametrize("case", ["list", "not json", "corrupt", "width", "missing", "nan weights", "no weights"])
def test_bad_directory_exits_2_naming_the_file(tmp_path, capsys, case):
    path = _write(tmp_path, "llada", LLADA)
    cfg = os.path.join(path, "config.json")
    expect = "config.json"
    if case == "list":
        open(cfg, "w").write(json.dumps([LLADA]))
    elif case == "not json":
        open(cfg, "w").write("{model_type: llada")
    elif case == "corrupt":
        expect = _corrupt(path)
    elif case == "width":  # weights of another width: the config says 16, the files hold 32
        other = _write(tmp_path, "wide", LLADA | {"d_model": 32})
        for f in os.listdir(path):
            if f.endswith(".safetensors"):
                os.remove(os.path.join(path, f))
        for f in os.listdir(other):
            if f.endswith(".safetensors"):
                os.replace(os.path.join(other, f), os.path.join(path, f))
        expect = "shape"
    elif case == "missing":
        files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
        os.remove(os.path.join(path, files[-1]))
        expect = "lacks"
    elif case == "nan weights":
        from safetensors.torch import load_file, save_file

        files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
        state = load_file(os.path.join(path, files[0]))
        k = next(iter(state))
        state[k] = state[k].clone()
        state[k].view(-1)[0] = float("nan")
        save_file(state, os.path.join(path, files[0]))
        expect = "NaN"
    elif case == "no weights":
        for f in os.listdir(path):
            if f.endswith(".safetensors"):
                os.remove(os.path.join(path, f))
        expect = "no weights"
    rc, rep = _run(tmp_path, "--hf-model", path)
    err = capsys.readouterr().err
    assert rc == 2 and rep is None and expect in err and "Traceback" not in err, err


# ---------------------------------------------------------------------------------------------
# arguments, checked before any work


@pytest.fixture
def no_loading(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("weights were loaded before the arguments were checked")

    monkeypatch.setattr(C, "load_weights", refuse)
    monkeypatch.setattr(C, "random_weights", refuse)


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--layers", "7"], "layers"),
        (["--pairs", "200"], "pairs must be at most 110"),  # 11 real tokens: 11 · 10
        (["--mask-id", "12"], "mask id"),
        (["--memory-limit", "1e-6"], "needs about"),
        (["--readout-offset", "1", "--attention", "causal"], "readout-offset"),
    ],
)
def test_checkpoint_arguments_refused_before_loading(tmp_path, capsys, no_loading, argv, needle):
    path = _write(tmp_path, "llada", LLADA)
    rc = main(["probe", "--hf-model", path, *argv])
    assert rc == 2 and needle in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["--pairs", "3"],
        ["--pairs", "1000001"],
        ["--alpha", "0"],
        ["--alpha", "1.5"],
        ["--alpha", "nan"],
        ["--layers", "a"],
        ["--seed", "-1"],
    ],
)
def test_parser_bounds_exit_2(argv):
    with pytest.raises(SystemExit) as exc:
        main(["probe", *argv])
    assert exc.value.code == 2


def test_preset_mask_id_device_and_outputs(capsys, monkeypatch, tmp_path):
    assert main(["probe", "--model", "llada-like", "--mask-id", "3"]) == 2
    assert "--mask-id" in capsys.readouterr().err
    assert main(["probe", "--model", "llada-like", "--json", str(tmp_path / "r.txt")]) == 2
    assert main(["probe", "--model", "llada-like", "--json", str(tmp_path)]) == 2
    assert "--json" in capsys.readouterr().err and os.listdir(tmp_path) == []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["probe", "--model", "llada-like", "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_interrupt_exits_130(monkeypatch, tmp_path):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(P, "probe", interrupted)
    out = tmp_path / "r.json"
    assert main(["probe", "--model", "llada-like", "--json", str(out)]) == 130 and not out.exists()


# ---------------------------------------------------------------------------------------------
# scale: only the selected layers' gradients


def test_only_selected_layers_gradients_are_materialised(tmp_path, monkeypatch):
    """The probe asks autograd for gradients of the selected layers' tensors only, and holds at most one
    gradient of them at a time beside the tensor in flight: no full-parameter gradient is ever materialised."""
    path = _write(tmp_path, "llada", LLADA)
    a = load_checkpoint(path, weights=True)
    selected = [1]
    allowed = a.spec.n_parameters(selected)
    asked = []
    real_grad, real_backward = torch.autograd.grad, torch.autograd.backward

    def grad(outputs, inputs, *args, **kw):
        asked.append(sum(t.numel() for t in inputs))
        return real_grad(outputs, inputs, *args, **kw)

    def backward(tensors, *args, inputs=None, **kw):
        assert inputs is not None, "a backward pass without inputs accumulates into every leaf"
        asked.append(sum(t.numel() for t in inputs))
        return real_backward(tensors, *args, inputs=inputs, **kw)

    monkeypatch.setattr(torch.autograd, "grad", grad)
    monkeypatch.setattr(torch.autograd, "backward", backward)
    rep = P.probe(a, pairs=6, layers=selected, contrast=True)
    assert [row["layer"] for row in rep["signatures"]["layers"]] == selected
    assert asked and max(asked) <= allowed < a.spec.n_parameters() / 2
    assert all(v.grad is None and not v.requires_grad for v in a.parameters().values())
    # meta: selecting every layer asks for more than one layer's tensors (the counter sees what is asked)
    asked.clear()
    P.fact_cosines(a, P.queries(a, P.fact_pairs(a, 4, 0)), range(3))
    assert max(asked) > allowed


def test_memory_estimate_and_target():
    spec = C.spec_from_config(LLADA, "c")
    m64 = C.memory_estimate(spec, torch.float64, [0])
    m32 = C.memory_estimate(spec, torch.float32, [0])
    assert m64["weights"] == 8 * spec.n_parameters() == 2 * m32["weights"]
    assert m64["selected"] == 8 * spec.n_parameters([0])
    assert m64["target"] == int(1.5 * m64["weights"] + m64["selected"])


# ---------------------------------------------------------------------------------------------
# tolerances by compute dtype


class _Planted(DecoderAdapter):
    """Φθ's forward side with one query weight moved by ``delta`` (a planted reflection defect)."""

    def __init__(self, a, delta):
        super().__init__(a.spec, a.parameters(), dtype=a.dtype)
        self.delta = delta

    def logits(self, params, tokens, *, reflected=False, dtype=None):
        if reflected:
            name = "model.layers.0.self_attn.q_proj.weight"
            params = dict(params, **{name: params[name] + self.delta})
        return super().logits(params, tokens, reflected=reflected, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_reflection_tolerance_scaled_to_dtype(tmp_path, dtype):
    """At rounding in both dtypes, the float32 tolerance about 2^29 × the float64 one (u ratio); meta: a planted
    defect a few tolerances large (a query-weight shift, recomputed by the pipeline) is rejected."""
    path = _write(tmp_path, "llada", LLADA)
    a = load_checkpoint(path, weights=True, dtype=dtype)
    facts = P.fact_pairs(a, 8, 0)
    rt = P.reflection_defect(a, facts)
    assert rt["at_rounding"] and rt["compute_dtype"] == str(dtype)[6:]
    assert ("scaled" in rt["tolerance_kind"]) == (dtype == torch.float64)
    u = P.unit_roundoff(dtype)
    assert u * 1e-1 < rt["tolerance"] < u * 1e6  # the tolerance lives at the dtype's rounding scale
    for delta in (2.0**k for k in range(-60, 0)):
        planted = P.reflection_defect(_Planted(a, delta), facts)
        if not planted["at_rounding"]:
            break
    assert not planted["at_rounding"] and planted["defect"] < 64 * planted["tolerance"]  # rejected a few tolerances off


def test_dtype_report_states_tolerances(tmp_path):
    path = _write(tmp_path, "llada", LLADA)
    rc, rep = _run(tmp_path, "--hf-model", path, "--dtype", "float32", "--layers", "0-1")
    assert rc == 0 and rep["tolerances"]["compute_dtype"] == "float32"
    assert rep["tolerances"]["unit_roundoff"] == 2.0**-24 and rep["self_tests"]["precision"]["passed"]
    assert rep["settings"]["layers"] == [0, 1] and rep["timing"]["seconds_per_fact"] > 0
