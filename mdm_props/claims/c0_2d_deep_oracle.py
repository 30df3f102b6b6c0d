"""C0.2d — the deep block pinned by its 50-digit oracle (THEORY §2b; kind "identity").

The float64 deep block of :func:`mdm_props.model.forward` (RMSNorm with its epsilon under the square root
and its gains, SwiGLU MLP, grouped-query attention, q/k/v biases, RoPE with interleaved or half-split
pairs, ALiBi, T5, NoPE, causal or bidirectional attention, read-out offset, final norm, tied or untied
head, 1–4 layers, the three presets) agrees with :func:`mdm_props.oracles.stable_deep_oracle` (50 digits,
confirmed at 100; written from THEORY §2b's equations, sharing no code with the model: it imports
``ModelConfig`` only) on the logits and log-probabilities of every slot, within a derived rounding bound.
C0.2 pins the one-layer model; an invariance (C5, C9) holds for a wrong deep block too, this does not.

The bound (:func:`deep_oracle_bound`). Write the float64 forward pass as operations ``v_k = f_k(v_<k)``
and its computed values as ``v̂_k = f_k(v̂_<k) + ε_k``, ``|ε_k| ≤ own_k``, where ``own_k`` is the operation's
own rounding under the standard model (Higham §2–3: ``fl(a ∘ b) = (a ∘ b)(1 + δ)``, ``|δ| ≤ u = 2⁻⁵³``; a
sum or dot of n terms in any order within ``γ_n Σ|terms|``; exp, log, rsqrt, sin, cos, pow within 2 ulp),
evaluated at the computed arguments (:mod:`mdm_props.rounding_mode`'s rules with exact inputs). To first
order ``y(ε) − y(0) = Σ_k (∂y/∂v_k) ε_k``, so for every output entry ``j``

    |fl(y_j) − y_j| ≤ SAFETY · Σ_k |∂y_j/∂v_k| · own_k,      SAFETY = 2,

the adjoint (first-order forward error) bound of :func:`mdm_props.rounding_mode.adjoint_error_bounds_batch`
(one vector-Jacobian product per output entry). ``y`` = (logits, log-probabilities), shape (2, T, V). The
reference ``y_j`` is the same computation in exact arithmetic on the same float64 inputs and on the
constants the code uses as Python doubles (``norm_eps``, ``branch_scale``, ``fl(√d_k)``); the constants the
code *computes* (RoPE frequencies, ALiBi slopes, sinusoidal positions) are computed by taped torch
operations, so their rounding is among the ``ε_k``, and the oracle holds them exact. SAFETY 2
(:data:`mdm_props.rounding.FORWARD_SAFETY`) covers the dropped O(u²) terms and kernels that round once
more than modelled; it is stated, not fitted. The error ``|fl(y_j) − y_j|`` is computed exactly in mpmath
(:func:`mdm_props.oracles.abs_error`) against the oracle (100 digits, so its own error is ~1e-90), and
compared with the bound in absolute form (no rounding of the reference enters).

Measured (CPU, the 12 default draws of seeds 0 and 1 and the fixed draws of the meta-tests): the worst
error/bound of a draw lies in 1.7e-3 … 1.7e-2; where the logits are of order one the bound is 1.4e-14 …
5.5e-13 of the largest |logit| (7e-12 on a no-norm SwiGLU stack whose logits reach 3.6e6); a value moved
by three bounds, or parameters rounded to float32, are rejected (``tests/test_c0_deep_oracle.py``). The
default verify row takes about 2.5 s on 2 shared cores (1 s of it the process's first ``vmap``), the
control 0.3 s.

Draws (:func:`deep_oracle_case`): draw ``i`` of a run uses structure ``i mod len(STRUCTURES)`` (12
structures: every relative encoding, both RoPE pairings, GQA and plain heads, each preset at a small
width, 1–4 layers, biases, tied and untied head, final norm, causal and bidirectional), with a random
parameter seed and scale and random tokens (the mask among them); so the default run (12 draws) covers
every structure.

Negative control ``C0.2d~planted`` (:func:`c02d_planted`): a float64 block with one wrong component
(:data:`PLANTS`: epsilon outside the square root, gains ignored, gate and up swapped, query head h on kv
head h mod K instead of h // (H/K), the other RoPE pairing, the other read-out offset, final norm
skipped, untied head ignored, q/k or value bias dropped) compared with the same oracle and bound: every
plant must fail on every draw where it changes the block.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from unittest import mock

import torch

from .. import model as model_module
from .. import oracles
from ..checks import CheckResult, Counterexample, NegativeControl, worst_entry
from ..model import ModelConfig, forward, preset
from ..params import init_params, resolve_device
from ..rounding import FORWARD_SAFETY
from ..rounding_mode import adjoint_error_bounds_batch
from ..search import runner_rng
from ..strategies import MAX_SEED
from ..validation import require_choice, require_int, require_seed

CLAIM = "C0.2d"
SAFETY = FORWARD_SAFETY  # 2: the stated safety factor of the adjoint bound (module docstring)
QUANTITIES = ("logits", "logprobs")

# ---------------------------------------------------------------------------------------------
# the structures: draw i of a run uses STRUCTURES[i % len(STRUCTURES)]

_SMALL = dict(vocab=6, d_model=8, d_head=4, d_mlp=12)
_PRESET_WIDTH = dict(vocab=6, d_model=8, d_mlp=16)  # the presets keep d_head 4 and 4 heads (dream: 2 kv heads)


@dataclass(frozen=True)
class Structure:
    """One structure of the grid: a name, the ModelConfig fields (or a preset and its overrides) and the
    sequence length T."""

    name: str
    fields: dict
    T: int
    preset: str | None = None

    def config(self) -> ModelConfig:
        if self.preset is not None:
            return preset(self.preset, **self.fields)
        return ModelConfig(**self.fields)


STRUCTURES: tuple[Structure, ...] = (
    Structure("rope-interleaved-plain-1L", dict(_SMALL, n_heads=2, pos="rope", norm="rms"), 4),
    Structure("llada-like-2L", dict(_PRESET_WIDTH, n_layers=2), 4, "llada-like"),
    Structure(
        "t5-gqa-swiglu-2L",
        dict(_SMALL, n_heads=2, n_kv_heads=1, n_layers=2, pos="t5", norm="rms", mlp="swiglu", final_norm=True),
        5,
    ),
    Structure(
        "alibi-untied-offset-3L",
        dict(_SMALL, n_heads=2, n_layers=3, pos="alibi", mlp="swiglu", tied=False, readout_offset=1),
        4,
    ),
    Structure("dream-like-2L", dict(_PRESET_WIDTH, n_layers=2), 5, "dream-like"),
    Structure(
        "none-qkbias-4L",
        dict(_SMALL, n_heads=2, n_kv_heads=1, n_layers=4, pos="none", norm="rms", qk_bias=True, final_norm=True),
        4,
    ),
    Structure(
        "rope-half-split-gqa-biases-2L",
        dict(
            _SMALL,
            n_heads=4,
            n_kv_heads=2,
            n_layers=2,
            pos="rope",
            rope_pairing="half-split",
            merged_ov=False,
            qk_bias=True,
            v_bias=True,
            norm="rms",
            mlp="swiglu",
            final_norm=True,
            tied=False,
        ),
        5,
    ),
    Structure("smdm-like-1L", dict(_PRESET_WIDTH, n_layers=1), 4, "smdm-like"),
    Structure(
        "rope-interleaved-gqa-causal-4L",
        dict(
            _SMALL,
            n_heads=4,
            n_kv_heads=2,
            n_layers=4,
            pos="rope",
            rope_base=100.0,
            attention="causal",
            norm="rms",
            mlp="swiglu",
            branch_scale=0.5,
        ),
        4,
    ),
    Structure(
        "rope-half-split-final-norm-untied-3L",
        dict(
            _SMALL,
            n_heads=2,
            n_layers=3,
            pos="rope",
            rope_pairing="half-split",
            rope_base=5e5,
            final_norm=True,
            tied=False,
            qk_bias=True,
            readout_offset=1,
        ),
        5,
    ),
    Structure(
        "t5-factored-vbias-gqa-4L",
        dict(
            _SMALL,
            n_heads=4,
            n_kv_heads=2,
            n_layers=4,
            pos="t5",
            merged_ov=False,
            v_bias=True,
            norm="rms",
            mlp="swiglu",
            tied=False,
        ),
        3,
    ),
    Structure(
        "alibi-causal-norms-1L",
        dict(
            _SMALL, n_heads=2, pos="alibi", attention="causal", norm="rms", mlp="swiglu", final_norm=True, qk_bias=True
        ),
        5,
    ),
)
SCALES = (0.5, 1.0, 2.0)


@dataclass(frozen=True)
class DeepOracleCase:
    """A C0.2d draw: the structure (by index into :data:`STRUCTURES`), the parameter seed and scale, the tokens."""

    structure: int
    seed: int
    scale: float
    tokens: tuple[int, ...]

    @property
    def cfg(self) -> ModelConfig:
        return STRUCTURES[self.structure].config()

    def params(self, device="cpu") -> dict:
        return init_params(self.cfg, self.seed, scale=self.scale, device=device)

    def args(self, device="cpu") -> tuple:
        """``(params, cfg, tokens)``: the arguments of :func:`deep_oracle_checks`."""
        return self.params(device), self.cfg, self.tokens

    def describe(self) -> dict:
        return {
            "structure": STRUCTURES[self.structure].name,
            "seed": self.seed,
            "scale": self.scale,
            "tokens": list(self.tokens),
        }


def deep_oracle_case(choose: Callable, seed: int, structure: int) -> DeepOracleCase:
    """The draw on structure ``structure`` (an index into :data:`STRUCTURES`): ``choose(options)`` picks
    the scale and the tokens (``random.Random.choice``, or ``st.sampled_from`` under Hypothesis); ``seed``
    seeds the parameters. Tokens are ids 0 … V (V the mask), the first two distinct (so that a read-out
    offset is visible whatever the encoding)."""
    if isinstance(structure, bool) or not isinstance(structure, int) or not 0 <= structure < len(STRUCTURES):
        raise ValueError(f"structure must be an integer in [0, {len(STRUCTURES) - 1}]; got {structure!r}")
    s = STRUCTURES[structure]
    ids = tuple(range(s.config().vocab + 1))
    first = choose(ids)
    tokens = (first, choose(tuple(t for t in ids if t != first))) + tuple(choose(ids) for _ in range(s.T - 2))
    return DeepOracleCase(structure, seed, choose(SCALES), tokens)


def sample_case(rng: random.Random, structure: int) -> DeepOracleCase:
    """:func:`deep_oracle_case` driven by a ``random.Random``."""
    return deep_oracle_case(rng.choice, rng.randint(0, MAX_SEED), structure)


def recorded_case(draw) -> DeepOracleCase:
    """The :class:`DeepOracleCase` a runner recorded (``details["draw"]``, :meth:`DeepOracleCase.describe`),
    read back as data: every field checked (a ValueError names the field and what is allowed)."""
    if not isinstance(draw, dict):
        raise ValueError(f"the draw must be a JSON object written by describe(); got {type(draw).__name__}")
    fields = {"structure", "seed", "scale", "tokens"}
    if set(draw) != fields:
        raise ValueError(f"a C0.2d draw has exactly the fields {sorted(fields)}; got {sorted(draw)}")
    names = [s.name for s in STRUCTURES]
    index = names.index(require_choice("draw['structure']", draw["structure"], tuple(names)))
    seed = require_seed("draw['seed']", draw["seed"], maximum=MAX_SEED)
    scale = draw["scale"]
    if isinstance(scale, bool) or scale not in SCALES:
        raise ValueError(f"draw['scale'] must be one of {', '.join(map(str, SCALES))}; got {scale!r}")
    s, tokens = STRUCTURES[index], draw["tokens"]
    vocab = s.config().vocab
    if not isinstance(tokens, list) or len(tokens) != s.T:
        raise ValueError(f"draw['tokens'] must be a list of {s.T} token ids for structure {s.name!r}; got {tokens!r}")
    ids = tuple(require_int("draw['tokens'] entry", t, minimum=0, maximum=vocab) for t in tokens)
    return DeepOracleCase(index, seed, float(scale), ids)


def RECORDED_ARGS(draw):  # noqa: N802  (the name mdm_props.recorded_draws looks up)
    """``device -> (params, cfg, tokens)`` for a recorded draw (:func:`recorded_case`)."""
    case = recorded_case(draw)
    return case.args


# ---------------------------------------------------------------------------------------------
# the float64 side and its bound


def _outputs(params: dict, cfg: ModelConfig, tokens: torch.Tensor) -> torch.Tensor:
    """(2, T, V): the logits and log-probabilities of every slot (the model's forward, ``checked=True``)."""
    logits = forward(params, cfg, tokens, checked=True).logits
    return torch.stack((logits, torch.log_softmax(logits, dim=-1)))


def deep_oracle_bound(params: dict, cfg: ModelConfig, tokens) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, bound)``, each (2, T, V): the float64 logits and log-probabilities and their first-order
    forward error bound SAFETY · Σ_k |∂y_j/∂v_k| own_k (module docstring), by
    :func:`mdm_props.rounding_mode.adjoint_error_bounds_batch` on a batch of one draw."""
    model_module.require_params(params, cfg)
    tok = torch.as_tensor(list(tokens), device=params["E"].device)
    model_module.require_token_ids(tok, cfg)
    values, bound = adjoint_error_bounds_batch(
        lambda p: _outputs(p, cfg, tok), {k: v[None] for k, v in params.items()}, safety=SAFETY
    )
    return values[0], bound[0]


def _compare(exact: dict, values: torch.Tensor, bound: torch.Tensor, **details) -> list[CheckResult]:
    out = []
    for n, name in enumerate(QUANTITIES):
        err = oracles.abs_error(exact[name], values[n]).to(bound.device)
        out.append(worst_entry(CLAIM, name, values[n], oracles.to_tensor(exact[name]), bound[n], error=err, **details))
    return out


def deep_oracle_checks(
    params: dict, cfg: ModelConfig, tokens, *, exact: dict | None = None, **details
) -> list[CheckResult]:
    """C0.2d on one draw: the float64 logits and log-probabilities of every slot against the 50-digit deep
    oracle (:func:`mdm_props.oracles.stable_deep_oracle`, confirmed at 100 digits), each within
    :func:`deep_oracle_bound`, reported at the worst entry (largest error/bound). ``exact`` (an oracle
    result for the same draw) skips the oracle evaluation."""
    tokens = [int(t) for t in (tokens.tolist() if isinstance(tokens, torch.Tensor) else tokens)]
    values, bound = deep_oracle_bound(params, cfg, tokens)
    if exact is None:
        exact = oracles.stable_deep_oracle(params, cfg, tokens)
    return _compare(exact, values, bound, **details)


def run_c02d(draws: int, seed: int, device: str = "cpu") -> list[CheckResult]:
    """C0.2d on ``draws`` seeded draws, draw i on structure i mod len(STRUCTURES) (the default 12 cover
    every structure once)."""
    rng = runner_rng(draws, seed)
    resolve_device(device)
    out = []
    for i in range(draws):
        case = sample_case(rng, i % len(STRUCTURES))
        out += deep_oracle_checks(*case.args(device), draw=case.describe())
    return out


# ---------------------------------------------------------------------------------------------
# the negative control: planted wrong components


def _rms_norm_eps_outside(x: torch.Tensor, gain: torch.Tensor, eps: float) -> torch.Tensor:
    """The planted norm: x / (√mean(x²) + eps) ⊙ gain (epsilon outside the square root)."""
    return x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps) * gain


def _ones_gains(params: dict, cfg: ModelConfig):
    return {k: (torch.ones_like(v) if k in model_module.NORM_GAINS else v) for k, v in params.items()}, cfg


def _swap_gate_up(params: dict, cfg: ModelConfig):
    return {**params, "W_gate": params["W_up"], "W_up": params["W_gate"]}, cfg


def _modulo_grouping(params: dict, cfg: ModelConfig):
    """Query head h on kv head h mod K (``repeat``) instead of h // (H/K) (``repeat_interleave``): the kv
    parameters tiled to H heads and run as plain heads."""
    group = cfg.n_heads // cfg.kv_heads
    tiled = {
        k: params[k].repeat(1, group, *([1] * (params[k].dim() - 2)))
        for k in ("W_K", "b_K", "W_V", "b_V")
        if k in params
    }
    return {**params, **tiled}, dataclasses.replace(cfg, n_kv_heads=None)


def _replace(**fields):
    return lambda params, cfg: (params, dataclasses.replace(cfg, **fields))


@dataclass(frozen=True)
class Plant:
    """A planted wrong component: ``applies(cfg, tokens)`` says whether it changes this draw's block;
    ``change(params, cfg)`` gives the parameters and structure the wrong block runs on; ``norm`` replaces
    :func:`mdm_props.model.rms_norm` while it runs (None: the model's)."""

    name: str
    applies: Callable[[ModelConfig, tuple], bool]
    change: Callable = staticmethod(lambda params, cfg: (params, cfg))
    norm: Callable | None = None

    def logits(self, params: dict, cfg: ModelConfig, tokens) -> torch.Tensor:
        """(2, T, V): the wrong block's logits and log-probabilities."""
        p, c = self.change(params, cfg)
        tok = torch.as_tensor(list(tokens), device=params["E"].device)
        with mock.patch.object(model_module, "rms_norm", self.norm) if self.norm else nullcontext():
            return _outputs(p, c, tok)


def _normed(cfg: ModelConfig, tokens) -> bool:
    return cfg.norm == "rms" or cfg.final_norm


PLANTS: tuple[Plant, ...] = (
    Plant("norm epsilon outside the square root", _normed, norm=_rms_norm_eps_outside),
    Plant("norm gains ignored", _normed, _ones_gains),
    Plant("MLP gate and up swapped", lambda c, t: c.mlp == "swiglu", _swap_gate_up),
    Plant("query head h on kv head h mod K", lambda c, t: 1 < c.kv_heads < c.n_heads, _modulo_grouping),
    Plant(
        "the other RoPE pairing",
        lambda c, t: c.pos == "rope" and c.d_head >= 4,
        lambda p, c: (
            p,
            dataclasses.replace(c, rope_pairing="half-split" if c.rope_pairing == "interleaved" else "interleaved"),
        ),
    ),
    Plant(
        "the other read-out offset",
        lambda c, t: len(t) >= 2,
        lambda p, c: (p, dataclasses.replace(c, readout_offset=1 - c.readout_offset)),
    ),
    Plant("final norm skipped", lambda c, t: c.final_norm, _replace(final_norm=False)),
    Plant("untied head ignored (U = E[:V])", lambda c, t: not c.tied, _replace(tied=True)),
    Plant("q/k biases dropped", lambda c, t: c.qk_bias, _replace(qk_bias=False)),
    Plant("value bias dropped", lambda c, t: c.v_bias, _replace(v_bias=False)),
)
# the control's draws: the presets first (dream-like changes under every plant), then the rest
CONTROL_ORDER = tuple(
    sorted(range(len(STRUCTURES)), key=lambda i: (STRUCTURES[i].preset is None, STRUCTURES[i].preset != "dream-like"))
)


def planted_checks(
    params: dict, cfg: ModelConfig, tokens, plant: Plant, exact: dict, bound: torch.Tensor
) -> list[CheckResult]:
    """C0.2d's comparison for the block with ``plant``: its values against the oracle ``exact`` within the
    draw's bound (that of the right block)."""
    return _compare(exact, plant.logits(params, cfg, tokens), bound, plant=plant.name)


def c02d_planted(draws: int, seed: int, device: str = "cpu") -> Counterexample:
    """Every plant of :data:`PLANTS` on ``draws`` draws (structures in :data:`CONTROL_ORDER`), each against
    the 50-digit oracle (one evaluation, no 100-digit confirmation: the errors sought are ≫ 1e-40) within
    the right block's bound. Found when every plant fails C0.2d on every draw it changes, and each plant
    changed at least one draw; the example lists, per plant, its smallest error/bound over those draws."""
    rng = runner_rng(draws, seed)
    resolve_device(device)
    weakest: dict[str, float] = {}
    missed: list[str] = []
    for i in range(draws):
        case = sample_case(rng, CONTROL_ORDER[i % len(CONTROL_ORDER)])
        params, cfg, tokens = case.args(device)
        _, bound = deep_oracle_bound(params, cfg, tokens)
        exact = oracles.oracle_deep_forward(params, cfg, tokens)
        for plant in PLANTS:
            if not plant.applies(cfg, tokens):
                continue
            ratio = max(r.error_ratio for r in planted_checks(params, cfg, tokens, plant, exact, bound))
            weakest[plant.name] = min(weakest.get(plant.name, math.inf), ratio)
            if ratio <= 1:
                missed.append(f"{plant.name} on {case.describe()}")
    unused = [p.name for p in PLANTS if p.name not in weakest]
    found = not missed and not unused
    example: dict[str, object] = {"smallest error/bound per plant": weakest}
    if missed:
        example["missed"] = missed
    if unused:
        example["no draw changed by"] = unused
    return Counterexample(
        CLAIM,
        "the right deep block (one component planted wrong)",
        found,
        draws,
        example,
        min(weakest.values(), default=math.nan),
    )


NEGATIVE_CONTROLS = [
    NegativeControl(
        "C0.2d~planted",
        CLAIM,
        "the right deep block (one component planted wrong)",
        "each planted wrong component (norm epsilon, gains, gate/up, head grouping, RoPE pairing, read-out "
        "offset, final norm, untied head, biases) moves the logits far beyond the bound",
        c02d_planted,
        3,
    ),
]


# ---------------------------------------------------------------------------------------------
# the registry row (collected by mdm_props.registry)

from ..registry import Claim  # noqa: E402  (the rows sit at the end of the module, as in every claim module)

_M = __name__ + ":"
CLAIMS = (
    Claim(
        id=CLAIM,
        title="float64 deep block (logits, log-probs) against the 50-digit deep oracle",
        kind="identity",
        hypotheses=(),
        statement="The logits and log-probabilities of every slot of the deep block (RMSNorm, SwiGLU, GQA, q/k/v "
        "biases, both RoPE pairings, read-out offset, final norm, tied and untied head, 1–4 layers, the presets) "
        "agree with an independent 50-digit mpmath evaluation within the derived adjoint rounding bound (safety 2).",
        doc="claims/C0-oracles.md",
        checker=_M + "deep_oracle_checks",
        runner=_M + "run_c02d",
        bounds=(_M + "deep_oracle_bound", "mdm_props.rounding_mode:adjoint_error_bounds_batch"),
        tests="tests/test_c0_deep_oracle.py",
        needs_negative_control=True,
        default_draws=len(STRUCTURES),
    ),
)
