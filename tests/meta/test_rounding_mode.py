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
