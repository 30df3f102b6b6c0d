"""C5 — the reverse query is the forward query at a reflected route (THEORY §2b; identity, any depth).

Under H-bi, read-out offset 0, a mirror-symmetric template (``a + b = T − 1``, fillers read the same
backwards: the reverse sequence is the forward one read backwards) and a relative encoding, for every
θ of the deep block (any depth, norms, SwiGLU, GQA, biases, tied or not)::

    log p_r(· | θ) = log p_f(· | Φθ),     ∇L_r(θ) = Φ ∇L_f(Φθ),     C5b  ∇_S L_r(θ) = ∇_S L_f(Φθ),

with Φ a linear orthogonal involution (:func:`reflect`): RoPE ``W_Q, W_K ← J W_Q, J W_K`` per head and
``b_Q, b_K ← J b`` (J = −1 on the second coordinate of every rotation pair, ``J R_δ J = R_{−δ}``);
``alibi``/``none``: Φ = id; ``t5``: ``b(δ) ↔ b(−δ)``; ``absolute`` (learned): Φ_abs reverses the first T
rows of P. Proof sketch: mirroring positions ``i ↦ T − 1 − i`` negates every offset ``j − i``; Φ undoes
that in the scores and leaves every position-free computation as it is.

C5b (the point): Φ fixes every storage parameter (everything the value path, MLP, norms and head read),
so at any depth the reverse query reads the storage the forward query writes. Under ``absolute`` the
value path reads P, which Φ_abs moves: the loss identity holds, C5b fails (a negative control).

Tolerance (derived, :mod:`mdm_props.rounding_mode`): both sides are float64 evaluations of the same
exact number (Φ is exact in float64: sign flips, flips, row reversal), so ``|lhs − rhs| ≤ e_lhs + e_rhs``
with each side's first-order error bound (× SAFETY 2): for log p the adjoint bound Σ_k |∂y/∂v_k| own_k
(:func:`~mdm_props.rounding_mode.adjoint_error_bounds`, within 50–1000× of the 50-digit oracle's error),
for gradients the running radii of every aten operation, forward and autograd backward
(:func:`~mdm_props.rounding_mode.with_error_bounds`; sound, loose on deep blocks). Margins:
``1 − error/tolerance``.

Batched (docs/claims/C5-reflected-route.md): the quantities (:func:`c5_quantities_batch`) take K parameter
draws of one structure stacked on a leading axis (:mod:`mdm_props.claims.deep_batches`, shared with C9);
:func:`check_c5` is a batch of one. log p's bound is
:func:`~mdm_props.rounding_mode.adjoint_error_bounds_batch` (draw by draw the adjoint bound); the gradients'
radii are those of the ``vmap``-ed forward and autograd backward pass. The runners take
:data:`~mdm_props.claims.deep_batches.PER_STRUCTURE` draws per structure, the structures covering every value
of :data:`COVERAGE` (:func:`c5_batches`), and record each draw in full (:func:`describe`) for
``verify --replay`` (:func:`recorded_case`, :data:`RECORDED_ARGS`).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

import torch

from ..checks import CheckResult, Counterexample, NegativeControl
from ..claim import WorstEntry, evaluate_checks
from ..facts import Template, forward_query, reverse_query
from ..model import RELATIVE_ENCODINGS, ModelConfig, forward, preset, rope_reflection, storage_parameters
from ..params import check_params, init_params, resolve_device
from ..rounding_mode import adjoint_error_bounds, with_error_bounds
from ..search import search
from ..validation import require_int, require_seed
from .deep_batches import (
    DRAWN_SCALES,
    MAX_SEED,
    PER_STRUCTURE,
    TINY,
    StructureBatch,
    check_batch,
    flat_batch,
    gradient_state_batch,
    logprob_state_batch,
    run_batches,
    stacked,
    structure_batches,
)

# the deep case's own block (half the draws: it varies every option and encoding) or a preset at its depth
BLOCKS = ("drawn", "drawn", "llada-like", "smdm-like")
RUN_MAX_LAYERS = 4  # the runners draw depth 1 … 4


# ---------------------------------------------------------------------------------------------
# the mirror and the reflection Φ


def is_mirror_symmetric(template: Template) -> bool:
    """a + b = T − 1 and the fillers read the same backwards (slot i holds the filler of slot T − 1 − i)."""
    T = template.length
    if template.a + template.b != T - 1:
        return False
    seq = template.sequence(-1, -2)
    return all(seq[i] == seq[T - 1 - i] for i in range(T) if i not in (template.a, template.b))


def mirror_template(length: int, a: int, half_fillers) -> Template:
    """The mirror-symmetric template of ``length`` with A in slot a, B in slot T − 1 − a, and the fillers
    ``half_fillers`` (one per filler slot left of the middle, plus the middle one when there is one)
    mirrored to the right."""
    T, b = length, length - 1 - a
    if not 0 <= a < b:
        raise ValueError(f"a must satisfy 0 <= a < length - 1 - a; got a={a}, length={length}")
    left = [i for i in range(T) if i not in (a, b) and i <= T - 1 - i]
    if len(half_fillers) != len(left):
        raise ValueError(f"half_fillers must hold {len(left)} ids for length={length}, a={a}; got {len(half_fillers)}")
    slot = dict(zip(left, half_fillers, strict=False))
    slot.update({T - 1 - i: f for i, f in zip(left, half_fillers, strict=False)})
    return Template(T, a, b, tuple(slot[i] for i in range(T) if i not in (a, b)))


def reflect(params: dict, cfg: ModelConfig, length: int | None = None, *, absolute: bool = True) -> dict:
    """Φθ (also Φ applied to a gradient or any dict shaped like the parameters: Φ is linear).

    rope: J on the rows of every head's W_Q, W_K and on b_Q, b_K; t5: the bias table reversed
    (b(δ) ↔ b(−δ)); alibi, none: identity; absolute (learned): the first ``length`` rows of P reversed
    (Φ_abs; ``absolute=False`` gives Φ = id there instead, a negative control)."""
    out = dict(params)
    if cfg.pos == "rope":
        J = rope_reflection(cfg.d_head, cfg.rope_pairing, device=params["W_Q"].device)
        for name in ("W_Q", "W_K"):
            out[name] = params[name] * J[:, None]
        for name in ("b_Q", "b_K"):
            if name in params:
                out[name] = params[name] * J
    elif cfg.pos == "t5":
        out["t5_bias"] = params["t5_bias"].flip(-1)
    elif cfg.pos == "absolute" and absolute:
        if cfg.absolute_kind != "learned":
            raise ValueError(
                "cfg.absolute_kind must be 'learned' for Φ_abs (sinusoidal positions have no parameter to reflect)"
            )
        if length is None:
            raise ValueError("length (the template length T) is required for Φ_abs under absolute positions")
        P = params["P"]
        out["P"] = torch.cat((P[:length].flip(0), P[length:]))
    return out


def reflect_batch(params: dict, cfg: ModelConfig, length: int) -> dict:
    """Φθ (:func:`reflect`) for each of K stacked draws (or stacked gradients)."""
    return torch.func.vmap(lambda p: reflect(p, cfg, length))(params)


def value_read_parameters(cfg: ModelConfig) -> tuple[str, ...]:
    """The storage S of C5b: the position-free parameters, and under ``absolute`` also P (the value path
    reads the position vectors)."""
    names = storage_parameters(cfg)
    return names + ("P",) if cfg.pos == "absolute" and cfg.absolute_kind == "learned" else names


# ---------------------------------------------------------------------------------------------
# one side: log-probabilities at a slot and the gradient of −log p(target), with bounds


def query_state(params: dict, cfg: ModelConfig, tokens, slot: int, target: int) -> dict:
    """The unbatched per-draw evaluation (the reference the 50-digit oracle meta-tests compare with; the
    checker and runners use :func:`c5_quantities_batch`): ``logp`` (V,) at ``slot`` with its first-order
    error bound ``e_logp`` (the adjoint bound,
    :func:`mdm_props.rounding_mode.adjoint_error_bounds`), and ``grad`` (dict) of −log p(target) by autograd
    with its running-error bound ``e_grad`` (:func:`mdm_props.rounding_mode.with_error_bounds`)."""
    device = params["E"].device
    tok = torch.as_tensor(tokens, dtype=torch.long, device=device)
    plain = {k: v.detach() for k, v in params.items()}
    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}

    def run():
        with torch.enable_grad():
            logp = torch.log_softmax(forward(leaves, cfg, tok).logits[slot], dim=-1)
            grads = torch.autograd.grad(-logp[target], list(leaves.values()), allow_unused=True)
        return dict(zip(leaves, grads, strict=False))

    logp, e_logp = adjoint_error_bounds(lambda: torch.log_softmax(forward(plain, cfg, tok).logits[slot], dim=-1))
    grad, e_grad = with_error_bounds(run)
    zero = {k: torch.zeros_like(v) for k, v in params.items()}
    grad = {k: zero[k] if g is None else g for k, g in grad.items()}
    e_grad = {k: zero[k] if g is None else g for k, g in e_grad.items()}
    return {"logp": logp, "e_logp": e_logp, "grad": grad, "e_grad": e_grad}


# ---------------------------------------------------------------------------------------------
# C5 and C5b declared once: the quantities for K parameter draws of one structure (a leading draw axis;
# the per-draw checker is a batch of one, :mod:`mdm_props.claims.deep_batches`) and the checks as data

QUANTITY_PARTS = ("logp", "gradient", "storage")
PHIS = ("reflect", "identity")


def c5_quantities_batch(
    params: dict,
    cfg: ModelConfig,
    template: Template,
    A: int,
    B: int,
    *,
    phi: str = "reflect",
    forward_slot: int | None = None,
    parts=QUANTITY_PARTS,
) -> dict:
    """For K stacked draws ``params`` of one structure (``parts`` picks what is computed):

    ``logp``: ``lhs`` = log p_r(·|θ), ``rhs`` = log p_f(·|Φθ) (K, V), ``tol`` = e_lhs + e_rhs (the adjoint
    bounds); ``gradient``: ``g_r`` = ∇L_r(θ), ``g_f`` = Φ∇L_f(Φθ) (K, |θ|), ``tol_g`` = e_r + |Φ e_f| (the
    running radii); ``storage``: ``s_r`` = ∇_S L_r(θ), ``s_f`` = ∇_S L_f(Φθ) on the storage S
    (:func:`value_read_parameters`), ``tol_s`` = e_r + e_f. ``phi="identity"`` uses Φ = id (a negative
    control under ``absolute``); ``forward_slot`` reads the forward conditional at another slot."""
    if phi not in PHIS:
        raise ValueError(f"phi must be one of {', '.join(map(repr, PHIS))}; got {phi!r}")
    if not parts or not set(parts) <= set(QUANTITY_PARTS):
        raise ValueError(f"parts must be a non-empty subset of {QUANTITY_PARTS}; got {parts!r}")
    check_batch(params, cfg)
    V, T = cfg.vocab, template.length
    fq, rq = forward_query(template, A, B, V), reverse_query(template, A, B, V)
    slot = fq.slot if forward_slot is None else forward_slot
    if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < T:
        raise ValueError(f"forward_slot must be a position in [0, {T - 1}]; got {forward_slot!r}")
    Phi = (lambda d: reflect_batch(d, cfg, T)) if phi == "reflect" else (lambda d: dict(d))  # noqa: E731
    phi_params = Phi(params)
    S = list(value_read_parameters(cfg))
    out: dict = {"pos": cfg.pos, "n_layers": cfg.n_layers, "phi": phi, "forward_slot": slot, "storage": S}
    if "logp" in parts:
        lhs, e_lhs = logprob_state_batch(params, cfg, rq.tokens, [rq.slot])
        rhs, e_rhs = logprob_state_batch(phi_params, cfg, fq.tokens, [slot])
        out.update(lhs=lhs[:, 0], rhs=rhs[:, 0], tol=(e_lhs + e_rhs)[:, 0].clamp_min(TINY))
    if "gradient" in parts or "storage" in parts:
        names = list(params) if "gradient" in parts else S
        g_r, e_r = gradient_state_batch(params, cfg, rq.tokens, [rq.slot], [A], names)
        g_f, e_f = gradient_state_batch(phi_params, cfg, fq.tokens, [slot], [A], names)
        if "gradient" in parts:
            phi_g = Phi({**params, **g_f})  # Φ acts on a full parameter-shaped dict
            phi_e = Phi({**params, **e_f})
            out.update(
                g_r=flat_batch(g_r, names),
                g_f=flat_batch(phi_g, names),
                tol_g=(flat_batch(e_r, names) + flat_batch(phi_e, names).abs()).clamp_min(TINY),
            )
        if "storage" in parts:
            out.update(
                s_r=flat_batch(g_r, S),
                s_f=flat_batch(g_f, S),
                tol_s=(flat_batch(e_r, S) + flat_batch(e_f, S)).clamp_min(TINY),
            )
    return out


def c5_quantities(params: dict, cfg: ModelConfig, template: Template, A: int, B: int, **options) -> dict:
    """:func:`c5_quantities_batch` for one draw (a leading draw axis of one)."""
    check_params(params, cfg)
    return c5_quantities_batch(stacked(params), cfg, template, A, B, **options)


_DETAILS = tuple((name, name) for name in ("pos", "n_layers", "phi", "forward_slot"))
C5_CHECKS = (
    WorstEntry("log p", "log p_r(·|θ) = log p_f(·|Φθ)", "lhs", "rhs", "tol", _DETAILS),
    WorstEntry("gradient", "∇L_r(θ) = Φ ∇L_f(Φθ)", "g_r", "g_f", "tol_g", _DETAILS),
)
C5B_CHECKS = (
    WorstEntry(
        "storage gradient",
        "∇_S L_r(θ) = ∇_S L_f(Φθ) (storage S fixed by Φ)",
        "s_r",
        "s_f",
        "tol_s",
        _DETAILS + (("storage", "storage"),),
    ),
)


def check_c5(params: dict, cfg: ModelConfig, template: Template, A: int, B: int, **options) -> list[CheckResult]:
    """C5 on one draw: ``log p_r(·|θ) = log p_f(·|Φθ)`` (worst token), ``∇L_r(θ) = Φ∇L_f(Φθ)`` (worst
    parameter entry) and C5b ``∇_S L_r(θ) = ∇_S L_f(Φθ)`` on the storage S (:func:`value_read_parameters`):
    :func:`c5_quantities_batch` on a batch of one.

    ``phi="identity"`` uses Φ = id instead (a negative control under ``absolute``); ``forward_slot``
    compares with the forward conditional at another slot (default: the query slot a)."""
    unknown = sorted(set(options) - {"phi", "forward_slot"})
    if unknown:
        raise ValueError(f"check_c5 takes the options phi and forward_slot; got {', '.join(unknown)}")
    values = c5_quantities(params, cfg, template, A, B, **options)
    return [c.result(0) for c in evaluate_checks("C5", C5_CHECKS, values)] + [
        c.result(0) for c in evaluate_checks("C5b", C5B_CHECKS, values)
    ]


# ---------------------------------------------------------------------------------------------
# draws: one chooser drives both Hypothesis (tests) and random.Random (runners, searches)


@dataclass(frozen=True)
class DeepCase:
    """A deep-block draw: structure (``block``: drawn, or the preset it is), parameter seed and scale, a
    template and a pair A ≠ B."""

    cfg: ModelConfig
    seed: int
    scale: float
    template: Template
    A: int
    B: int
    block: str = "drawn"

    def params(self, device="cpu") -> dict:
        return init_params(self.cfg, self.seed, scale=self.scale, device=device)

    def args(self, device="cpu") -> tuple:
        return self.params(device), self.cfg, self.template, self.A, self.B


def deep_case(
    choose,
    seed: int,
    *,
    pos=RELATIVE_ENCODINGS,
    attention: str = "bidirectional",
    readout_offset: int = 0,
    mirror: bool = True,
    max_layers: int = 4,
) -> DeepCase:
    """A draw for C5: ``choose(options)`` picks one of a sequence (``random.Random.choice``, or
    ``lambda o: draw(st.sampled_from(o))`` under Hypothesis, which shrinks to the first option); ``seed``
    seeds the parameters.

    Depth 1 … ``max_layers``, 1, 2 or 4 heads with every GQA ratio, norm, final norm, SwiGLU, q/k and v
    biases, merged or factored value path, tied or untied head, the encodings ``pos`` with either RoPE
    pairing, and a mirror-symmetric template of length 3 … 7 (``mirror=False``: "A r1 r2 … B" with
    r1 ≠ r2, which is not)."""
    p = choose(tuple(pos))
    n_heads = choose((1, 2, 4))
    kv = choose(tuple(k for k in (1, 2, 4) if n_heads % k == 0))
    merged = choose((True, False))
    V = choose((4, 5, 6, 8))
    cfg = ModelConfig(
        vocab=V,
        d_model=choose((4, 6, 8, 12)),
        d_head=choose((2, 4, 6)),
        n_heads=n_heads,
        n_layers=choose(tuple(range(1, max_layers + 1))),
        pos=p,
        rope_base=choose((1e4, 100.0, 5e5)),
        attention=attention,
        tied=choose((True, False)),
        merged_ov=merged,
        n_kv_heads=kv,
        norm=choose(("none", "rms")),
        final_norm=choose((False, True)),
        mlp=choose(("none", "swiglu")),
        d_mlp=choose((8, 12)),
        qk_bias=choose((False, True)),
        v_bias=False if merged else choose((False, True)),
        rope_pairing=choose(("interleaved", "half-split")),
        readout_offset=readout_offset,
    )
    A = choose(tuple(range(V)))
    B = choose(tuple(t for t in range(V) if t != A))
    free = tuple(t for t in range(V) if t not in (A, B))
    if mirror:
        T = choose((3, 4, 5, 6, 7))
        a = choose(tuple(range((T - 2) // 2 + 1)))  # a < b = T − 1 − a
        n_half = len([i for i in range(T) if i not in (a, T - 1 - a) and i <= T - 1 - i])
        template = mirror_template(T, a, tuple(choose(free) for _ in range(n_half)))
    else:
        r1 = choose(free)
        r2 = choose(tuple(t for t in free if t != r1))
        template = Template(4, 0, 3, (r1, r2))
    return DeepCase(cfg, seed, choose((1.0, 0.5, 2.0)), template, A, B)


def sample_deep_case(rng: random.Random, **kwargs) -> DeepCase:
    """:func:`deep_case` driven by a ``random.Random``."""
    return deep_case(rng.choice, rng.randint(0, MAX_SEED), **kwargs)


def c5_case(choose, seed: int, *, blocks=BLOCKS, max_layers: int = RUN_MAX_LAYERS, **kwargs) -> DeepCase:
    """A runner draw: :func:`deep_case` (``kwargs`` as there), then its block: the drawn structure or one
    of the presets at its depth (``blocks``; the presets are RoPE: drawn only when ``pos`` has rope), the
    template and pair kept (their token ids are below every preset's vocabulary, 8)."""
    base = deep_case(choose, seed, max_layers=max_layers, **kwargs)
    block = choose(tuple(b for b in blocks if b == "drawn" or "rope" in kwargs.get("pos", RELATIVE_ENCODINGS)))
    if block == "drawn":
        return base
    c = base.cfg
    cfg = preset(block, n_layers=c.n_layers, attention=c.attention, readout_offset=c.readout_offset)
    return dataclasses.replace(base, cfg=cfg, block=block)


def sample_c5_case(rng: random.Random, **kwargs) -> DeepCase:
    """:func:`c5_case` driven by a ``random.Random``."""
    return c5_case(rng.choice, rng.randint(0, MAX_SEED), **kwargs)


def structure_factors(cfg: ModelConfig, block: str) -> set[tuple[str, object]]:
    """The (factor, value) pairs a deep structure exhibits (the RoPE pairing only under RoPE)."""
    out = {
        ("n_layers", cfg.n_layers),
        ("pos", cfg.pos),
        ("block", block),
        ("n_heads", cfg.n_heads),
        ("group", cfg.n_heads // cfg.kv_heads),
        ("norm", cfg.norm),
        ("final_norm", cfg.final_norm),
        ("mlp", cfg.mlp),
        ("qk_bias", cfg.qk_bias),
        ("v_bias", cfg.v_bias),
        ("tied", cfg.tied),
        ("merged_ov", cfg.merged_ov),
    }
    return out | ({("rope_pairing", cfg.rope_pairing)} if cfg.pos == "rope" else set())


# every structural value a runner must examine at least once (given enough structures)
STRUCTURE_COVERAGE = frozenset(
    [("n_layers", n) for n in range(1, RUN_MAX_LAYERS + 1)]
    + [("pos", p) for p in RELATIVE_ENCODINGS]
    + [("block", b) for b in set(BLOCKS)]
    + [("n_heads", h) for h in (1, 2, 4)]
    + [("group", g) for g in (1, 2, 4)]
    + [("norm", n) for n in ("none", "rms")]
    + [("mlp", n) for n in ("none", "swiglu")]
    + [(f, v) for f in ("final_norm", "qk_bias", "v_bias", "tied", "merged_ov") for v in (False, True)]
    + [("rope_pairing", p) for p in ("interleaved", "half-split")]
)
TEMPLATE_LENGTHS = (3, 4, 5, 6, 7)


def _factors(case: DeepCase) -> set[tuple[str, object]]:
    """The (factor, value) pairs of a C5 draw: the structure's and the template length."""
    return structure_factors(case.cfg, case.block) | {("length", case.template.length)}


COVERAGE = STRUCTURE_COVERAGE | frozenset(("length", T) for T in TEMPLATE_LENGTHS)


def c5_batches(draws: int, seed: int, size: int = PER_STRUCTURE) -> list[StructureBatch]:
    """``draws`` seeded draws in ⌈draws/size⌉ structures of ``size`` parameter draws covering
    :data:`COVERAGE` (:func:`mdm_props.claims.deep_batches.structure_batches` over :func:`sample_c5_case`)."""
    return structure_batches(draws, seed, sample_c5_case, _factors, COVERAGE, size)


def _c5b_quantities_batch(params, cfg, template, A, B) -> dict:
    return c5_quantities_batch(params, cfg, template, A, B, parts=("storage",))


def _c5_quantities_batch(params, cfg, template, A, B) -> dict:
    return c5_quantities_batch(params, cfg, template, A, B, parts=("logp", "gradient"))


def run_c5(draws: int, seed: int, device: str = "cpu") -> list[CheckResult]:
    """C5 (log-probabilities and full gradient) on ``draws`` seeded draws, :data:`PER_STRUCTURE` per
    structure (:func:`c5_batches`: every relative encoding, RoPE pairing, GQA ratio, preset, depth 1–4)."""
    return run_batches("C5", c5_batches(draws, seed), _c5_quantities_batch, C5_CHECKS, describe, device)


def run_c5b(draws: int, seed: int, device: str = "cpu") -> list[CheckResult]:
    """C5b (storage gradients) on ``draws`` seeded draws (a stream of its own: seed + 1)."""
    batches = c5_batches(draws, require_seed("seed", seed) + 1)
    return run_batches("C5b", batches, _c5b_quantities_batch, C5B_CHECKS, describe, device)


# ---------------------------------------------------------------------------------------------
# negative controls: seeded searches for an O(1) violation once a hypothesis is dropped


# ---------------------------------------------------------------------------------------------
# a draw recorded in full (C5's and C9's runners), and read back as data for ``verify --replay``
# (mdm_props.recorded_draws looks up RECORDED_ARGS through the registry's runner module, never the report)

CONFIG_FIELDS = (
    "vocab",
    "d_model",
    "d_head",
    "n_heads",
    "n_kv_heads",
    "n_layers",
    "pos",
    "rope_base",
    "attention",
    "tied",
    "merged_ov",
    "norm",
    "final_norm",
    "mlp",
    "d_mlp",
    "qk_bias",
    "v_bias",
    "rope_pairing",
    "readout_offset",
)


# the options deep_case draws from (tests/test_c9.py checks that every drawn structure is within them)
DRAWN_OPTIONS = {
    "vocab": (4, 5, 6, 8),
    "d_model": (4, 6, 8, 12),
    "d_head": (2, 4, 6),
    "n_heads": (1, 2, 4),
    "n_kv_heads": (1, 2, 4),
    "n_layers": tuple(range(1, RUN_MAX_LAYERS + 1)),
    "rope_base": (1e4, 100.0, 5e5),
    "d_mlp": (8, 12),
    "pos": RELATIVE_ENCODINGS,
    "attention": ("bidirectional",),
    "readout_offset": (0,),
    "norm": ("none", "rms"),
    "mlp": ("none", "swiglu"),
    "rope_pairing": ("interleaved", "half-split"),
}
_BOOL_FIELDS = ("tied", "merged_ov", "final_norm", "qk_bias", "v_bias")
STRUCTURE_FIELDS = ("block",) + CONFIG_FIELDS + ("seed", "scale")
DRAW_FIELDS = STRUCTURE_FIELDS + ("template", "A", "B")


def describe_structure(case) -> dict:
    """A deep draw's block, every structural field :func:`deep_case` draws, its parameter seed and scale."""
    c = case.cfg
    config = {name: getattr(c, name) for name in CONFIG_FIELDS if name != "n_kv_heads"}
    return {"block": case.block, **config, "n_kv_heads": c.kv_heads, "seed": case.seed, "scale": case.scale}


def describe(case: DeepCase, **more) -> dict:
    """A draw as a plain dict (:func:`describe_structure`, the template [T, a, b, fillers], A, B): enough to
    re-create it (:func:`recorded_case`, ``verify --replay``)."""
    t = case.template
    return {
        **describe_structure(case),
        "template": [t.length, t.a, t.b, list(t.fillers)],
        "A": case.A,
        "B": case.B,
        **more,
    }


def recorded_structure(draw, fields: tuple, claim: str) -> tuple[ModelConfig, str]:
    """The model and block of a recorded draw with exactly the fields ``fields``, every structural field
    checked (type, and a value the runners could have drawn: a block of :data:`BLOCKS`, the options of
    :data:`DRAWN_OPTIONS` or the block's preset); a ValueError names the field."""
    from ..validation import require_bool, require_choice, require_number

    if not isinstance(draw, dict):
        raise ValueError(f"the draw must be a JSON object written by describe(); got {type(draw).__name__}")
    missing, unknown = sorted(set(fields) - set(draw)), sorted(set(draw) - set(fields))
    if missing:
        raise ValueError(f"the draw lacks {', '.join(missing)}; a {claim} draw has the fields {', '.join(fields)}")
    if unknown:
        raise ValueError(
            f"the draw has fields a {claim} draw does not: {', '.join(unknown)}; allowed: {', '.join(fields)}"
        )
    block = require_choice("draw['block']", draw["block"], tuple(dict.fromkeys(BLOCKS)))
    values: dict = {}
    for name in _BOOL_FIELDS:
        values[name] = require_bool(f"draw[{name!r}]", draw[name])
    for name, options in DRAWN_OPTIONS.items():
        value = draw[name]
        if name == "rope_base":
            value = require_number("draw['rope_base']", value, positive=True)
        elif name not in ("pos", "attention", "norm", "mlp", "rope_pairing"):
            value = require_int(f"draw[{name!r}]", value, minimum=0)
        values[name] = value if block != "drawn" else require_choice(f"draw[{name!r}]", value, options)
    if block == "drawn":
        return ModelConfig(**values), block
    # a preset at the drawn depth: every recorded field must be the preset's
    cfg = preset(block, n_layers=require_choice("draw['n_layers']", values["n_layers"], DRAWN_OPTIONS["n_layers"]))
    wrong = [n for n in CONFIG_FIELDS if (cfg.kv_heads if n == "n_kv_heads" else getattr(cfg, n)) != values[n]]
    if wrong:
        raise ValueError(f"draw[{wrong[0]!r}] is not the {block} preset's ({', '.join(wrong)} differ)")
    return cfg, block


def recorded_seed_scale(draw: dict) -> tuple[int, float]:
    """The parameter seed and scale of a recorded draw (a seed ≤ MAX_SEED, a scale of DRAWN_SCALES)."""
    from ..validation import require_choice, require_number

    seed = require_seed("draw['seed']", draw["seed"], maximum=MAX_SEED)
    scale = require_choice("draw['scale']", require_number("draw['scale']", draw["scale"]), DRAWN_SCALES)
    return seed, scale


def recorded_case(draw) -> DeepCase:
    """The :class:`DeepCase` of a draw that :func:`describe` recorded for a C5/C5b runner row, every field
    checked (:func:`recorded_structure`, :func:`recorded_seed_scale`; a mirror-symmetric template of length
    3–7 and A ≠ B below the vocabulary); a ValueError names the field."""
    cfg, block = recorded_structure(draw, DRAW_FIELDS, "C5")
    t = draw["template"]
    if not (isinstance(t, list) and len(t) == 4 and isinstance(t[3], list)):
        raise ValueError(f"draw['template'] must be [length, a, b, [fillers]]; got {t!r}")
    T = require_int("draw['template'] length", t[0], minimum=min(TEMPLATE_LENGTHS), maximum=max(TEMPLATE_LENGTHS))
    a = require_int("draw['template'] slot a", t[1], minimum=0, maximum=T - 1)
    b = require_int("draw['template'] slot b", t[2], minimum=0, maximum=T - 1)
    fillers = tuple(require_int("draw['template'] filler", f, minimum=0, maximum=cfg.vocab - 1) for f in t[3])
    template = Template(T, a, b, fillers)
    if not is_mirror_symmetric(template):
        raise ValueError(f"draw['template'] must be mirror-symmetric (C5's hypothesis H-mirror); got {t!r}")
    A = require_int("draw['A']", draw["A"], minimum=0, maximum=cfg.vocab - 1)
    B = require_int("draw['B']", draw["B"], minimum=0, maximum=cfg.vocab - 1)
    template.check_tokens(cfg.vocab, A, B)
    seed, scale = recorded_seed_scale(draw)
    return DeepCase(cfg, seed, scale, template, A, B, block)


def recorded_args(draw):
    """For ``verify --replay``: ``device -> (params, cfg, template, A, B)`` of the recorded draw (checked
    by :func:`recorded_case`), the positional arguments of :func:`check_c5`."""
    return recorded_case(draw).args


RECORDED_ARGS = recorded_args  # the hook mdm_props.recorded_draws looks up in the runner's module


def _cases(seed: int, **kwargs):
    rng = random.Random(seed)
    while True:
        yield sample_deep_case(rng, **kwargs)


def _violated(results, claim: str = "C5", index: int = 0):
    r = [x for x in results if x.claim == claim][index]
    return None if r.holds else r


def _search(claim, dropped, draws, seed, device, pick, **case_kwargs) -> Counterexample:
    resolve_device(device)

    def violation(case):
        res = check_c5(*case.args(device), **pick.get("kwargs", {}))
        bad = pick["test"](res)
        if bad is None:
            return None
        return bad.error_ratio, describe(
            case,
            quantity=bad.quantity,
            error=bad.error,
            tolerance=bad.tolerance,
            **pick.get("extra", lambda res: {})(res),
        )

    return search(claim, dropped, draws, _cases(seed, **case_kwargs), violation)


def c5_causal(draws: int, seed: int, device: str = "cpu") -> Counterexample:
    """Causal attention (the ARM's block): log p_r(·|θ) ≠ log p_f(·|Φθ)."""
    return _search("C5", "H-bi (causal attention)", draws, seed, device, {"test": _violated}, attention="causal")


def c5_readout_offset(draws: int, seed: int, device: str = "cpu") -> Counterexample:
    """Read-out offset 1 (Dream): the reverse query no longer maps to the forward query at slot a. On the
    draw found it maps instead to the forward conditional at slot a + 2 (it reads h_{b−1}, the mirror of
    h_{a+1}, which slot a + 2 reads): ``maps_to_forward_slot`` and that check's error/tolerance."""
    cx = _search(
        "C5", "read-out offset 0 (Dream-style offset 1)", draws, seed, device, {"test": _violated}, readout_offset=1
    )
    if cx.found:
        case = _replay(seed, cx.searched, readout_offset=1)
        slot = case.template.a + 2
        maps = check_c5(*case.args(device), forward_slot=slot)[0]
        cx = dataclasses.replace(
            cx,
            example={
                **cx.example,
                "maps_to_forward_slot": slot,
                "maps_holds": maps.holds,
                "maps_error_ratio": maps.error_ratio,
            },
        )
    return cx


def _replay(seed: int, n: int, **kwargs) -> DeepCase:
    """The n-th draw (1-based) of ``_cases(seed, **kwargs)``."""
    for i, case in enumerate(_cases(seed, **kwargs), 1):
        if i == n:
            return case
    raise AssertionError("unreachable")


def c5_non_mirror(draws: int, seed: int, device: str = "cpu") -> Counterexample:
    """A template that is not mirror-symmetric ("A r1 r2 B", r1 ≠ r2; reverse "B r1 r2 M")."""
    return _search(
        "C5",
        "the mirror-symmetric template (A r1 r2 B, r1 ≠ r2)",
        draws,
        seed,
        device,
        {"test": _violated},
        mirror=False,
    )


def c5_absolute_identity(draws: int, seed: int, device: str = "cpu") -> Counterexample:
    """Learned absolute positions with Φ = id: the loss identity fails."""
    return _search(
        "C5",
        "H-rel (learned absolute positions, Φ = id)",
        draws,
        seed,
        device,
        {"test": _violated, "kwargs": {"phi": "identity"}},
        pos=("absolute",),
    )


def c5b_absolute(draws: int, seed: int, device: str = "cpu") -> Counterexample:
    """Learned absolute positions with Φ_abs: the log-probability identity holds, but Φ_abs moves P, which
    the value path reads, so C5b fails (∇_P L_r(θ) is ∇_P L_f(Φθ) with its rows reversed)."""

    def test(res):
        loss = _violated(res)
        return None if loss is not None else _violated(res, "C5b")

    def extra(res):
        return {"loss_identity_holds": res[0].holds, "loss_error_ratio": res[0].error_ratio}

    return _search(
        "C5b",
        "H-rel (learned absolute positions, Φ_abs)",
        draws,
        seed,
        device,
        {"test": test, "extra": extra},
        pos=("absolute",),
    )


NEGATIVE_CONTROLS = [
    NegativeControl(
        "C5~causal",
        "C5",
        "H-bi (causal attention)",
        "under a causal mask the mirrored sequence sees other keys: log p_r(·|θ) ≠ log p_f(·|Φθ)",
        c5_causal,
        5,
    ),
    NegativeControl(
        "C5~readout-offset",
        "C5",
        "read-out offset 0 (offset 1, as in Dream)",
        "the reverse query reads h_{b−1}, the mirror of h_{a+1}: it maps to the forward conditional "
        "at slot a + 2, not to the forward query",
        c5_readout_offset,
        5,
    ),
    NegativeControl(
        "C5~non-mirror",
        "C5",
        "mirror-symmetric template (A r1 r2 B, r1 ≠ r2)",
        "the reverse sequence is not the forward one read backwards",
        c5_non_mirror,
        5,
    ),
    NegativeControl(
        "C5~absolute-id",
        "C5",
        "H-rel (learned absolute positions, Φ = id)",
        "positions enter the inputs: without reflecting P the identity fails",
        c5_absolute_identity,
        5,
    ),
    NegativeControl(
        "C5b~absolute",
        "C5b",
        "H-rel (learned absolute positions, Φ_abs)",
        "Φ_abs reverses P: the loss identity holds but P is read by the value path, so the storage gradients differ",
        c5b_absolute,
        5,
    ),
]


# ---------------------------------------------------------------------------------------------
# the registry rows (collected by mdm_props.registry)

from ..registry import Claim  # noqa: E402  (the rows sit at the end of the module)

_M = __name__ + ":"
_B = "mdm_props.claims.deep_batches:"
CLAIMS = (
    Claim(
        id="C5",
        title="the reverse query is the forward query at a reflected route (any depth)",
        kind="identity",
        hypotheses=("H-rel", "H-bi", "H-mirror"),
        statement="log p_r(·|θ) = log p_f(·|Φθ) and ∇L_r(θ) = Φ∇L_f(Φθ) for the deep block (norms, SwiGLU, GQA, "
        "biases, either RoPE pairing), Φ the route reflection (J on W_Q, W_K and q/k biases for RoPE; "
        "b(δ) ↔ b(−δ) for T5; id for ALiBi and NoPE).",
        doc="claims/C5-reflected-route.md",
        checker=_M + "check_c5",
        runner=_M + "run_c5",
        bounds=(
            "mdm_props.rounding_mode:adjoint_error_bounds_batch",
            "mdm_props.rounding_mode:with_error_bounds",
            _B + "logprob_state_batch",
            _B + "gradient_state_batch",
        ),
        tests="tests/test_c5.py",
        needs_negative_control=True,
        default_draws=100,
    ),
    Claim(
        id="C5b",
        title="Φ fixes the storage: the reverse query reads what the forward query writes",
        kind="identity",
        hypotheses=("H-rel", "H-bi", "H-mirror"),
        statement="∇_S L_r(θ) = ∇_S L_f(Φθ) on every storage parameter S (embeddings, value path, MLP, norm gains, "
        "head), at any depth.",
        doc="claims/C5-reflected-route.md",
        checker=_M + "check_c5",
        runner=_M + "run_c5b",
        bounds=("mdm_props.rounding_mode:with_error_bounds", _B + "gradient_state_batch"),
        tests="tests/test_c5.py",
        needs_negative_control=True,
        default_draws=100,
    ),
)
