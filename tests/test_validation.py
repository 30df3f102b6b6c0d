"""Bad input fails early with a ValueError/TypeError that names the argument and what is allowed."""

import math

import pytest
import torch

from mdm_props.facts import (
    Query,
    Template,
    canonical_template,
    forward_query,
    mdm_objective_exact,
    mdm_objective_samples,
    query_loss,
    reverse_query,
)
from mdm_props.model import ModelConfig
from mdm_props.params import check_params, init_params, require_finite, require_float64, require_step, resolve_device

CFG = ModelConfig(vocab=4, d_model=6, d_head=2)


def test_odd_d_head_with_rope():
    with pytest.raises(ValueError, match=r"d_head must be even with pos='rope'"):
        ModelConfig(vocab=4, d_model=6, d_head=3, pos="rope")
    ModelConfig(vocab=4, d_model=6, d_head=3, pos="alibi")  # odd is fine without RoPE


def test_orthonormal_embeddings_need_d_model_at_least_vocab_plus_one():
    cfg = ModelConfig(vocab=6, d_model=6, d_head=2)
    with pytest.raises(ValueError, match=r"d_model >= vocab \+ 1 = 7; got d_model=6"):
        init_params(cfg, 0, orthonormal=True)


def test_subject_equal_to_object():
    with pytest.raises(ValueError, match=r"A and B must be distinct"):
        forward_query(canonical_template(3), 1, 1, CFG.vocab)


@pytest.mark.parametrize("A,B,name", [(-1, 1, "A"), (CFG.vocab, 1, "A"), (0, CFG.vocab + 3, "B")])
def test_token_ids_out_of_range_or_the_mask_id(A, B, name):
    with pytest.raises(ValueError, match=rf"{name} must be a real token id in \[0, {CFG.vocab - 1}\]"):
        reverse_query(canonical_template(3), A, B, CFG.vocab)


@pytest.mark.parametrize(
    "query,match",
    [
        (Query((4, 1, 2), 0, 4), r"query.target must be a real token id in \[0, 3\] \(not the mask id 4\)"),
        (Query((4, 1, 9), 0, 1), r"query.tokens must be ids in \[0, 4\]"),
        (Query((4, 1, 2), 3, 1), r"query.slot must be a position in \[0, 2\]"),
    ],
)
def test_bad_query_target_tokens_or_slot(query, match):
    with pytest.raises(ValueError, match=match):
        query_loss(init_params(CFG, 0), CFG, query)


@pytest.mark.parametrize("fn", ["exact", "samples"])
def test_objective_targets_must_be_real_tokens(fn):
    params, tokens = init_params(CFG, 0), torch.tensor([0, CFG.mask_id, 1])
    with pytest.raises(ValueError, match=r"tokens must hold real token ids in \[0, 3\] \(not the mask id 4\)"):
        if fn == "exact":
            mdm_objective_exact(params, CFG, tokens)
        else:
            mdm_objective_samples(params, CFG, tokens, 4, torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(length=3, a=0, b=3, fillers=(0,)), r"slot b must be an integer in \[0, 2\]"),
        (dict(length=3, a=-1, b=2, fillers=(0,)), r"slot a must be an integer in \[0, 2\]"),
        (dict(length=3, a=2, b=1, fillers=(0,)), r"slots must satisfy a < b; got a=2, b=1"),
        (dict(length=3, a=1, b=1, fillers=(0,)), r"slots must satisfy a < b; got a=1, b=1"),
    ],
)
def test_template_slots_out_of_range_or_not_increasing(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Template(**kwargs)


def test_non_float64_params_are_refused():
    params = init_params(CFG, 0)
    params["W_Q"] = params["W_Q"].float()
    with pytest.raises(TypeError, match=r"params\['W_Q'\] has dtype torch.float32; .* torch.float64 only"):
        require_float64(params)
    with pytest.raises(TypeError, match=r"params\['W_Q'\]"):
        check_params(params, CFG)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_or_inf_params_are_refused(bad):
    params = init_params(CFG, 0)
    params["E"][1, 2] = bad
    with pytest.raises(ValueError, match=r"params\['E'\] contains NaN or inf"):
        require_finite(params)
    with pytest.raises(ValueError, match=r"params\['E'\] contains NaN or inf"):
        check_params(params, CFG)


@pytest.mark.parametrize("eta", [0, -0.1, math.nan, math.inf, True, "0.1"])
def test_step_size_must_be_finite_and_positive(eta):
    with pytest.raises(ValueError, match=r"eta \(step size\) must be a finite number > 0"):
        require_step(eta)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present: requesting it is valid")
def test_cuda_requested_without_a_gpu():
    with pytest.raises(ValueError, match=r"device='cuda' was requested but torch.cuda.is_available\(\) is False"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match=r"device='cuda'"):
        init_params(CFG, 0, device="cuda")


def test_unknown_device_string():
    with pytest.raises(ValueError, match=r"device must be one of 'cpu', 'cuda'; got 'tpu'"):
        resolve_device("tpu")


@pytest.mark.parametrize("field,value", [("pos", "rotary"), ("attention", "bidir"), ("absolute_kind", "fixed")])
def test_unknown_pos_attention_or_absolute_kind(field, value):
    with pytest.raises(ValueError, match=rf"{field} must be one of .*; got '{value}'"):
        ModelConfig(vocab=4, d_model=6, d_head=2, **{field: value})


# ---------------------------------------------------------------------------------------------
# the command line's argument layer (mdm_props.arguments); the per-subcommand battery is in test_cli.py


def test_checking_an_output_file_leaves_no_trace(tmp_path):
    """A new path is created to prove it writable and removed again; an existing file keeps its bytes."""
    from mdm_props.arguments import require_output_file

    new, old = tmp_path / "new.json", tmp_path / "old.json"
    old.write_text("kept")
    assert require_output_file("--json", str(new), (".json",)) == new and not new.exists()
    assert require_output_file("--json", str(old), (".json",)) == old and old.read_text() == "kept"
    assert require_output_file("--json", str(tmp_path / "x.JSON"), (".json",))  # the suffix, any case


def test_an_output_directory_is_not_created_by_the_check(tmp_path):
    from mdm_props.arguments import require_output_dir

    assert require_output_dir("--out", str(tmp_path / "out")) == tmp_path / "out"
    assert not (tmp_path / "out").exists()
    assert require_output_dir("--out", str(tmp_path)) == tmp_path


@pytest.mark.parametrize(
    "text, allowed, result",
    [("C1, C3", None, ["C1", "C3"]), ("C3", ("C1a", "C3"), ["C3"]), (" C1a ,C3 ", ("C1a", "C3"), ["C1a", "C3"])],
)
def test_id_lists_accept_comma_separated_ids(text, allowed, result):
    from mdm_props.arguments import require_id_list

    assert require_id_list("--claims", text, allowed) == result


def test_bounded_integers_name_the_flag_and_the_interval():
    import argparse

    from mdm_props.arguments import budget_type, int_type, require_int_list, seed_type

    assert int_type("--max-bits", 64, 1024)("64") == 64
    with pytest.raises(argparse.ArgumentTypeError, match=r"^must be an integer in \[64, 1024\]; got 63$"):
        int_type("--max-bits", 64, 1024)("63")
    assert budget_type("certify --draws")("100000") == 100_000
    with pytest.raises(argparse.ArgumentTypeError, match=r"\[1, 100000\]; got 100001"):
        budget_type("certify --draws")("100001")
    assert seed_type()(str(2**64 - 1)) == 2**64 - 1
    with pytest.raises(argparse.ArgumentTypeError, match=r"<= 18446744073709551614 \(64 bits\); got"):
        seed_type(spread=1)(str(2**64 - 1))
    assert require_int_list("--sizes", "1,16", 1, 100) == [1, 16]
    with pytest.raises(ValueError, match=r"^--sizes must be an integer in \[1, 100\]; got 'x'$"):
        require_int_list("--sizes", "1,x", 1, 100)
