"""The mpmath oracle is itself checked: against hand-derived closed forms, for stability across
precisions, for catching mutated models, and its helpers (and the KS helper of C0.4) behave."""

import mpmath
import numpy as np
import pytest
import torch
from scipy import stats

from mdm_props import checks, oracles, rounding
from mdm_props.claims import c0_oracles as c0
from mdm_props.model import ModelConfig, forward
from mdm_props.params import init_params


def test_oracle_with_zero_queries_is_uniform_attention_in_closed_form():
    """W_Q = 0 ⇒ every score is 0 (plus nothing under NoPE), α = 1/T, h_i = x_i + W_OV mean(x),
    z = U h, log p = z − log Σ exp z: computed here by hand in mpmath."""
    cfg = ModelConfig(vocab=3, d_model=4, d_head=2, pos="none")
    params = init_params(cfg, 5)
    params["W_Q"] = torch.zeros_like(params["W_Q"])
    tokens = [3, 0, 2]
    o = oracles.oracle_forward(params, cfg, tokens)
    with mpmath.workdps(50):
        E = [[mpmath.mpf(float(v)) for v in row] for row in params["E"]]
        W = [[mpmath.mpf(float(v)) for v in row] for row in params["W_OV"][0, 0]]
        mean = [mpmath.fsum(E[t][e] for t in tokens) / 3 for e in range(4)]
        Wm = [mpmath.fsum(W[r][c] * mean[c] for c in range(4)) for r in range(4)]
        for i, t in enumerate(tokens):
            h = [E[t][e] + Wm[e] for e in range(4)]
            z = [mpmath.fsum(E[v][e] * h[e] for e in range(4)) for v in range(3)]
            lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in z))
            assert all(abs(o["scores"][0][0][i][j]) < mpmath.mpf(10) ** -45 for j in range(3))
            assert all(abs(o["attn"][0][0][i][j] - mpmath.mpf(1) / 3) < mpmath.mpf(10) ** -45 for j in range(3))
            assert all(abs(o["logprobs"][i][v] - (z[v] - lse)) < mpmath.mpf(10) ** -45 for v in range(3))


def test_oracle_rope_score_in_closed_form_for_d_head_two():
    """d_head = 2: s_ij = |q||k| cos(φ_k − φ_q + (j − i)) / √2 (a rotation by (j − i)·θ_0, θ_0 = 1)."""
    cfg = ModelConfig(vocab=3, d_model=3, d_head=2, pos="rope")
    params = init_params(cfg, 8)
    tokens = [3, 1, 0, 2]
    o = oracles.oracle_forward(params, cfg, tokens)
    with mpmath.workdps(50):
        WQ = [[mpmath.mpf(float(v)) for v in r] for r in params["W_Q"][0, 0]]
        WK = [[mpmath.mpf(float(v)) for v in r] for r in params["W_K"][0, 0]]
        E = [[mpmath.mpf(float(v)) for v in r] for r in params["E"]]
        for i, j in [(0, 3), (2, 1), (1, 1)]:
            q = [mpmath.fsum(WQ[a][c] * E[tokens[i]][c] for c in range(3)) for a in range(2)]
            k = [mpmath.fsum(WK[a][c] * E[tokens[j]][c] for c in range(3)) for a in range(2)]
            expected = (
                mpmath.hypot(*q)
                * mpmath.hypot(*k)
                * mpmath.cos(mpmath.atan2(k[1], k[0]) - mpmath.atan2(q[1], q[0]) + (j - i))
                / mpmath.sqrt(2)
            )
            assert abs(o["scores"][0][0][i][j] - expected) < mpmath.mpf(10) ** -40


def test_oracle_is_stable_across_precisions_and_refuses_low_precision():
    cfg = ModelConfig(vocab=4, d_model=5, d_head=4, n_heads=2, pos="rope", attention="causal", tied=False)
    params = init_params(cfg, 1, scale=4.0)
    a = oracles.oracle_forward(params, cfg, [4, 1, 2], dps=50)
    b = oracles.oracle_forward(params, cfg, [4, 1, 2], dps=120)
    with mpmath.workdps(120):
        assert all(
            abs(x - y) <= mpmath.mpf(10) ** -40 * max(1, abs(y))
            for x, y in zip(oracles._flatten(a), oracles._flatten(b), strict=False)
        )
    assert mpmath.mp.dps == 15  # no global precision leaked
    with pytest.raises(ValueError, match="dps must be an integer >= 20"):
        oracles.oracle_forward(params, cfg, [4, 1, 2], dps=10)
    with pytest.raises(ValueError, match=r"tokens must be ids in \[0, 4\]"):
        oracles.oracle_forward(params, cfg, [4, 1, 7])


@pytest.mark.parametrize(
    "mutation",
    [
        "causal instead of bidirectional",
        "t5 bias read as b(i - j)",
        "alibi without |.|",
        "sinusoidal instead of learned positions",
    ],
)
def test_oracle_catches_mutated_models(mutation):
    """A float64 model that differs from the oracle's equations is rejected by the C0.2 check."""
    pos = {
        "causal instead of bidirectional": "rope",
        "t5 bias read as b(i - j)": "t5",
        "alibi without |.|": "alibi",
        "sinusoidal instead of learned positions": "absolute",
    }[mutation]
    cfg = ModelConfig(vocab=4, d_model=5, d_head=2, pos=pos, absolute_kind="learned")
    params = init_params(cfg, 3)
    tokens = torch.tensor([4, 1, 2, 0])
    exact = oracles.stable_oracle(params, cfg, tokens)
    mparams, mcfg = dict(params), cfg
    if mutation.startswith("causal"):
        mcfg = ModelConfig(vocab=4, d_model=5, d_head=2, pos=pos, attention="causal")
    elif mutation.startswith("t5"):
        mparams["t5_bias"] = params["t5_bias"].flip(-1)  # b'(δ) = b(−δ)
    elif mutation.startswith("alibi"):
        mcfg = ModelConfig(vocab=4, d_model=5, d_head=2, pos="t5")
        off = torch.arange(-(cfg.max_len - 1), cfg.max_len, dtype=torch.float64)
        mparams["t5_bias"] = (-(2.0**-8) * off)[None, None]  # −m (j − i): the sign of the offset kept
    else:
        mcfg = ModelConfig(vocab=4, d_model=5, d_head=2, pos=pos, absolute_kind="sinusoidal")
        del mparams["P"]
    out = forward(mparams, mcfg, tokens)
    bounds = rounding.forward_error_bounds(mparams, mcfg, tokens)
    r = checks.worst_entry(
        "meta",
        "logits",
        out.logits,
        oracles.to_tensor(exact["logits"]),
        bounds["logits"],
        error=oracles.abs_error(exact["logits"], out.logits),
    )
    assert not r.holds, r


def test_abs_error_and_to_tensor():
    with mpmath.workdps(50):
        exact = [[mpmath.mpf(1) / 3, None]]
    approx = torch.tensor([[1 / 3, float("-inf")]], dtype=torch.float64)
    err = oracles.abs_error(exact, approx)
    assert err[0, 1] == 0 and 0 < err[0, 0] < 2**-54
    assert oracles.to_tensor(exact)[0, 1] == float("-inf")
    with pytest.raises(ValueError, match="masked oracle entry must be -inf"):
        oracles.abs_error(exact, torch.tensor([[1 / 3, 0.0]], dtype=torch.float64))


def test_ks_helper_agrees_with_scipy_without_ties_and_handles_the_atom():
    rng = np.random.default_rng(0)
    x = rng.exponential(size=500)
    D, p = c0.ks_test_with_atom_at_zero(x, stats.expon.cdf)
    ref = stats.kstest(x, stats.expon.cdf, method="exact")
    assert D == pytest.approx(ref.statistic, abs=1e-15) and p == pytest.approx(ref.pvalue, rel=1e-9)
    # a 25% atom at 0 plus Exp(1): right law -> not rejected; scipy's tie-blind statistic would be ≥ 0.25
    y = np.where(rng.random(2000) < 0.25, 0.0, rng.exponential(size=2000))
    cdf = lambda v: np.where(np.asarray(v) >= 0, 0.25 + 0.75 * stats.expon.cdf(v), 0.0)  # noqa: E731
    D, p = c0.ks_test_with_atom_at_zero(y, cdf)
    assert D < 0.05 and p > 1e-3
    assert stats.kstest(y, cdf).statistic >= 0.24
