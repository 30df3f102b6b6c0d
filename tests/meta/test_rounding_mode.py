"""The running-error machinery of :mod:`mdm_props.rounding_mode` itself: radii follow tensors through
autograd's saved values, exact arguments stay exact, in-place writes carry their radius, and anything
the rules do not cover is refused."""

import pytest
import torch

from mdm_props import rounding_mode as rm
from mdm_props.rounding import FUNCTION_REL, UNIT_ROUNDOFF


def _exp_gradient(x):
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        y = torch.exp(x)
        (g,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), g


def test_a_value_autograd_saves_keeps_its_radius_in_the_backward_pass():
    """exp saves its output for the backward pass (through detach, and as the same memory): ∂Σexp(x)/∂x =
    1·exp(x) must carry exp's own rounding (FUNCTION_REL|exp x|), not only the multiply's u|exp x| that a
    saved value read as exact would give (checked: with tensors keyed by Python identity and detach taken
    as exact, this fails)."""
    x = torch.linspace(-2.0, 2.0, 7, dtype=torch.float64)
    (y, g), (e_y, e_g) = rm.with_error_bounds(_exp_gradient, x, safety=1.0)
    assert torch.equal(g, y)
    assert torch.all(e_y >= FUNCTION_REL * y) and torch.all(e_g >= e_y)
    assert torch.all(e_g > 2 * UNIT_ROUNDOFF * y)


def test_exact_arguments_give_exact_structural_results_and_rounded_arithmetic_does_not():
    a = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def run(a):
        return a.t().reshape(2, 6), (a * 3.0).t()

    (v, w), (e_v, e_w) = rm.with_error_bounds(run, a)
    assert torch.equal(v, a.t().reshape(2, 6)) and torch.equal(e_v, torch.zeros_like(v))
    assert torch.equal(e_w, rm.SAFETY * UNIT_ROUNDOFF * w.abs())


def test_an_in_place_copy_carries_the_source_radius():
    a = torch.rand(5, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) + 0.5

    def run(a):
        out = torch.zeros(5, dtype=torch.float64)
        out.copy_(torch.exp(a))
        return out

    out, e = rm.with_error_bounds(run, a)
    assert torch.all(e >= rm.SAFETY * FUNCTION_REL * out)


def test_other_dtypes_and_operations_without_a_rule_are_refused():
    x = torch.ones(3, dtype=torch.float64)
    with pytest.raises(TypeError, match="float32"):
        rm.with_error_bounds(lambda t: t.float() * 2, x)
    with pytest.raises(NotImplementedError, match="no rounding rule"):
        rm.with_error_bounds(lambda t: torch.special.erf(t), x)


def test_the_adjoint_bound_equals_the_running_radius_for_one_operation_and_refuses_what_it_cannot_replay():
    """One rounding operation: both bounds are its own rounding (u|x·3|, × SAFETY). An in-place operation
    or a result that is not one float64 tensor is refused."""
    x = torch.rand(4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    (v, e), (w, f) = rm.adjoint_error_bounds(lambda t: t * 3.0, x), rm.with_error_bounds(lambda t: t * 3.0, x)
    assert torch.equal(v, w) and torch.equal(e, f)
    with pytest.raises(NotImplementedError, match="in-place"):
        rm.adjoint_error_bounds(lambda t: (t * 2.0).add_(1.0), x)
    with pytest.raises(TypeError, match="float64 tensor"):
        rm.adjoint_error_bounds(lambda t: (t, t), x)


# ---------------------------------------------------------------------------------------------
# the deep block against its 50-digit oracle: C5's log-probability bound


def _deep_draws(n, seed=11):
    import random

    from mdm_props.claims import c5_reflected_route as c5
    from mdm_props.facts import reverse_query

    rng = random.Random(seed)
    for _ in range(n):
        case = c5.sample_deep_case(rng)
        yield case, reverse_query(case.template, case.A, case.B, case.cfg.vocab)


def _logp(params, cfg, query):
    from mdm_props.model import forward

    return torch.log_softmax(forward(params, cfg, torch.tensor(query.tokens)).logits[query.slot], dim=-1)


def test_the_deep_oracle_is_the_model_in_closed_form_when_the_branches_are_zero():
    """W_OV = 0, W_down = 0 (every branch off) leave x = E[t]; with a final RMSNorm and a tied head the
    log-probabilities are log softmax(E N(E[t_i])), computed here by hand in mpmath."""
    import mpmath

    from mdm_props import oracles
    from mdm_props.model import ModelConfig
    from mdm_props.params import init_params

    cfg = ModelConfig(vocab=4, d_model=6, d_head=2, n_heads=2, n_layers=2, norm="rms", final_norm=True, mlp="swiglu")
    params = init_params(cfg, 3)
    params["W_OV"] = torch.zeros_like(params["W_OV"])
    params["W_down"] = torch.zeros_like(params["W_down"])
    tokens = [4, 1, 2]
    o = oracles.oracle_deep_forward(params, cfg, tokens)
    with mpmath.workdps(50):
        E = [[mpmath.mpf(float(v)) for v in row] for row in params["E"]]
        g = [mpmath.mpf(float(v)) for v in params["norm_final"]]
        eps = mpmath.mpf(cfg.norm_eps)
        for i, t in enumerate(tokens):
            r = 1 / mpmath.sqrt(mpmath.fsum(v * v for v in E[t]) / 6 + eps)
            h = [E[t][e] * r * g[e] for e in range(6)]
            z = [mpmath.fsum(E[v][e] * h[e] for e in range(6)) for v in range(4)]
            lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in z))
            assert all(abs(o["logprobs"][i][v] - (z[v] - lse)) < mpmath.mpf(10) ** -45 for v in range(4))


@pytest.mark.meta("C5")
def test_c5_log_probability_bound_against_the_50_digit_oracle():
    """24 C5 draws (depth 1–4, norms, SwiGLU, GQA, biases, every relative encoding), the reverse query's log p
    against :func:`mdm_props.oracles.stable_deep_oracle` (50 digits, confirmed at 100):

    * sound: |fl(log p) − log p| ≤ the adjoint bound (C5's per-side tolerance) on every entry of every draw;
    * tight: on every draw the error reaches 1e-4 of the bound somewhere (measured: 9e-4 … 3e-2 over 48
      draws), and the bound is never above the running radii it replaced (measured: 2e-11 … 5e-3 of the error
      there): so a bound a few times below the true error would fail the first assertion on some draw;
    * not vacuous: parameters rounded to float32 (an input moved by about 1e-8) give log p that the bound
      rejects on every draw."""
    from mdm_props import oracles
    from mdm_props.claims import c5_reflected_route as c5

    for case, rq in _deep_draws(24):
        params, cfg = case.params(), case.cfg
        exact = oracles.stable_deep_oracle(params, cfg, rq.tokens)["logprobs"][rq.slot]
        st = c5.query_state(params, cfg, rq.tokens, rq.slot, case.A)
        error = oracles.abs_error(exact, st["logp"])
        _, running = rm.with_error_bounds(_logp, params, cfg, rq)
        assert torch.all(error <= st["e_logp"]), (case, error, st["e_logp"])
        assert float((error / st["e_logp"]).max()) >= 1e-4, case
        assert torch.all(st["e_logp"] <= running * (1 + 1e-9)), case
        rounded = {k: v.float().double() for k, v in params.items()}
        assert bool((oracles.abs_error(exact, _logp(rounded, cfg, rq)) > st["e_logp"]).any()), case
