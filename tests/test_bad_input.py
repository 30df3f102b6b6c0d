"""Silent wrong answers on bad input (issue 9, item 5): each is now a ValueError/TypeError naming the
argument and what is allowed."""

import math

import pytest
import torch

from mdm_props.claims import c0_oracles as c0
from mdm_props.claims import c2_correlated_routes as c2
from mdm_props.claims import c4_reverse_loss_decrease as c4
from mdm_props.facts import (
    arm_loss,
    canonical_template,
    forward_query,
    masked_token_nll,
    mdm_objective_exact,
    mean_query_loss,
    query_loss,
)
from mdm_props.model import ModelConfig, forward, rope_matrix, rope_rotate
from mdm_props.params import init_params

CFG = ModelConfig(vocab=4, d_model=6, d_head=2)
PARAMS = init_params(CFG, 0)
T = canonical_template(2)


@pytest.mark.parametrize("tokens", [[-1, 0, 1], [0, 5, 1]])
def test_forward_refuses_token_ids_outside_0_to_v(tokens):
    """Before: id −1 read E[−1], the mask row, and returned numbers."""
    with pytest.raises(ValueError, match=r"tokens must be ids in \[0, 4\]"):
        forward(PARAMS, CFG, torch.tensor(tokens))


def test_forward_refuses_float_tokens_and_still_runs_under_vmap():
    with pytest.raises(ValueError, match="integer tensor"):
        forward(PARAMS, CFG, torch.tensor([4.0, 0.0, 1.0]))
    batch = torch.tensor([[4, 0, 1], [2, 4, 3]])
    out = torch.func.vmap(lambda t: forward(PARAMS, CFG, t).logits)(batch)
    assert torch.equal(out, forward(PARAMS, CFG, batch).logits)


def test_mean_query_loss_checks_every_query():
    bad = forward_query(T, 0, 1, CFG.vocab)
    bad = type(bad)((bad.tokens[0], bad.tokens[1], -1), bad.slot, bad.target, bad.vocab)
    with pytest.raises(ValueError, match="query.tokens"):
        mean_query_loss(PARAMS, CFG, [forward_query(T, 0, 1, CFG.vocab), bad])
    with pytest.raises(ValueError, match="queries"):
        mean_query_loss(PARAMS, CFG, [])


def test_arm_loss_and_masked_nll_check_their_tokens():
    causal = ModelConfig(vocab=4, d_model=6, d_head=2, attention="causal")
    p = init_params(causal, 0)
    with pytest.raises(ValueError, match="real token ids"):
        arm_loss(p, causal, torch.tensor([0, 4, 1]))  # the mask id is not a next-token target
    with pytest.raises(ValueError, match="length >= 2"):
        arm_loss(p, causal, torch.tensor([0]))
    with pytest.raises(ValueError, match="real token ids"):
        masked_token_nll(PARAMS, CFG, torch.tensor([0, -1, 1]), torch.tensor([True, False, True]))
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        masked_token_nll(PARAMS, CFG, torch.tensor([0, 2, 1]), torch.tensor([1, 0, 1]))


def test_a_query_built_for_another_vocabulary_is_refused():
    """Before: forward_query(template, A, B, vocab=3) under a V = 4 config made real token 3 the 'mask'."""
    q = forward_query(T, 0, 1, 3)
    with pytest.raises(ValueError, match="vocab=3 .* cfg.vocab=4"):
        query_loss(PARAMS, CFG, q)
    with pytest.raises(ValueError, match="cfg.vocab=4"):
        mean_query_loss(PARAMS, CFG, [q])


@pytest.mark.parametrize("d_head", [3, 5, 0])
def test_rope_refuses_odd_dimensions(d_head):
    """Before: rope_matrix(δ, 3, base) returned a wrong-shaped matrix."""
    with pytest.raises(ValueError, match="d_head must be an even integer"):
        rope_matrix(1, d_head, 1e4)
    if d_head:
        with pytest.raises(ValueError, match="d_head must be an even integer"):
            rope_rotate(torch.ones(2, d_head, dtype=torch.float64), torch.arange(2), 1e4)


@pytest.mark.parametrize("base", [math.nan, math.inf, 1.0, 0.5, -2.0])
def test_rope_refuses_a_bad_base(base):
    """Before: a NaN base returned NaN rotations."""
    with pytest.raises(ValueError, match="base must be a finite number > 1"):
        rope_matrix(1, 4, base)
    with pytest.raises(ValueError, match="base must be a finite number > 1"):
        rope_rotate(torch.ones(2, 4, dtype=torch.float64), torch.arange(2), base)


def test_rope_rotate_refuses_mismatched_positions():
    with pytest.raises(ValueError, match="positions must have shape"):
        rope_rotate(torch.ones(3, 4, dtype=torch.float64), torch.arange(2), 1e4)


@pytest.mark.parametrize("etas", [(0.0,), (-0.1, 0.1), (math.nan,), ()])
def test_check_c4a_refuses_non_positive_steps(etas):
    cfg = ModelConfig(vocab=4, d_model=6, d_head=2)
    p = init_params(cfg, 0, orthonormal=True)
    with pytest.raises(ValueError, match="eta"):
        c4.check_c4a(p, cfg, T, 0, 1, etas=etas)


@pytest.mark.parametrize(
    "runner",
    [
        c0.run_c01,
        c0.run_c03,
        c2.run_c2a,
        c2.run_c2b,
        c2.run_c2c,
        c2.negative_correlation_search,
        c2.negative_route_gradient_search,
    ],
)
def test_runners_refuse_negative_seeds(runner):
    """Before: random.Random(−s) silently aliased random.Random(s)."""
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        runner(30, -1, "cpu")


@pytest.mark.parametrize("how", ["nan", "float32"])
def test_loss_functions_refuse_nan_or_float32_parameters(how):
    bad = dict(PARAMS)
    bad["W_Q"] = PARAMS["W_Q"].clone()
    if how == "nan":
        bad["W_Q"][0, 0, 0, 0] = math.nan
    else:
        bad["W_Q"] = bad["W_Q"].float()
    err = (ValueError, TypeError)
    q = forward_query(T, 0, 1, CFG.vocab)
    with pytest.raises(err, match="W_Q"):
        query_loss(bad, CFG, q)
    with pytest.raises(err, match="W_Q"):
        mean_query_loss(bad, CFG, [q])
    with pytest.raises(err, match="W_Q"):
        mdm_objective_exact(bad, CFG, torch.tensor([0, 2, 1]))


# ---------------------------------------------------------------------------------------------
# issue 24: forward() validates its inputs at the public entry (cheaply), init_params names its seed


def _with(name, value):
    bad = dict(PARAMS)
    bad[name] = value
    return bad


TOKENS = torch.tensor([0, 4, 1])


@pytest.mark.parametrize(
    "params, message",
    [
        (_with("W_Q", PARAMS["W_Q"].long()), r"params\['W_Q'\] must be a floating-point tensor"),
        (_with("W_Q", PARAMS["W_Q"].float()), r"params\['W_Q'\] must have the dtype of params\['E'\]"),
        (_with("W_OV", torch.full_like(PARAMS["W_OV"], math.nan)), r"params\['W_OV'\] must be finite"),
        (_with("E", torch.full_like(PARAMS["E"], math.inf)), r"params\['E'\] must be finite"),
        (_with("W_K", PARAMS["W_K"][..., :-1]), r"params\['W_K'\] must have shape \(1, 1, 2, 6\)"),
        (_with("W_Q", [[1.0]]), r"params\['W_Q'\] must be a floating-point tensor"),
        ({k: v for k, v in PARAMS.items() if k != "W_OV"}, "params lacks W_OV"),
        ([PARAMS], "params must be a dict"),
    ],
)
def test_forward_refuses_bad_parameters_naming_them(params, message):
    """Before: integer parameters gave a RuntimeError, NaN parameters NaN logits, a missing key a bare KeyError."""
    with pytest.raises(ValueError, match=message):
        forward(params, CFG, TOKENS)


@pytest.mark.parametrize("tokens", [torch.tensor([], dtype=torch.long), torch.zeros(2, 0, dtype=torch.long)])
def test_forward_refuses_an_empty_token_list(tokens):
    """Before: an empty token list returned an empty result."""
    with pytest.raises(ValueError, match="tokens must hold at least one token id"):
        forward(PARAMS, CFG, tokens)


def test_forward_refuses_a_config_that_is_not_a_model_config():
    with pytest.raises(ValueError, match="cfg must be a ModelConfig"):
        forward(PARAMS, {"vocab": 4}, TOKENS)


def test_forward_checks_hold_under_grad_and_are_skipped_only_where_values_cannot_be_read():
    """Under torch.func.grad the values are readable and checked; under vmap only the finiteness check
    is skipped (shapes are the per-draw ones); checked=True skips the parameter checks for callers that
    validated already, with the same result."""
    from torch.func import grad, vmap

    def loss(W, p):
        return forward({**p, "W_OV": W}, CFG, TOKENS).logits.sum()

    nan = torch.full_like(PARAMS["W_OV"], math.nan)
    with pytest.raises(ValueError, match=r"params\['W_OV'\] must be finite"):
        grad(loss)(nan, PARAMS)
    stacked = {k: torch.stack([v, v]) for k, v in PARAMS.items()}
    out = vmap(lambda p: forward(p, CFG, TOKENS))(stacked)
    assert out.logits.shape == (2, 3, CFG.vocab)
    wrong = {**stacked, "W_K": stacked["W_K"][..., :-1]}
    with pytest.raises(ValueError, match=r"params\['W_K'\] must have shape"):
        vmap(lambda p: forward(p, CFG, TOKENS))(wrong)
    assert torch.equal(forward(PARAMS, CFG, TOKENS, checked=True).logits, forward(PARAMS, CFG, TOKENS).logits)


@pytest.mark.parametrize("seed", [2**64, 2**200, -1, True, 1.0])
def test_init_params_names_the_seed_beyond_64_bits(seed):
    """Before: seed=2**64 failed inside torch.Generator.manual_seed without naming ``seed``."""
    with pytest.raises(ValueError, match=r"^seed must be a non-negative integer <= 18446744073709551615"):
        init_params(CFG, seed)
    assert init_params(CFG, 2**64 - 1)["E"].dtype == torch.float64  # the largest seed a Generator holds


def test_forward_accepts_finite_parameters_whose_sum_overflows():
    """The finiteness check sums each tensor first (one number a tensor); a sum beyond the float range
    falls back to the entry-by-entry check instead of refusing finite parameters."""
    big = _with("W_OV", torch.full_like(PARAMS["W_OV"], 1e308))
    assert forward(big, CFG, TOKENS).logits.shape == (3, CFG.vocab)
    big["W_OV"][0, 0, 0, 0] = -math.inf
    with pytest.raises(ValueError, match=r"params\['W_OV'\] must be finite"):
        forward(big, CFG, TOKENS)
