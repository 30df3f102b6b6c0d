"""The derived float64 bounds hold (observed errors below them), are not vacuous (observed
error/bound ratios are reported and are not astronomically small; bounds are ~1e-15–1e-12 relative),
and reject values a few bounds off."""

import itertools
from fractions import Fraction

import pytest
import torch

from mdm_props import checks, oracles, rounding
from mdm_props.claims import c0_oracles as c0
from mdm_props.facts import canonical_template, mdm_objective_exact, reverse_query
from mdm_props.model import ATTENTIONS, POSITIONAL_ENCODINGS, ModelConfig, forward, rope_matrix
from mdm_props.params import init_params

u = rounding.UNIT_ROUNDOFF


def test_gamma():
    assert rounding.gamma(0) == 0 and rounding.gamma(1) > u and rounding.gamma(10) < 10 * u * (1 + 1e-14)
    with pytest.raises(ValueError, match="n must satisfy"):
        rounding.gamma(2**53)


def test_dot_error_bound_against_exact_rational_arithmetic():
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for n in (2, 7, 64, 1000):
        x, y = torch.randn(n, generator=gen, dtype=torch.float64), torch.randn(n, generator=gen, dtype=torch.float64)
        exact = sum(Fraction(a) * Fraction(b) for a, b in zip(x.tolist(), y.tolist(), strict=False))
        err = abs(Fraction(float(x @ y)) - exact)
        bound = float(rounding.dot_error_bound(x, y))
        assert err <= bound
        worst = max(worst, float(err) / bound)
        # perturbed pipelines (fixed seed): the same dot in float32, and x scaled by 1 + 1e-9
        assert abs(Fraction(float(x.float() @ y.float())) - exact) > bound, n
        assert abs(Fraction(float((x * (1 + 1e-9)) @ y)) - exact) > bound, n
    assert worst > 1e-4, worst  # not vacuous


def test_gamma_is_tight_for_recursive_summation():
    """γ_n on c0.gamma_witness: the error (n − 1)u exactly, within the bound, and (n − 1)/n of it (a γ_n half
    as large, the mutant `gamma-nu/2`, is refuted; one 10× looser fails the tightness share)."""
    for n in c0.GAMMA_WITNESS_LENGTHS:
        err, bound = c0.gamma_witness(n)
        assert err == (n - 1) * Fraction(u) and err <= bound, n
        assert float(err) / bound > (n - 1) / n * (1 - 2 * n * u), n
    assert all(r.holds for r in c0.gamma_checks())
    assert max(float(e) / (10 * b) for e, b in map(c0.gamma_witness, c0.GAMMA_WITNESS_LENGTHS)) < c0.GAMMA_TIGHT_SHARE


# ---- the forward-pass bound (C0.2) --------------------------------------------------------------

DRAWS = [
    ModelConfig(
        vocab=5,
        d_model=7,
        d_head=4,
        n_heads=2,
        pos=pos,
        attention=att,
        tied=tied,
        merged_ov=merged,
        residual=res,
        absolute_kind=kind,
        rope_base=base,
    )
    for (pos, kind), att, (tied, merged, res), base in itertools.product(
        [
            ("rope", "learned"),
            ("alibi", "learned"),
            ("t5", "learned"),
            ("none", "learned"),
            ("absolute", "learned"),
            ("absolute", "sinusoidal"),
        ],
        ATTENTIONS,
        [(True, True, True), (False, False, False)],
        [1e4, 5e5],
    )
    if pos == "rope" or base == 1e4
]
KEYS = ("scores", "attn", "logits", "logprobs")


@pytest.fixture(scope="module")
def forward_ratios():
    """Observed error / bound over a fixed grid of configurations (scales 1 and 4)."""
    ratios = {k: [] for k in KEYS}
    rel = {k: [] for k in KEYS}
    for n, cfg in enumerate(DRAWS):
        params = init_params(cfg, n, scale=(1.0, 4.0)[n % 2])
        tokens = torch.tensor([cfg.vocab, 1, 2, 0])
        fwd = forward(params, cfg, tokens)
        out = {**fwd._asdict(), "logprobs": torch.log_softmax(fwd.logits, dim=-1)}
        exact = oracles.stable_oracle(params, cfg, tokens)
        bounds = rounding.forward_error_bounds(params, cfg, tokens)
        for k in KEYS:
            err = oracles.abs_error(exact[k], out[k])
            ratios[k].append(float((err / bounds[k].clamp_min(1e-300)).max()))
            finite = out[k][torch.isfinite(out[k])]
            rel[k].append(float(bounds[k].max() / finite.abs().max()))
    return ratios, rel


@pytest.mark.meta("C0.2")
def test_forward_bound_holds_and_is_not_vacuous(forward_ratios):
    """Every entry within its bound; the worst observed error/bound per quantity is > 1e-3 (so the
    bound is at most ~1000x pessimistic; measured: ~0.2 scores, ~0.07 attn, ~0.03 logits/logprobs)
    and the bound is below 1e-11 relative to the largest entry (measured ≤ 3e-12)."""
    ratios, rel = forward_ratios
    for k in KEYS:
        assert max(ratios[k]) <= 1.0, (k, max(ratios[k]))
        assert max(ratios[k]) > 1e-3, (k, max(ratios[k]))
        assert max(rel[k]) < 1e-11, (k, max(rel[k]))


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("pos", POSITIONAL_ENCODINGS)
@pytest.mark.meta("C0.2")
def test_forward_bound_detects_a_query_weight_changed_by_one_part_in_1e9(pos, attention):
    """An input perturbation, not arithmetic on the bound: the model run with W_Q × (1 + 1e-9) is
    compared with the oracle of the unperturbed model; every quantity (scores, attention, logits,
    log-probabilities) must reject it, under every encoding and both attentions."""
    cfg = ModelConfig(vocab=4, d_model=5, d_head=2, n_heads=2, pos=pos, attention=attention)
    params = init_params(cfg, 1)
    tokens = torch.tensor([4, 0, 3])
    exact = oracles.stable_oracle(params, cfg, tokens)
    mutant = {**params, "W_Q": params["W_Q"] * (1 + 1e-9)}
    fwd = forward(mutant, cfg, tokens)
    out = {**fwd._asdict(), "logprobs": torch.log_softmax(fwd.logits, dim=-1)}
    bounds = rounding.forward_error_bounds(mutant, cfg, tokens)
    for k in KEYS:
        r = checks.worst_entry(
            "meta", k, out[k], oracles.to_tensor(exact[k]), bounds[k], error=oracles.abs_error(exact[k], out[k])
        )
        assert not r.holds, (k, r)


@pytest.mark.parametrize("mutation", ["W_Q x (1 + 1e-10)", "W_OV x (1 + 1e-10)", "rope_base x (1 + 1e-9)"])
@pytest.mark.meta("C0.2")
def test_forward_bound_detects_a_tiny_change_of_the_model(mutation):
    """A model that is wrong by one part in 1e10 (a parameter) or 1e9 (the RoPE base) is rejected:
    the bound is ~1e-13 relative, far below such changes."""
    cfg = ModelConfig(vocab=5, d_model=6, d_head=4, n_heads=1, pos="rope")
    params = init_params(cfg, 2)
    tokens = torch.tensor([5, 1, 2])
    exact = oracles.stable_oracle(params, cfg, tokens)
    mutant, mcfg = dict(params), cfg
    if mutation.startswith("W_Q"):
        mutant["W_Q"] = params["W_Q"] * (1 + 1e-10)
    elif mutation.startswith("W_OV"):
        mutant["W_OV"] = params["W_OV"] * (1 + 1e-10)
    else:
        mcfg = ModelConfig(vocab=5, d_model=6, d_head=4, n_heads=1, pos="rope", rope_base=1e4 * (1 + 1e-9))
    out = forward(mutant, mcfg, tokens)
    bounds = rounding.forward_error_bounds(mutant, mcfg, tokens)
    key = "logits"
    r = checks.worst_entry(
        "meta",
        key,
        out.logits,
        oracles.to_tensor(exact[key]),
        bounds[key],
        error=oracles.abs_error(exact[key], out.logits),
    )
    assert not r.holds, r


# ---- RoPE bounds (C0.1) ---------------------------------------------------------------------------


@pytest.mark.meta("C0.1")
def test_rope_bounds_reject_perturbed_rotations():
    """Input perturbations of one part in 1e12 (a few hundred bounds, so a bound 10³× too loose lets them
    pass): sines scaled by 1 + 1e-12 leave R not orthogonal within the bound; R_{−5} computed at
    −5 + 1e-13 is not R_5ᵀ; R_3 R_{−7} is not R_{−4 + 1e-12}."""
    d, base = 8, 1e4
    R, Rn = rope_matrix(5, d, base), rope_matrix(-5, d, base)
    eye = torch.eye(d, dtype=torch.float64)
    assert ((R.T @ R - eye).abs() <= c0.rope_orthogonality_bound(R)).all()
    sloppy = R.clone()
    for l in range(d // 2):  # the off-diagonal sines of each block scaled by 1 + 1e-12
        sloppy[2 * l + 1, 2 * l] = R[2 * l + 1, 2 * l] * (1 + 1e-12)
        sloppy[2 * l, 2 * l + 1] = -sloppy[2 * l + 1, 2 * l]
    assert ((sloppy.T @ sloppy - eye).abs() > c0.rope_orthogonality_bound(sloppy)).any()
    assert ((R.T - Rn).abs() <= c0.rope_transpose_bound(R, Rn)).all()
    Rn_off = rope_matrix(-5 + 1e-13, d, base)  # ≈ 190 bounds
    assert ((R.T - Rn_off).abs() > c0.rope_transpose_bound(R, Rn_off)).any()
    Ra, Rb, Rab = rope_matrix(3, d, base), rope_matrix(-7, d, base), rope_matrix(-4, d, base)
    assert ((Ra @ Rb - Rab).abs() <= c0.rope_composition_bound(3, -7, d, base, Ra, Rb, Rab)).all()
    Rab_off = rope_matrix(-4 + 1e-12, d, base)
    assert ((Ra @ Rb - Rab_off).abs() > c0.rope_composition_bound(3, -7, d, base, Ra, Rb, Rab_off)).any()


@pytest.mark.meta("C0.1")
def test_rope_relativity_bound_is_tight_enough_to_see_a_tiny_angle_change():
    """Rotating block 0 by 3 + 1e-12 rad instead of 3 rad is rejected (the bound is ~4e-14 here)."""
    gen = torch.Generator().manual_seed(4)
    q, k = torch.randn(4, generator=gen, dtype=torch.float64), torch.randn(4, generator=gen, dtype=torch.float64)
    tol = c0.rope_relativity_bound(q, k, 2, 5, 1e4)
    import math

    th = 3.0 + 1e-12  # block 0 (θ_0 = 1), offset n − m = 3, angle off by 1e-12 rad
    k2 = torch.tensor([k[0] * math.cos(th) - k[1] * math.sin(th), k[0] * math.sin(th) + k[1] * math.cos(th)])
    wrong = float(q[:2] @ k2) + float(q[2:] @ (rope_matrix(3, 4, 1e4)[2:, 2:] @ k[2:]))
    right = float(q @ rope_matrix(3, 4, 1e4) @ k)
    assert abs(wrong - right) > tol and tol < 1e-13


# ---- gradient and objective bounds (C0.3, C0.4) ---------------------------------------------------


@pytest.mark.parametrize("pos", POSITIONAL_ENCODINGS)
@pytest.mark.meta("C0.3")
def test_gradient_bounds_hold_are_small_and_reject_perturbed_closed_forms(pos):
    from mdm_props.facts import query_loss
    from mdm_props.gradients import score_gradient_closed_form, storage_gradient_closed_form

    cfg = ModelConfig(vocab=5, d_model=7, d_head=4, n_heads=2, pos=pos, rope_base=5e5)
    params = init_params(cfg, 6, scale=2.0)
    query = reverse_query(canonical_template(2), 0, 1, cfg.vocab)
    auto = torch.func.grad(lambda p: query_loss(p, cfg, query))(params)["W_OV"][0]
    closed = storage_gradient_closed_form(params, cfg, query)
    b = 2 * rounding.storage_gradient_error_bound(params, cfg, query)
    assert ((auto - closed).abs() <= b).all()
    nudged = {**params, "E": params["E"] * (1 + 1e-9)}  # the closed form at embeddings off by 1e-9
    assert ((auto - storage_gradient_closed_form(nudged, cfg, query)).abs() > b).any()
    assert float(b.max()) < 1e-11 * float(closed.abs().max())  # measured up to ~2e-12 at scale 2
    tokens = query.tensor()
    g = torch.func.grad(lambda p: forward(p, cfg, tokens).scores[0, 1, 2, 0])(params)
    dQ, dK = score_gradient_closed_form(params, cfg, tokens, 2, 0, head=1)
    bQ, bK = rounding.score_gradient_error_bound(params, cfg, tokens, 2, 0, head=1)
    # the closed forms at W_K resp. W_Q off by 1e-9 (∂s/∂W_Q reads k, ∂s/∂W_K reads q)
    dQ_off, _ = score_gradient_closed_form({**params, "W_K": params["W_K"] * (1 + 1e-9)}, cfg, tokens, 2, 0, head=1)
    _, dK_off = score_gradient_closed_form({**params, "W_Q": params["W_Q"] * (1 + 1e-9)}, cfg, tokens, 2, 0, head=1)
    for a, c, off, bb in ((g["W_Q"][0, 1], dQ, dQ_off, 2 * bQ), (g["W_K"][0, 1], dK, dK_off, 2 * bK)):
        assert ((a - c).abs() <= bb).all() and ((a - off).abs() > bb).any()
        assert float(bb.max()) < 1e-11 * float(c.abs().max())


@pytest.mark.meta("C0.4")
def test_objective_bound_holds_and_rejects_a_perturbed_model():
    """The float64 objective is within the bound of the mpmath enumeration; the objective of a model
    whose W_OV is off by one part in 1e9 is not."""
    cfg = ModelConfig(vocab=4, d_model=5, d_head=2, pos="alibi")
    params = init_params(cfg, 3)
    tokens = torch.tensor([1, 3, 0])
    exact = float(c0.enumerate_objective_oracle(params, cfg, tokens))
    computed = float(mdm_objective_exact(params, cfg, tokens))
    bound = c0.mdm_objective_error_bound(params, cfg, tokens)
    assert abs(computed - exact) <= bound + u * abs(exact) and bound < 1e-12 * abs(exact)
    mutant = {**params, "W_OV": params["W_OV"] * (1 + 1e-9)}
    off = float(mdm_objective_exact(mutant, cfg, tokens))
    assert abs(off - exact) > c0.mdm_objective_error_bound(mutant, cfg, tokens) + u * abs(exact)


def test_forward_error_bounds_are_batched_like_forward():
    cfg = ModelConfig(vocab=4, d_model=5, d_head=2, n_heads=2, pos="t5", attention="causal")
    params = init_params(cfg, 0)
    batch = torch.tensor([[4, 0, 1], [2, 4, 3]])
    b = rounding.forward_error_bounds(params, cfg, batch)
    out = forward(params, cfg, batch)
    assert b["scores"].shape == out.scores.shape and b["logits"].shape == out.logits.shape
    for row in range(2):
        single = rounding.forward_error_bounds(params, cfg, batch[row])
        assert all(torch.allclose(b[k][row], single[k], rtol=1e-12, atol=0) for k in single)
