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
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

import torch

from ..checks import CheckResult, Counterexample, NegativeControl, worst_entry
from ..facts import Template, forward_query, reverse_query
from ..model import RELATIVE_ENCODINGS, ModelConfig, forward, rope_reflection, storage_parameters
from ..params import check_params, init_params, resolve_device
from ..rounding_mode import adjoint_error_bounds, with_error_bounds
from ..search import search
from ..validation import require_int, require_seed

MAX_SEED = 2**32 - 1


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


def value_read_parameters(cfg: ModelConfig) -> tuple[str, ...]:
    """The storage S of C5b: the position-free parameters, and under ``absolute`` also P (the value path
    reads the position vectors)."""
    names = storage_parameters(cfg)
    return names + ("P",) if cfg.pos == "absolute" and cfg.absolute_kind == "learned" else names


# ---------------------------------------------------------------------------------------------
# one side: log-probabilities at a slot and the gradient of −log p(target), with bounds


def query_state(params: dict, cfg: ModelConfig, tokens, slot: int, target: int) -> dict:
    """``logp`` (V,) at ``slot`` with its first-order error bound ``e_logp`` (the adjoint bound,
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


def _flat(d: dict, names) -> torch.Tensor:
    return torch.cat([d[n].reshape(-1) for n in names]) if names else torch.zeros(0, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# C5 and C5b on one draw


def check_c5(
    params: dict,
    cfg: ModelConfig,
    template: Template,
    A: int,
    B: int,
    *,
    phi: str = "reflect",
    forward_slot: int | None = None,
) -> list[CheckResult]:
    """C5 on one draw: ``log p_r(·|θ) = log p_f(·|Φθ)`` (worst token), ``∇L_r(θ) = Φ∇L_f(Φθ)`` (worst
    parameter entry) and C5b ``∇_S L_r(θ) = ∇_S L_f(Φθ)`` on the storage S (:func:`value_read_parameters`).

    ``phi="identity"`` uses Φ = id instead (a negative control under ``absolute``); ``forward_slot``
    compares with the forward conditional at another slot (default: the query slot a)."""
    if phi not in ("reflect", "identity"):
        raise ValueError(f"phi must be one of 'reflect', 'identity'; got {phi!r}")
    check_params(params, cfg)
    V, T = cfg.vocab, template.length
    fq, rq = forward_query(template, A, B, V), reverse_query(template, A, B, V)
    slot = fq.slot if forward_slot is None else forward_slot
    if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < T:
        raise ValueError(f"forward_slot must be a position in [0, {T - 1}]; got {forward_slot!r}")
    Phi = (lambda d: reflect(d, cfg, T)) if phi == "reflect" else (lambda d: dict(d))  # noqa: E731
    r = query_state(params, cfg, rq.tokens, rq.slot, A)
    f = query_state(Phi(params), cfg, fq.tokens, slot, A)
    names = list(params)
    g_r, e_r = _flat(r["grad"], names), _flat(r["e_grad"], names)
    g_f, e_f = _flat(Phi(f["grad"]), names), _flat({k: v.abs() for k, v in Phi(f["e_grad"]).items()}, names)
    S = list(value_read_parameters(cfg))
    s_r, es_r = _flat(r["grad"], S), _flat(r["e_grad"], S)
    s_f, es_f = _flat(f["grad"], S), _flat(f["e_grad"], S)
    info: dict = {"pos": cfg.pos, "n_layers": cfg.n_layers, "phi": phi, "forward_slot": slot}
    tiny = torch.finfo(torch.float64).tiny  # a zero bound meets a zero difference: both sides exact
    return [
        worst_entry(
            "C5",
            "log p_r(·|θ) = log p_f(·|Φθ)",
            r["logp"],
            f["logp"],
            (r["e_logp"] + f["e_logp"]).clamp_min(tiny),
            reference_rounding=False,
            **info,
        ),
        worst_entry(
            "C5", "∇L_r(θ) = Φ ∇L_f(Φθ)", g_r, g_f, (e_r + e_f).clamp_min(tiny), reference_rounding=False, **info
        ),
        worst_entry(
            "C5b",
            "∇_S L_r(θ) = ∇_S L_f(Φθ) (storage S fixed by Φ)",
            s_r,
            s_f,
            (es_r + es_f).clamp_min(tiny),
            reference_rounding=False,
            storage=S,
            **info,
        ),
    ]


# ---------------------------------------------------------------------------------------------
# draws: one chooser drives both Hypothesis (tests) and random.Random (runners, searches)


@dataclass(frozen=True)
class DeepCase:
    """A deep-block draw: structure, parameter seed and scale, a template and a pair A ≠ B."""

    cfg: ModelConfig
    seed: int
    scale: float
    template: Template
    A: int
    B: int

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


def run_c5(draws: int, seed: int, device: str = "cpu") -> list[CheckResult]:
    """C5 (log-probabilities and full gradient) on ``draws`` seeded deep draws, every relative encoding."""
    resolve_device(device)
    rng = random.Random(require_seed("seed", seed))
    return [
        r
        for _ in range(require_int("draws", draws, 1))
        for r in check_c5(*sample_deep_case(rng).args(device))
        if r.claim == "C5"
    ]


def run_c5b(draws: int, seed: int, device: str = "cpu") -> list[CheckResult]:
    """C5b (storage gradients, no Φ) on ``draws`` seeded deep draws, every relative encoding."""
    resolve_device(device)
    rng = random.Random(require_seed("seed", seed) + 1)
    return [
        r
        for _ in range(require_int("draws", draws, 1))
        for r in check_c5(*sample_deep_case(rng).args(device))
        if r.claim == "C5b"
    ]


# ---------------------------------------------------------------------------------------------
# negative controls: seeded searches for an O(1) violation once a hypothesis is dropped


def describe(case: DeepCase, **more) -> dict:
    c = case.cfg
    return {
        "pos": c.pos,
        "n_layers": c.n_layers,
        "n_heads": c.n_heads,
        "n_kv_heads": c.kv_heads,
        "norm": c.norm,
        "mlp": c.mlp,
        "rope_pairing": c.rope_pairing,
        "attention": c.attention,
        "readout_offset": c.readout_offset,
        "seed": case.seed,
        "template": (case.template.length, case.template.a, case.template.b, case.template.fillers),
        "A": case.A,
        "B": case.B,
        **more,
    }


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
        bounds=("mdm_props.rounding_mode:with_error_bounds",),
        tests="tests/test_c5.py",
        needs_negative_control=True,
        default_draws=3,
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
        bounds=("mdm_props.rounding_mode:with_error_bounds",),
        tests="tests/test_c5.py",
        needs_negative_control=True,
        default_draws=2,
    ),
)
