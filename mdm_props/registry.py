"""The claim registry: every claim of THEORY.md with its kind, hypotheses and statement, and where
each of its pieces lives, one hop each: its checker, runner and bounds (dotted names
``"mdm_props.claims.<module>:<name>"``), its test file, its doc page; its negative controls are the
``NEGATIVE_CONTROLS`` of its module.

:func:`audit` (run by ``tests/test_registry.py``) imports every name the registry gives and fails when
a claim lacks a checker, runner or bound that resolves, a test marked ``claim(id)`` in its test file,
a meta-test marked ``meta(id)``, a doc page that names it, or (where required) a negative control both
registered and tested; or when a marker names an unknown id.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

KINDS = ("identity", "per-draw", "distributional", "typical")
HYPOTHESES = {
    "H-rel": "relative positional encoding (rope, alibi, t5, none): positions enter only the scores",
    "H-orth": "orthonormal V+1 embeddings and tied unembedding (U Uᵀ = I, U x_M = 0); needs d ≥ V + 1",
    "H-bi": "bidirectional attention",
    "H-iso": "W_Q, W_K with iid N(0, σ²) entries (isotropic initialisation)",
    "H-Oorth": "factored value path W_O W_V with every head's W_O square orthogonal (d_head = d_model)",
    "H-mirror": "mirror-symmetric template (a + b = T − 1, fillers read the same backwards) and read-out offset 0",
}
DOCS = Path(__file__).resolve().parent.parent / "docs"
# The false-alarm probability the claims state (THEORY: "distributional (stated false-alarm probability,
# 1e-6 in this project)"). A literal on purpose, not mdm_props.statistics.FALSE_ALARM: it is the
# specification that verify compares the level the checks actually used with (statistics.level_problem).
STATED_FALSE_ALARM = 1e-6


def resolve(dotted: str):
    """The object a ``"package.module:name"`` string names (ValueError when it does not resolve)."""
    module, sep, name = dotted.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"dotted name must look like 'package.module:name'; got {dotted!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{dotted!r} does not resolve ({type(exc).__name__}: {exc})") from None


@dataclass(frozen=True, kw_only=True)
class Claim:
    """One claim of THEORY.md and where each of its pieces lives (one hop each):
    ``checker`` (one draw → CheckResults), ``runner`` ((draws, seed, device) → CheckResults),
    ``bounds`` (the claim's derived tolerances), ``tests`` (its test file, which also holds or marks
    its meta-tests), ``doc`` (its page under docs/); its negative controls are the
    ``NEGATIVE_CONTROLS`` of the runner's module whose ``claim`` is this id."""

    id: str
    title: str
    kind: str
    hypotheses: tuple[str, ...]
    statement: str
    doc: str  # path relative to docs/
    checker: str  # "mdm_props.claims.<module>:<function>"
    runner: str
    bounds: tuple[str, ...] = ()
    tests: str  # path relative to the repository root
    needs_negative_control: bool
    default_draws: int
    false_alarm: float | None = None  # the stated false-alarm level of its statistical checks, if any
    builder: str | None = None  # the runner's argument builder ("module:name"), None: search.case_args (replay)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}; got {self.kind!r}")
        if self.kind in ("distributional", "typical") and self.false_alarm is None:
            raise ValueError(f"{self.id}: a {self.kind} claim must state its false-alarm level (false_alarm=...)")
        if self.false_alarm is not None and not 0 < self.false_alarm < 1:
            raise ValueError(f"false_alarm must lie in (0, 1); got {self.false_alarm!r}")
        unknown = set(self.hypotheses) - set(HYPOTHESES)
        if unknown:
            raise ValueError(f"unknown hypotheses {sorted(unknown)}; allowed {sorted(HYPOTHESES)}")

    @property
    def family(self) -> str:
        return self.id[:2]

    @property
    def module(self) -> str:
        """The claim family's module (the runner's)."""
        return self.runner.partition(":")[0]

    def run(self, draws: int, seed: int, device: str = "cpu"):
        """Run the registered runner."""
        return resolve(self.runner)(draws, seed, device)

    def negative_controls(self) -> list:
        return [n for n in importlib.import_module(self.module).NEGATIVE_CONTROLS if n.claim == self.id]


_C0, _C1, _C2 = "claims/C0-oracles.md", "claims/C1-reusable-evidence.md", "claims/C2-correlated-routes.md"
_C3, _C4 = "claims/C3-aligned-storage-gradient.md", "claims/C4-reverse-loss-decrease.md"
_C3V = "claims/C3v-separate-value-path.md"
C0_, C1_, C2_ = (
    "mdm_props.claims.c0_oracles:",
    "mdm_props.claims.c1_reusable_evidence:",
    "mdm_props.claims.c2_correlated_routes:",
)
C3_, C3V_ = "mdm_props.claims.c3_aligned_storage:", "mdm_props.claims.c3v_separate_value_path:"
C4_ = "mdm_props.claims.c4_reverse_loss_decrease:"
_C5, C5_ = "claims/C5-reflected-route.md", "mdm_props.claims.c5_reflected_route:"
R_ = "mdm_props.rounding:"
_C6, _C7 = "claims/C6-small-branch-alignment.md", "claims/C7-alignment-at-init.md"
_C8 = "claims/C8-layer-step-decrease.md"
C68_ = "mdm_props.claims.c6_c8_deep_storage:"

CLAIMS: tuple[Claim, ...] = (
    Claim(
        id="C0.1",
        title="RoPE relativity and rotation facts",
        kind="identity",
        hypotheses=(),
        statement="R_δ is orthogonal, R_δᵀ = R_{−δ}, R_a R_b = R_{a+b}, (R_m q)ᵀ(R_n k) = qᵀ R_{n−m} k, to float64 "
        "rounding.",
        doc=_C0,
        checker=C0_ + "rope_checks",
        runner=C0_ + "run_c01",
        bounds=(
            C0_ + "rope_orthogonality_bound",
            C0_ + "rope_transpose_bound",
            C0_ + "rope_composition_bound",
            C0_ + "rope_relativity_bound",
        ),
        tests="tests/test_c0_rope.py",
        needs_negative_control=False,
        default_draws=50,
    ),
    Claim(
        id="C0.2",
        title="float64 model against an mpmath oracle",
        kind="identity",
        hypotheses=(),
        statement="Scores, attention, logits and loss agree with a ≥ 50-digit mpmath evaluation within the derived "
        "dot-product rounding bound.",
        doc=_C0,
        checker=C0_ + "oracle_checks",
        runner=C0_ + "run_c02",
        bounds=(R_ + "forward_error_bounds",),
        tests="tests/test_c0_oracle.py",
        needs_negative_control=False,
        default_draws=5,
    ),
    Claim(
        id="C0.3",
        title="autograd against closed-form gradients",
        kind="identity",
        hypotheses=(),
        statement="∂L/∂W_OV = Uᵀ(p − y)cᵀ; ∂s/∂W_Q = R k xᵀ/√d_k, ∂s/∂W_K = Rᵀ q xᵀ/√d_k.",
        doc=_C0,
        checker=C0_ + "gradient_checks",
        runner=C0_ + "run_c03",
        bounds=(R_ + "storage_gradient_error_bound", R_ + "score_gradient_error_bound"),
        tests="tests/test_c0_gradients.py",
        needs_negative_control=False,
        default_draws=20,
    ),
    Claim(
        id="C0.4",
        title="masked-diffusion objective",
        kind="identity",
        hypotheses=(),
        statement="The 1/t-weighted masked loss has expectation Σ_S Σ_{i∈S} −log p(x_i | x_S masked)/(|S| C(L,|S|)); "
        "the Monte Carlo estimator has the matching distribution (false-alarm probability 1e-6).",
        doc=_C0,
        checker=C0_ + "objective_checks",
        runner=C0_ + "run_c04",
        bounds=(C0_ + "mdm_objective_error_bound",),
        tests="tests/test_c0_objective.py",
        needs_negative_control=False,
        default_draws=3,
        false_alarm=STATED_FALSE_ALARM,
    ),
    Claim(
        id="C0.5",
        title="CPU against CUDA",
        kind="identity",
        hypotheses=(),
        statement="The float64 model on CUDA agrees with the CPU within the derived float64 bound.",
        doc=_C0,
        checker=C0_ + "device_checks",
        runner=C0_ + "run_c05",
        bounds=(R_ + "forward_error_bounds",),
        tests="tests/test_c0_devices.py",
        needs_negative_control=False,
        default_draws=5,
    ),
    Claim(
        id="C1a",
        title="position-free storage",
        kind="per-draw",
        hypotheses=("H-rel",),
        statement="z_f = U(x_M + W_OV c_f), z_r = U(x_M + W_OV c_r): each token's value contribution is the same in "
        "both configurations; with token-aligned attention forced equal, forward and reverse logits are "
        "identical.",
        doc=_C1,
        checker=C1_ + "check_c1a",
        runner=C1_ + "run_c1a",
        bounds=(C1_ + "value_path_error",),
        tests="tests/test_c1.py",
        needs_negative_control=True,
        default_draws=50,
    ),
    Claim(
        id="C1b",
        title="evidence strengthening",
        kind="per-draw",
        hypotheses=("H-rel", "H-orth"),
        statement="One storage step W_OV ← W_OV − η ∂L_f/∂W_OV changes ε(A←B) = u_Aᵀ W_OV x_B by exactly "
        "η (1 − p_f(A)) α^f(B) > 0.",
        doc=_C1,
        checker=C1_ + "check_c1b",
        runner=C1_ + "run_c1b",
        bounds=(C1_ + "c1b_tolerance",),
        tests="tests/test_c1.py",
        needs_negative_control=True,
        default_draws=50,
    ),
    Claim(
        id="C1c",
        title="reuse by the reverse query",
        kind="per-draw",
        hypotheses=("H-rel", "H-orth"),
        statement="The same step changes the reverse logits by exactly η (y − p_f)(c_fᵀ c_r); the reverse margin "
        "z_r(A) − z_r(v) grows by η (1 − p_f(A) + p_f(v)) c_fᵀ c_r > 0 for every v ≠ A.",
        doc=_C1,
        checker=C1_ + "check_c1c",
        runner=C1_ + "run_c1c",
        bounds=(C1_ + "c1c_tolerances",),
        tests="tests/test_c1.py",
        needs_negative_control=True,
        default_draws=50,
    ),
    Claim(
        id="C2a",
        title="forward/reverse score correlation at initialisation",
        kind="distributional",
        hypotheses=("H-iso",),
        statement="Corr(S_f, S_r) = tr(R_g)/d_k = (2/d_k) Σ_l cos(g θ_l), g = 2Δ; as d_k → ∞, ∫₀¹ cos(g base^(−u)) du.",
        doc=_C2,
        checker=C2_ + "check_score_correlation",
        runner=C2_ + "run_c2a",
        bounds=(C2_ + "score_correlation_halfwidth", C2_ + "correlation_formula_error", C2_ + "riemann_limit_bounds"),
        tests="tests/test_c2.py",
        needs_negative_control=True,
        default_draws=2000,
        false_alarm=STATED_FALSE_ALARM,
    ),
    Claim(
        id="C2b",
        title="route-gradient identity",
        kind="identity",
        hypotheses=(),
        statement="⟨∇S_f, ∇S_r⟩ over (W_Q, W_K) = Σ_l cos(g θ_l)(‖x_M‖² ‖k_l‖² + ‖x_B‖² ‖q_l‖²) for the unscaled "
        "scores.",
        doc=_C2,
        checker=C2_ + "check_route_gradient",
        runner=C2_ + "run_c2b",
        bounds=(C2_ + "route_formula_error",),
        tests="tests/test_c2.py",
        needs_negative_control=True,
        default_draws=50,
    ),
    Claim(
        id="C2c",
        title="forward training raises reverse attention",
        kind="typical",
        hypotheses=("H-rel", "H-bi"),
        statement="After forward-only training the reverse attention to B rises with the forward attention to B, "
        "and the across-pair correlation of S_f and S_r rises; reported as a rate with a Clopper–Pearson "
        "interval.",
        doc=_C2,
        checker=C2_ + "check_rate",
        runner=C2_ + "run_c2c",
        bounds=("mdm_props.statistics:clopper_pearson",),
        tests="tests/test_c2.py",
        needs_negative_control=True,
        default_draws=30,
        false_alarm=STATED_FALSE_ALARM,
    ),
    Claim(
        id="C3",
        title="positively aligned shared-storage gradient",
        kind="per-draw",
        hypotheses=("H-rel", "H-orth", "H-bi"),
        statement="⟨G_f, G_r⟩ = [(1 − p_f(A))(1 − p_r(A)) + Σ_{v≠A} p_f(v) p_r(v)] Σ_t α^f(t) α^r(t) "
        "≥ (1 − p_f(A))(1 − p_r(A)) Σ_t α^f(t) α^r(t) > 0; multi-head: a sum of such terms.",
        doc=_C3,
        checker=C3_ + "check_c3",
        runner=C3_ + "run_c3",
        bounds=(C3_ + "c3_tolerances",),
        tests="tests/test_c3.py",
        needs_negative_control=True,
        default_draws=50,
    ),
    Claim(
        id="C3v",
        title="C3 for a separate value path W_O W_V",
        kind="per-draw",
        hypotheses=("H-rel", "H-orth", "H-bi", "H-Oorth"),
        statement="With W_OV = W_O W_V and W_O square orthogonal, ⟨∂L_f/∂W_V, ∂L_r/∂W_V⟩ equals C3's product "
        "[(1 − p_f(A))(1 − p_r(A)) + Σ_{v≠A} p_f(v) p_r(v)] Σ_t α^f(t) α^r(t) > 0.",
        doc=_C3V,
        checker=C3V_ + "check_c3v",
        runner=C3V_ + "run_c3v",
        builder=C3V_ + "factored_case",
        bounds=(C3V_ + "value_gradient_error_bound",),
        tests="tests/test_c3v.py",
        needs_negative_control=True,
        default_draws=30,
    ),
    Claim(
        id="C4a",
        title="storage step decreases the reverse loss, with explicit remainder",
        kind="per-draw",
        hypotheses=("H-rel", "H-orth", "H-bi"),
        statement="φ(η) = L_r(W_OV − η G_f) satisfies 0 ≤ φ(η) − φ(0) + η⟨G_r, G_f⟩ ≤ η² spread(a)²/8; the "
        "reverse loss strictly decreases for 0 < η < η* = 8⟨G_r, G_f⟩/spread(a)².",
        doc=_C4,
        checker=C4_ + "check_c4a",
        runner=C4_ + "run_c4a",
        bounds=(C4_ + "c4a_tolerances", C4_ + "logit_direction_error"),
        tests="tests/test_c4.py",
        needs_negative_control=True,
        default_draws=50,
    ),
    Claim(
        id="C4b",
        title="full-parameter Taylor test",
        kind="per-draw",
        hypotheses=(),
        statement="R(η) = L_r(θ − η g_f) − L_r(θ) + η⟨g_r, g_f⟩ = O(η²): observed order ≈ 2 over η = 2^−k until "
        "the float64 floor, and R(η)/η² → ½ g_fᵀ H_r g_f.",
        doc=_C4,
        checker=C4_ + "check_c4b",
        runner=C4_ + "run_c4b",
        bounds=(
            "mdm_props.taylor:taylor_floor",
            "mdm_props.taylor:taylor_relative_band",
            "mdm_props.taylor:taylor_order_band",
        ),
        tests="tests/test_c4.py",
        needs_negative_control=True,
        default_draws=10,
    ),
    Claim(
        id="C4c",
        title="full-gradient alignment is typical",
        kind="typical",
        hypotheses=("H-rel", "H-bi"),
        statement="⟨g_r, g_f⟩ > 0 for the full gradient is common but not guaranteed; reported as a rate with a "
        "Clopper–Pearson interval per positional encoding.",
        doc=_C4,
        checker=C4_ + "check_c4c",
        runner=C4_ + "run_c4c",
        bounds=("mdm_props.statistics:clopper_pearson",),
        tests="tests/test_c4.py",
        needs_negative_control=True,
        default_draws=200,
        false_alarm=STATED_FALSE_ALARM,
    ),
    # depth (THEORY §2b)
    Claim(
        id="C5",
        title="the reverse query is the forward query at a reflected route (any depth)",
        kind="identity",
        hypotheses=("H-rel", "H-bi", "H-mirror"),
        statement="log p_r(·|θ) = log p_f(·|Φθ) and ∇L_r(θ) = Φ∇L_f(Φθ) for the deep block (norms, SwiGLU, GQA, "
        "biases, either RoPE pairing), Φ the route reflection (J on W_Q, W_K and q/k biases for RoPE; "
        "b(δ) ↔ b(−δ) for T5; id for ALiBi and NoPE).",
        doc=_C5,
        checker=C5_ + "check_c5",
        runner=C5_ + "run_c5",
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
        doc=_C5,
        checker=C5_ + "check_c5",
        runner=C5_ + "run_c5b",
        bounds=("mdm_props.rounding_mode:with_error_bounds",),
        tests="tests/test_c5.py",
        needs_negative_control=True,
        default_draws=2,
    ),
    Claim(
        id="C6",
        title="per-layer storage alignment in the small-branch limit",
        kind="per-draw",
        hypotheses=("H-rel", "H-bi"),
        statement="⟨G_f^ℓ, G_r^ℓ⟩ = ‖JᵀUᵀ(p₀ − y)‖² Σ_h ⟨c_f^{ℓ,h}, c_r^{ℓ,h}⟩ + O(ε) for every layer ℓ of a deep "
        "block with branch scale ε (remainder of observed order 1 over ε = 2^−k); below a computed ε₀ "
        "the sign is positive where the leading term is.",
        doc=_C6,
        checker=C68_ + "check_c6",
        runner=C68_ + "run_c6",
        bounds=(C68_ + "c6_relative_band", C68_ + "c6_floor"),
        tests="tests/test_c6_c8.py",
        needs_negative_control=True,
        default_draws=2,
    ),
    Claim(
        id="C6a",
        title="the ARM's rate of positive alignment in the small-branch limit is at most 10%",
        kind="typical",
        hypotheses=("H-rel", "H-orth"),
        statement="For the ARM (causal, next-token targets B and A) at branch scale 2^−12 under H-orth (tied head, "
        "no final norm), P(⟨G_f^ℓ, G_r^ℓ⟩ > 0) ≤ 10%: the upper Clopper–Pearson bound (false alarm 1e-6) "
        "lies below 0.1; per-layer and per-norm rates reported.",
        doc=_C6,
        checker=C68_ + "check_c6a",
        runner=C68_ + "run_c6a",
        bounds=("mdm_props.statistics:clopper_pearson",),
        tests="tests/test_c6_c8.py",
        needs_negative_control=True,
        default_draws=500,
        false_alarm=STATED_FALSE_ALARM,
    ),
    Claim(
        id="C7",
        title="per-layer alignment at standard initialisation: MDM against ARM",
        kind="typical",
        hypotheses=("H-rel", "H-bi"),
        statement="At branch scale 1 with Gaussian embeddings (depth 1–4, plain and preset blocks) the "
        "Clopper–Pearson lower bound of P(cos(G_f^ℓ, G_r^ℓ) > 0) for the MDM exceeds the ARM's upper "
        "bound (false alarm 1e-6); per-layer and per-encoding rates reported.",
        doc=_C7,
        checker=C68_ + "check_c7",
        runner=C68_ + "run_c7",
        bounds=("mdm_props.statistics:clopper_pearson", C68_ + "c7_alpha"),
        tests="tests/test_c6_c8.py",
        needs_negative_control=True,
        default_draws=120,
        false_alarm=STATED_FALSE_ALARM,
    ),
    Claim(
        id="C8",
        title="a forward storage step at any layer lowers the reverse loss to first order",
        kind="per-draw",
        hypotheses=("H-rel", "H-bi"),
        statement="φ_ℓ(η) = L_r(θ − η e_ℓ G_f^ℓ) (only W_OV^ℓ moves): φ_ℓ(η) − φ_ℓ(0) + η⟨G_r^ℓ, G_f^ℓ⟩ = O(η²), "
        "observed order 2; at the last layer without final norm or MLP, C4a's 0 ≤ R(η) ≤ η² spread(a)²/8.",
        doc=_C8,
        checker=C68_ + "check_c8",
        runner=C68_ + "run_c8",
        bounds=(C68_ + "c6_relative_band", "mdm_props.taylor:taylor_floor", C68_ + "c8_c4a_tolerances"),
        tests="tests/test_c6_c8.py",
        needs_negative_control=True,
        default_draws=3,
    ),
)

BY_ID = {c.id: c for c in CLAIMS}


def get(claim_id: str) -> Claim:
    try:
        return BY_ID[claim_id]
    except KeyError:
        raise ValueError(f"unknown claim id {claim_id!r}; known: {', '.join(BY_ID)}") from None


def select(ids) -> list[Claim]:
    """Claims by id; all when ``ids`` is None. An exact claim id wins (``"C3"`` is the claim C3 alone,
    C3v has its own id); an id no claim has selects its family (``"C1"``: C1a, C1b, C1c)."""
    if ids is None:
        return list(CLAIMS)
    if isinstance(ids, str) or not ids:
        raise ValueError(f"ids must be a non-empty list of claim ids or families; got {ids!r}")
    chosen = []
    for i in ids:
        group = [c for c in CLAIMS if c.id == i] or [c for c in CLAIMS if len(i) == 2 and c.family == i]
        if not group:
            raise ValueError(f"unknown claim id {i!r}; known: {', '.join(BY_ID)} (or a family C0 … C8)")
        chosen += [c for c in group if c not in chosen]
    return chosen


def marked_ids(tests_dir) -> dict[str, dict[str, list[str]]]:
    """Claim ids named by ``pytest.mark.claim(...)``, ``pytest.mark.negative_control(...)`` and
    ``pytest.mark.meta(...)`` in the test files under ``tests_dir``: {marker: {id: [files]}}, files as
    paths relative to ``tests_dir``'s parent (static scan)."""
    import ast

    root = Path(tests_dir).resolve().parent
    found: dict[str, dict[str, list[str]]] = {"claim": {}, "negative_control": {}, "meta": {}}
    for path in sorted(Path(tests_dir).resolve().rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in found
                and isinstance(node.func.value, ast.Attribute)
                and node.func.value.attr == "mark"
            ):
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        found[node.func.attr].setdefault(arg.value, []).append(path.relative_to(root).as_posix())
    return found


def audit(tests_dir, docs_dir=DOCS, claims=CLAIMS) -> list[str]:
    """Completeness problems (empty when complete); see the module docstring."""
    problems = []
    marks = marked_ids(tests_dir)
    ids = {c.id for c in claims}
    for c in claims:
        for role, dotted in [("checker", c.checker), ("runner", c.runner)] + [("bound", b) for b in c.bounds]:
            try:
                if not callable(resolve(dotted)):
                    problems.append(f"{c.id}: {role} {dotted} is not callable")
            except ValueError as exc:
                problems.append(f"{c.id}: {role} {exc}")
        if not c.bounds:
            problems.append(f"{c.id}: no bound registered")
        if c.tests not in marks["claim"].get(c.id, []):
            problems.append(f"{c.id}: no test marked claim({c.id!r}) in its test file {c.tests}")
        if c.id not in marks["meta"]:
            problems.append(f"{c.id}: no meta-test marked meta({c.id!r}) (a test of its checker or bound on its own)")
        page = Path(docs_dir) / c.doc
        if not page.is_file():
            problems.append(f"{c.id}: doc page docs/{c.doc} is missing")
        elif c.id not in page.read_text():
            problems.append(f"{c.id}: doc page docs/{c.doc} does not mention {c.id}")
        if c.needs_negative_control:
            if c.id not in marks["negative_control"]:
                problems.append(f"{c.id}: no test marked negative_control({c.id!r})")
            try:
                if not c.negative_controls():
                    problems.append(f"{c.id}: no NegativeControl registered in {c.module}.NEGATIVE_CONTROLS")
            except (ImportError, AttributeError) as exc:
                problems.append(f"{c.id}: cannot read {c.module}.NEGATIVE_CONTROLS ({exc})")
    for kind, table in marks.items():
        for i, files in table.items():
            if i not in ids:
                problems.append(f"marker {kind}({i!r}) in {', '.join(sorted(set(files)))} names an unknown claim")
    return problems
