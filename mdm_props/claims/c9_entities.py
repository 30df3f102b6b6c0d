"""C9 — the reverse query of a k-token fact is the forward query of the order-reversed fact at the reflected
route (THEORY §2c; identity, any depth).

A k-token fact "A r B" (``facts.EntityTemplate``: A = (a_1 … a_k), B = (b_1 … b_k), a palindromic relation
r of m tokens, T = 2k + m). Under H-bi, read-out offset 0 and a relative encoding, with Φ of C5
(:func:`~mdm_props.claims.c5_reflected_route.reflect`), for every θ of the deep block and every j::

    C9   log p(· | B r [M]^k; slot k + m + j − 1; θ) = log p(· | [M]^k r rev(B); slot k − j; Φθ)
    C9b  ∇_S L_r(θ) = ∇_S L_f̄(Φθ),   L_r = Σ_j −log p(a_j | B r [M]^k),  L_f̄ = Σ_j −log p(a_j | [M]^k r rev(B))

Proof: the reverse sequence ``B r [M]^k`` read backwards is ``[M]^k rev(r) rev(B)``, which is the
order-reversed forward configuration ``[M]^k r rev(B)`` exactly when r is palindromic; mirroring positions
``i ↦ T − 1 − i`` sends slot k + m + j − 1 to k − j and negates every offset, which Φ undoes in the scores
(C5's argument, verbatim). Φ fixes the storage S (:func:`~mdm_props.claims.c5_reflected_route.value_read_parameters`),
hence C9b. For k = 1 this is C5. The point: forward training on ``[M]^k r B → A`` writes the storage
through ∇_S L_f, while the reverse query reads it as the *order-reversed* configuration f̄: for k ≥ 2
these are different configurations (the unreversed map fails: a negative control).

Read-out offset 1 (Dream): slot i is read at position i − 1, so the reverse slot k + m + j − 1 reads
h_{k+m+j−2}, the mirror of h_{k−j+1}, which the forward slot **k − j + 2** reads: the identity holds
at that slot (:func:`dream_forward_slots`; for k = 1, C5's "a + 2") and fails at k − j.

Tolerance (derived exactly as C5's, with its machinery, :mod:`mdm_props.rounding_mode`): Φ is exact in
float64, so both sides are float64 evaluations of one exact number and ``|lhs − rhs| ≤ e_lhs + e_rhs``,
each ``e`` that evaluation's first-order rounding bound × SAFETY 2: the adjoint bound for log p
(:func:`~mdm_props.rounding_mode.adjoint_error_bounds`), the running radii of the forward and autograd
backward pass for gradients (:func:`~mdm_props.rounding_mode.with_error_bounds`). Margins: 1 − error/tolerance.

Batched (docs/claims/C9-multi-token-entities.md): the quantities take K parameter draws of one structure
stacked on a leading axis (the per-draw checkers are a batch of one). log p's bound is
:func:`~mdm_props.rounding_mode.adjoint_error_bounds_batch` (draw by draw the adjoint bound); C9b's radii
are those of the ``vmap``-ed forward and autograd backward pass. The runners take :data:`PER_STRUCTURE`
draws per structure, the structures chosen to cover every value of :data:`COVERAGE`
(:func:`entity_batches`), and record each draw in full (:func:`describe`) for ``verify --replay``
(:func:`recorded_case`, :data:`RECORDED_ARGS`).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from ..checks import CheckResult, Counterexample, NegativeControl
from ..claim import WorstEntry, evaluate_checks
from ..facts import EntityTemplate, Query, entity_forward_queries, entity_reverse_queries, reversed_forward_queries
from ..model import RELATIVE_ENCODINGS, ModelConfig, preset
from ..params import check_params, init_params, resolve_device
from ..search import search
from ..strategies import entity_fact
from ..validation import require_int, require_seed
from .c5_reflected_route import (
    BLOCKS,
    RUN_MAX_LAYERS,
    STRUCTURE_COVERAGE,
    STRUCTURE_FIELDS,
    deep_case,
    describe_structure,
    recorded_seed_scale,
    recorded_structure,
    reflect_batch,
    structure_factors,
    value_read_parameters,
)
from .deep_batches import (
    MAX_SEED,
    PER_STRUCTURE,
    TINY,
    StructureBatch,
    check_batch,
    logprob_state_batch,
    run_batches,
    stacked,
    storage_gradient_state_batch,
    structure_batches,
)

FORWARD_MAPS = ("order-reversed", "unreversed")

# ---------------------------------------------------------------------------------------------
# the two configurations and their slots


def forward_side(template: EntityTemplate, A, B, vocab: int, forward_map: str = "order-reversed") -> tuple[Query, ...]:
    """The forward queries the reverse queries map to, listed by j: the order-reversed forward
    configuration ``[M]^k r rev(B)`` at slot k − j (C9), or the unreversed ``[M]^k r B`` at slot j − 1
    (the configuration forward training sees; a negative control for k ≥ 2 under an encoding where order
    matters)."""
    if forward_map not in FORWARD_MAPS:
        raise ValueError(f"forward_map must be one of {', '.join(FORWARD_MAPS)}; got {forward_map!r}")
    if forward_map == "order-reversed":
        return reversed_forward_queries(template, A, B, vocab)
    return entity_forward_queries(template, A, B, vocab)


def dream_forward_slots(template: EntityTemplate) -> tuple[int, ...]:
    """Under read-out offset 1 the reverse slot k + m + j − 1 maps to the forward slot k − j + 2 (j = 1 … k)."""
    return tuple(template.k - j + 2 for j in range(1, template.k + 1))


def _slots(queries, slots, T: int) -> tuple[int, ...]:
    out = tuple(q.slot for q in queries) if slots is None else tuple(slots)
    if len(out) != len(queries) or any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < T for s in out):
        raise ValueError(f"forward_slots must hold {len(queries)} positions in [0, {T - 1}]; got {slots!r}")
    return out


# ---------------------------------------------------------------------------------------------
# C9 and C9b declared once: the quantities (a leading draw axis K: K parameter draws of one structure,
# one for the per-draw checkers) and the checks as data (mdm_props.claim's WorstEntry, evaluated by
# claim.evaluate_checks). Not a claim.Spec: its backends are the one-layer storage model (claim.check
# requires n_layers = 1, a merged W_OV and a single-token Draw); C9 is about the deep block and k-token facts.


def _sides(params, cfg, template, A, B, forward_map, forward_slots):
    check_batch(params, cfg)
    rq = entity_reverse_queries(template, A, B, cfg.vocab)
    fq = forward_side(template, A, B, cfg.vocab, forward_map)
    return rq, fq, _slots(fq, forward_slots, template.length)


def _info(cfg: ModelConfig, template: EntityTemplate, forward_map: str, slots) -> dict:
    return {
        "pos": cfg.pos,
        "n_layers": cfg.n_layers,
        "k": template.k,
        "m": template.m,
        "forward_map": forward_map,
        "forward_slots": slots,
    }


_DETAILS = tuple((name, name) for name in ("pos", "n_layers", "k", "m", "forward_map", "forward_slots"))


def c9_quantities_batch(
    params: dict,
    cfg: ModelConfig,
    template: EntityTemplate,
    A,
    B,
    *,
    forward_map: str = "order-reversed",
    forward_slots=None,
) -> dict:
    """For K stacked draws ``params`` of one structure: ``lhs`` = log p(·|B r [M]^k; slot k+m+j−1; θ) and
    ``rhs`` = log p(·|forward side; Φθ), (K, k, V), with ``tol`` = e_lhs + e_rhs (the adjoint bounds, C5's
    derivation); the forward side is the order-reversed configuration at slot k − j unless
    ``forward_map``/``forward_slots`` say otherwise."""
    rq, fq, slots = _sides(params, cfg, template, A, B, forward_map, forward_slots)
    lhs, e_lhs = logprob_state_batch(params, cfg, rq[0].tokens, [q.slot for q in rq])
    rhs, e_rhs = logprob_state_batch(reflect_batch(params, cfg, template.length), cfg, fq[0].tokens, slots)
    tol = (e_lhs + e_rhs).clamp_min(TINY)
    return {"lhs": lhs, "rhs": rhs, "tol": tol, **_info(cfg, template, forward_map, slots)}


def c9_quantities(params: dict, cfg: ModelConfig, template: EntityTemplate, A, B, **options) -> dict:
    """:func:`c9_quantities_batch` for one draw (a leading draw axis of one)."""
    check_params(params, cfg)
    return c9_quantities_batch(stacked(params), cfg, template, A, B, **options)


def c9b_quantities_batch(
    params: dict,
    cfg: ModelConfig,
    template: EntityTemplate,
    A,
    B,
    *,
    forward_map: str = "order-reversed",
    forward_slots=None,
) -> dict:
    """For K stacked draws: ``g_r`` = ∇_S L_r(θ) and ``g_f`` = ∇_S L_f̄(Φθ) on the storage S (flattened,
    (K, |S|)), with ``tol`` = e_r + e_f (the running radii, C5b's derivation)."""
    rq, fq, slots = _sides(params, cfg, template, A, B, forward_map, forward_slots)
    S = value_read_parameters(cfg)
    g_r, e_r = storage_gradient_state_batch(params, cfg, rq[0].tokens, [q.slot for q in rq], [q.target for q in rq], S)
    phi = reflect_batch(params, cfg, template.length)
    g_f, e_f = storage_gradient_state_batch(phi, cfg, fq[0].tokens, slots, [q.target for q in fq], S)
    tol = (e_r + e_f).clamp_min(TINY)
    return {"g_r": g_r, "g_f": g_f, "tol": tol, "storage": S, **_info(cfg, template, forward_map, slots)}


def c9b_quantities(params: dict, cfg: ModelConfig, template: EntityTemplate, A, B, **options) -> dict:
    """:func:`c9b_quantities_batch` for one draw (a leading draw axis of one)."""
    check_params(params, cfg)
    return c9b_quantities_batch(stacked(params), cfg, template, A, B, **options)


C9_CHECKS = (
    WorstEntry(
        "log p",
        "log p(·|B r [M]^k; k+m+j−1; θ) = log p(·|[M]^k r rev(B); k−j; Φθ)",
        "lhs",
        "rhs",
        "tol",
        _DETAILS,
    ),
)
C9B_CHECKS = (
    WorstEntry(
        "storage gradient",
        "∇_S L_r(θ) = ∇_S L_f̄(Φθ) (storage S fixed by Φ)",
        "g_r",
        "g_f",
        "tol",
        _DETAILS + (("storage", "storage"),),
    ),
)


def check_c9(params: dict, cfg: ModelConfig, template: EntityTemplate, A, B, **options) -> list[CheckResult]:
    """C9 on one draw: ``log p(·|B r [M]^k; k+m+j−1; θ) = log p(·|[M]^k r rev(B); k−j; Φθ)`` for every j
    (the whole (k, V) array, worst entry). ``forward_map="unreversed"`` compares with ``[M]^k r B`` at
    slot j − 1 instead; ``forward_slots`` reads the forward side at other slots (Dream:
    :func:`dream_forward_slots`)."""
    values = c9_quantities(params, cfg, template, A, B, **options)
    return [c.result(0) for c in evaluate_checks("C9", C9_CHECKS, values)]


def check_c9b(params: dict, cfg: ModelConfig, template: EntityTemplate, A, B, **options) -> list[CheckResult]:
    """C9b on one draw: ``∇_S L_r(θ) = ∇_S L_f̄(Φθ)`` on the storage S (worst entry), L the summed loss of
    the k queries of a configuration; options as in :func:`check_c9`."""
    values = c9b_quantities(params, cfg, template, A, B, **options)
    return [c.result(0) for c in evaluate_checks("C9b", C9B_CHECKS, values)]


# ---------------------------------------------------------------------------------------------
# draws: one chooser for Hypothesis (strategies.chosen) and random.Random (runners, searches)


@dataclass(frozen=True)
class EntityCase:
    """A deep-block draw with a k-token fact: structure, parameter seed and scale, template, A, B."""

    cfg: ModelConfig
    seed: int
    scale: float
    template: EntityTemplate
    A: tuple[int, ...]
    B: tuple[int, ...]
    block: str = "drawn"

    def params(self, device="cpu") -> dict:
        return init_params(self.cfg, self.seed, scale=self.scale, device=device)

    def args(self, device="cpu") -> tuple:
        return self.params(device), self.cfg, self.template, self.A, self.B


def entity_case(
    choose,
    seed: int,
    *,
    pos=RELATIVE_ENCODINGS,
    attention: str = "bidirectional",
    readout_offset: int = 0,
    max_layers: int = 3,
    blocks=BLOCKS,
    k=None,
    m=None,
    palindromic: bool = True,
) -> EntityCase:
    """A draw for C9: the structure of C5's :func:`~mdm_props.claims.c5_reflected_route.deep_case` (depth,
    heads, GQA, norms, SwiGLU, biases, tied/untied, either RoPE pairing, the encodings ``pos``), or one of
    the presets at that depth (``blocks``; presets are RoPE: drawn only when ``pos`` has rope), and a k-token fact of
    :func:`mdm_props.strategies.entity_fact` (k ∈ 1…4, m ∈ 1…3, palindromic unless ``palindromic=False``).
    At most 31 choices (C5's 25, the block, the fact's 5): within :data:`mdm_props.strategies.CHOICES`."""
    base = deep_case(choose, seed, pos=pos, attention=attention, readout_offset=readout_offset, max_layers=max_layers)
    block = choose(tuple(b for b in blocks if b == "drawn" or "rope" in pos))  # the presets are RoPE
    cfg = base.cfg
    if block != "drawn":
        cfg = preset(block, n_layers=cfg.n_layers, attention=attention, readout_offset=readout_offset)
    template, A, B = entity_fact(choose, cfg.vocab, k=k, m=m, palindromic=palindromic)
    return EntityCase(cfg, base.seed, base.scale, template, A, B, block)


def sample_entity_case(rng: random.Random, **kwargs) -> EntityCase:
    """:func:`entity_case` driven by a ``random.Random``."""
    return entity_case(rng.choice, rng.randint(0, MAX_SEED), **kwargs)


# ---------------------------------------------------------------------------------------------
# the runners: structures covering every value of every factor, each with PER_STRUCTURE parameter draws
# checked in one batched evaluation


def _factors(case: EntityCase) -> set[tuple[str, object]]:
    """The (factor, value) pairs a draw's structure exhibits: C5's (:func:`structure_factors`), k and m."""
    return structure_factors(case.cfg, case.block) | {("k", case.template.k), ("m", case.template.m)}


# every value the runners must examine at least once (given enough structures: verify's defaults need 8 or so)
COVERAGE = STRUCTURE_COVERAGE | frozenset([("k", k) for k in range(1, 5)] + [("m", m) for m in range(1, 4)])


EntityBatch = StructureBatch  # one structure of entity cases and its parameter draws


def entity_batches(draws: int, seed: int, size: int = PER_STRUCTURE) -> list[StructureBatch]:
    """``draws`` seeded draws in ⌈draws/size⌉ structures of ``size`` parameter draws (the last one fewer),
    covering :data:`COVERAGE` (:func:`mdm_props.claims.deep_batches.structure_batches` over
    :func:`sample_entity_case`, depth 1 … :data:`RUN_MAX_LAYERS`)."""
    return structure_batches(
        draws, seed, lambda rng: sample_entity_case(rng, max_layers=RUN_MAX_LAYERS), _factors, COVERAGE, size
    )


def _run(claim: str, quantities, checks, draws: int, seed: int, device: str) -> list[CheckResult]:
    """One result per draw (each carrying its full description, ``details["draw"]``, for ``verify --replay``)."""
    return run_batches(claim, entity_batches(draws, seed), quantities, checks, describe, device)


def run_c9(draws: int, seed: int, device: str = "cpu") -> list[CheckResult]:
    """C9 (log-probabilities at every j) on ``draws`` seeded draws, :data:`PER_STRUCTURE` per structure
    (:func:`entity_batches`: every k, m, depth 1–4, relative encoding, RoPE pairing and preset)."""
    return _run("C9", c9_quantities_batch, C9_CHECKS, draws, seed, device)


def run_c9b(draws: int, seed: int, device: str = "cpu") -> list[CheckResult]:
    """C9b (storage gradients) on ``draws`` seeded draws (a stream of its own: seed + 1)."""
    return _run("C9b", c9b_quantities_batch, C9B_CHECKS, draws, require_seed("seed", seed) + 1, device)


# ---------------------------------------------------------------------------------------------
# negative controls: seeded searches for an O(1) violation once a hypothesis is dropped


DRAW_FIELDS = STRUCTURE_FIELDS + ("k", "relation", "A", "B")


def describe(case: EntityCase, **more) -> dict:
    """A draw as a plain dict: the block, every structural field :func:`entity_case` draws, the parameter
    seed and scale (:func:`~mdm_props.claims.c5_reflected_route.describe_structure`), the fact: enough to
    re-create it (:func:`recorded_case`, ``verify --replay``)."""
    return {
        **describe_structure(case),
        "k": case.template.k,
        "relation": case.template.relation,
        "A": case.A,
        "B": case.B,
        **more,
    }


# ---------------------------------------------------------------------------------------------
# replay: a recorded draw read back as data (mdm_props.recorded_draws looks up RECORDED_ARGS through
# the registry's runner module, never through the report)


def _tokens(name: str, value, length: tuple[int, int], vocab: int) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not length[0] <= len(value) <= length[1]:
        raise ValueError(f"draw[{name!r}] must be a list of {length[0]}…{length[1]} token ids; got {value!r}")
    return tuple(require_int(f"draw[{name!r}] token", t, minimum=0, maximum=vocab - 1) for t in value)


def recorded_case(draw) -> EntityCase:
    """The :class:`EntityCase` of a draw that :func:`describe` recorded for a C9/C9b runner row, every field
    checked (type, and a value the runners could have drawn: a block of :data:`BLOCKS`, the options of
    :data:`DRAWN_OPTIONS` or the block's preset, a scale of :data:`DRAWN_SCALES`, a palindromic relation,
    entities of k tokens outside it); a ValueError names the field."""
    from ..strategies import ENTITY_K, RELATION_M

    cfg, block = recorded_structure(draw, DRAW_FIELDS, "C9")
    k = require_int("draw['k']", draw["k"], minimum=ENTITY_K[0], maximum=ENTITY_K[1])
    relation = _tokens("relation", draw["relation"], RELATION_M, cfg.vocab)
    template = EntityTemplate(k, relation)
    if not template.palindromic:
        raise ValueError(f"draw['relation'] must read the same backwards (C9's hypothesis); got {list(relation)}")
    A, B = (_tokens(name, draw[name], (k, k), cfg.vocab) for name in ("A", "B"))
    if A == B or set(A + B) & set(relation):
        raise ValueError("draw['A'] and draw['B'] must be distinct k-token entities outside the relation")
    seed, scale = recorded_seed_scale(draw)
    return EntityCase(cfg, seed, scale, template, A, B, block)


def recorded_args(draw):
    """For ``verify --replay``: ``device -> (params, cfg, template, A, B)`` of the recorded draw (checked
    by :func:`recorded_case`), the positional arguments of :func:`check_c9` and :func:`check_c9b`."""
    case = recorded_case(draw)
    return case.args


RECORDED_ARGS = recorded_args  # the hook mdm_props.recorded_draws looks up in the runner's module


def _cases(seed: int, **kwargs):
    rng = random.Random(seed)
    while True:
        yield sample_entity_case(rng, **kwargs)


# An O(1) defect (THEORY: "each an O(1) defect"): a control's draw counts when the identity is violated
# beyond its tolerance *and* the defect is at least a tenth of the quantity's natural size: 0.1 nat for
# log p (a probability off by a factor e^0.1 ≈ 1.1), 0.1 of the larger side for a gradient entry. Not a
# tolerance: a violation of any size already refutes the identity; this makes the searches find large ones.
O1_DEFECT = 0.1


def logprob_defect(r: CheckResult) -> float:
    """|lhs − rhs| at the worst entry, in nats."""
    return r.error


def gradient_defect(r: CheckResult) -> float:
    """|g_r − g_f| at the worst entry relative to the larger of the two."""
    scale = max(abs(r.observed), abs(r.reference))
    return r.error / scale if scale > 0 else 0.0


def _search(claim, dropped, draws, seed, device, check, check_kwargs=None, **case_kwargs) -> Counterexample:
    """The first draw (of at most ``draws``) on which ``check`` is violated by an O(1) defect (``O1_DEFECT``);
    ``observed`` is the defect (:func:`logprob_defect` or :func:`gradient_defect`), the example also holds
    the error and its error/tolerance."""
    resolve_device(device)
    defect = gradient_defect if check is check_c9b else logprob_defect

    def violation(case):
        (r,) = check(*case.args(device), **(check_kwargs(case) if check_kwargs else {}))
        if r.holds or defect(r) < O1_DEFECT:
            return None
        return defect(r), describe(
            case,
            quantity=r.quantity,
            error=r.error,
            tolerance=r.tolerance,
            ratio=r.error_ratio,
            index=r.details["index"],
        )

    return search(claim, dropped, draws, _cases(require_seed("seed", seed), **case_kwargs), violation)


ORDER_MATTERS = ("rope", "t5")  # under none (and alibi for a symmetric fact) the unreversed map can hold


def c9_unreversed(draws: int, seed: int, device: str = "cpu") -> Counterexample:
    """The unreversed map (``[M]^k r B`` at slot j − 1, what forward training sees) under rope/t5, k ≥ 2:
    the reverse query is not that configuration's forward query."""
    return _search(
        "C9",
        "the order reversal (the unreversed map [M]^k r B, slot j − 1)",
        draws,
        seed,
        device,
        check_c9,
        lambda case: {"forward_map": "unreversed"},
        pos=ORDER_MATTERS,
        blocks=("drawn",),
        k=(2, 3, 4),
    )


def c9b_unreversed(draws: int, seed: int, device: str = "cpu") -> Counterexample:
    """The storage gradient the reverse query reads is not the one forward training writes:
    ∇_S L_r(θ) ≠ ∇_S L_f(Φθ) for the unreversed forward configuration ``[M]^k r B`` (rope/t5, k ≥ 2)."""
    return _search(
        "C9b",
        "the order reversal (the unreversed configuration [M]^k r B)",
        draws,
        seed,
        device,
        check_c9b,
        lambda case: {"forward_map": "unreversed"},
        pos=ORDER_MATTERS,
        blocks=("drawn",),
        k=(2, 3, 4),
    )


def c9_non_palindromic(draws: int, seed: int, device: str = "cpu") -> Counterexample:
    """A relation that does not read the same backwards: ``B r [M]^k`` read backwards is
    ``[M]^k rev(r) rev(B)``, not the order-reversed forward configuration."""
    return _search("C9", "the palindromic relation (r ≠ rev(r))", draws, seed, device, check_c9, palindromic=False)


def c9_causal(draws: int, seed: int, device: str = "cpu") -> Counterexample:
    """Causal attention (the ARM's block): the mirrored sequence sees other keys."""
    return _search("C9", "H-bi (causal attention)", draws, seed, device, check_c9, attention="causal")


def c9_readout_offset(draws: int, seed: int, device: str = "cpu") -> Counterexample:
    """Read-out offset 1 (Dream): the offset-0 map (slot k − j) fails; on the draw found the example also
    reports the map to slot k − j + 2 (:func:`dream_forward_slots`), which holds within the same tolerance."""
    cx = _search("C9", "read-out offset 0 (Dream-style offset 1)", draws, seed, device, check_c9, readout_offset=1)
    if cx.found:
        case = _replay(seed, cx.searched, readout_offset=1)
        (maps,) = check_c9(*case.args(device), forward_slots=dream_forward_slots(case.template))
        cx = dataclasses.replace(
            cx,
            example={
                **cx.example,
                "maps_to_forward_slots": dream_forward_slots(case.template),
                "maps_holds": maps.holds,
                "maps_error_ratio": maps.error_ratio,
            },
        )
    return cx


def _replay(seed: int, n: int, **kwargs) -> EntityCase:
    """The n-th draw (1-based) of ``_cases(seed, **kwargs)``."""
    for i, case in enumerate(_cases(seed, **kwargs), 1):
        if i == n:
            return case
    raise AssertionError("unreachable")


NEGATIVE_CONTROLS = [
    NegativeControl(
        "C9~unreversed",
        "C9",
        "the order reversal (unreversed map [M]^k r B, slot j − 1; rope/t5, k ≥ 2)",
        "the reverse query is the forward query of the order-reversed fact, not of the fact forward training sees",
        c9_unreversed,
        10,
    ),
    NegativeControl(
        "C9b~unreversed",
        "C9b",
        "the order reversal (unreversed configuration [M]^k r B; rope/t5, k ≥ 2)",
        "the storage gradient the reverse query reads is not the one forward training writes",
        c9b_unreversed,
        10,
    ),
    NegativeControl(
        "C9~non-palindromic",
        "C9",
        "palindromic relation (r ≠ rev(r))",
        "B r [M]^k read backwards is [M]^k rev(r) rev(B), not the order-reversed forward configuration",
        c9_non_palindromic,
        10,
    ),
    NegativeControl(
        "C9~readout-offset",
        "C9",
        "read-out offset 0 (offset 1, as in Dream)",
        "the reverse slot k + m + j − 1 reads h_{k+m+j−2}, the mirror of h_{k−j+1}: it maps to the forward "
        "slot k − j + 2, not k − j",
        c9_readout_offset,
        10,
    ),
    NegativeControl(
        "C9~causal",
        "C9",
        "H-bi (causal attention)",
        "under a causal mask the mirrored sequence sees other keys",
        c9_causal,
        10,
    ),
]


# ---------------------------------------------------------------------------------------------
# the registry rows (collected by mdm_props.registry)

from ..registry import Claim  # noqa: E402  (the rows sit at the end of the module, as in every claim module)

_M = __name__ + ":"
_B = "mdm_props.claims.deep_batches:"
_DOC = "claims/C9-multi-token-entities.md"
CLAIMS = (
    Claim(
        id="C9",
        title="the reverse query of a k-token fact is the forward query of the order-reversed fact at Φθ",
        kind="identity",
        hypotheses=("H-rel", "H-bi", "H-mirror"),
        statement="log p(·|B r [M]^k; slot k+m+j−1; θ) = log p(·|[M]^k r rev(B); slot k−j; Φθ) for every j, any "
        "depth (norms, SwiGLU, GQA, biases, either RoPE pairing, the presets), r palindromic, Φ the route "
        "reflection of C5; for k = 1 this is C5.",
        doc=_DOC,
        checker=_M + "check_c9",
        runner=_M + "run_c9",
        bounds=("mdm_props.rounding_mode:adjoint_error_bounds_batch", _B + "logprob_state_batch"),
        tests="tests/test_c9.py",
        needs_negative_control=True,
        default_draws=200,
    ),
    Claim(
        id="C9b",
        title="Φ fixes the storage: the reverse query reads the storage of the order-reversed forward configuration",
        kind="identity",
        hypotheses=("H-rel", "H-bi", "H-mirror"),
        statement="∇_S L_r(θ) = ∇_S L_f̄(Φθ) on every storage parameter S, L_r and L_f̄ the summed losses of A's k "
        "tokens in B r [M]^k and in [M]^k r rev(B).",
        doc=_DOC,
        checker=_M + "check_c9b",
        runner=_M + "run_c9b",
        bounds=("mdm_props.rounding_mode:with_error_bounds", _B + "storage_gradient_state_batch"),
        tests="tests/test_c9.py",
        needs_negative_control=True,
        default_draws=200,
    ),
)
