"""The claim registry: one place listing every claim of THEORY.md with its kind, hypotheses,
statement, doc page, checker module and negative controls.

Each claim module (``mdm_props.claims.c0`` … ``c4``) exports
``RUNNERS: dict[claim id, callable(draws, seed, device) -> list[CheckResult]]`` and
``NEGATIVE_CONTROLS: list[NegativeControl]``. ``tests/test_registry.py`` fails when a claim lacks a
runner, a test, a doc page or (where required) a negative control, or a marker names an unknown id.
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


@dataclass(frozen=True)
class Claim:
    id: str
    title: str
    kind: str
    hypotheses: tuple[str, ...]
    statement: str
    doc: str  # path relative to docs/
    module: str
    needs_negative_control: bool
    default_draws: int

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}; got {self.kind!r}")
        unknown = set(self.hypotheses) - set(HYPOTHESES)
        if unknown:
            raise ValueError(f"unknown hypotheses {sorted(unknown)}; allowed {sorted(HYPOTHESES)}")

    @property
    def family(self) -> str:
        return self.id[:2]

    def runner(self):
        return importlib.import_module(self.module).RUNNERS[self.id]

    def negative_controls(self) -> list:
        return [n for n in importlib.import_module(self.module).NEGATIVE_CONTROLS if n.claim == self.id]


_C0, _C1, _C2 = "claims/C0-oracles.md", "claims/C1-reusable-evidence.md", "claims/C2-correlated-routes.md"
_C3, _C4 = "claims/C3-aligned-storage-gradient.md", "claims/C4-reverse-loss-decrease.md"
_M = "mdm_props.claims."
_C5 = "claims/C5-reflected-route.md"

CLAIMS: tuple[Claim, ...] = (
    Claim("C0.1", "RoPE relativity and rotation facts", "identity", (),
          "R_δ is orthogonal, R_δᵀ = R_{−δ}, R_a R_b = R_{a+b}, (R_m q)ᵀ(R_n k) = qᵀ R_{n−m} k, to float64 rounding.",
          _C0, _M + "c0", False, 50),
    Claim("C0.2", "float64 model against an mpmath oracle", "identity", (),
          "Scores, attention, logits and loss agree with a ≥ 50-digit mpmath evaluation within the derived "
          "dot-product rounding bound.", _C0, _M + "c0", False, 5),
    Claim("C0.3", "autograd against closed-form gradients", "identity", (),
          "∂L/∂W_OV = Uᵀ(p − y)cᵀ; ∂s/∂W_Q = R k xᵀ/√d_k, ∂s/∂W_K = Rᵀ q xᵀ/√d_k.", _C0, _M + "c0", False, 20),
    Claim("C0.4", "masked-diffusion objective", "identity", (),
          "The 1/t-weighted masked loss has expectation Σ_S Σ_{i∈S} −log p(x_i | x_S masked)/(|S| C(L,|S|)); "
          "the Monte Carlo estimator has the matching distribution (false-alarm probability 1e-6).",
          _C0, _M + "c0", False, 3),
    Claim("C0.5", "CPU against CUDA", "identity", (),
          "The float64 model on CUDA agrees with the CPU within the derived float64 bound.", _C0, _M + "c0", False, 5),
    Claim("C1a", "position-free storage", "per-draw", ("H-rel",),
          "z_f = U(x_M + W_OV c_f), z_r = U(x_M + W_OV c_r): each token's value contribution is the same in both "
          "configurations; with token-aligned attention forced equal, forward and reverse logits are identical.",
          _C1, _M + "c1", True, 50),
    Claim("C1b", "evidence strengthening", "per-draw", ("H-rel", "H-orth"),
          "One storage step W_OV ← W_OV − η ∂L_f/∂W_OV changes ε(A←B) = u_Aᵀ W_OV x_B by exactly "
          "η (1 − p_f(A)) α^f(B) > 0.", _C1, _M + "c1", True, 50),
    Claim("C1c", "reuse by the reverse query", "per-draw", ("H-rel", "H-orth"),
          "The same step changes the reverse logits by exactly η (y − p_f)(c_fᵀ c_r); the reverse margin "
          "z_r(A) − z_r(v) grows by η (1 − p_f(A) + p_f(v)) c_fᵀ c_r > 0 for every v ≠ A.",
          _C1, _M + "c1", True, 50),
    Claim("C2a", "forward/reverse score correlation at initialisation", "distributional", ("H-iso",),
          "Corr(S_f, S_r) = tr(R_g)/d_k = (2/d_k) Σ_l cos(g θ_l), g = 2Δ; as d_k → ∞, ∫₀¹ cos(g base^(−u)) du.",
          _C2, _M + "c2", True, 2000),
    Claim("C2b", "route-gradient identity", "identity", (),
          "⟨∇S_f, ∇S_r⟩ over (W_Q, W_K) = Σ_l cos(g θ_l)(‖x_M‖² ‖k_l‖² + ‖x_B‖² ‖q_l‖²) for the unscaled scores.",
          _C2, _M + "c2", True, 50),
    Claim("C2c", "forward training raises reverse attention", "typical", ("H-rel", "H-bi"),
          "After forward-only training the reverse attention to B rises with the forward attention to B, "
          "and the across-pair correlation of S_f and S_r rises; reported as a rate with a Clopper–Pearson interval.",
          _C2, _M + "c2", True, 30),
    Claim("C3", "positively aligned shared-storage gradient", "per-draw", ("H-rel", "H-orth", "H-bi"),
          "⟨G_f, G_r⟩ = [(1 − p_f(A))(1 − p_r(A)) + Σ_{v≠A} p_f(v) p_r(v)] Σ_t α^f(t) α^r(t) "
          "≥ (1 − p_f(A))(1 − p_r(A)) Σ_t α^f(t) α^r(t) > 0; multi-head: a sum of such terms.",
          _C3, _M + "c3", True, 50),
    Claim("C3v", "C3 for a separate value path W_O W_V", "per-draw", ("H-rel", "H-orth", "H-bi", "H-Oorth"),
          "With W_OV = W_O W_V and W_O square orthogonal, ⟨∂L_f/∂W_V, ∂L_r/∂W_V⟩ equals C3's product "
          "[(1 − p_f(A))(1 − p_r(A)) + Σ_{v≠A} p_f(v) p_r(v)] Σ_t α^f(t) α^r(t) > 0.",
          "claims/C3v-separate-value-path.md", _M + "c3v", True, 30),
    Claim("C4a", "storage step decreases the reverse loss, with explicit remainder", "per-draw",
          ("H-rel", "H-orth", "H-bi"),
          "φ(η) = L_r(W_OV − η G_f) satisfies 0 ≤ φ(η) − φ(0) + η⟨G_r, G_f⟩ ≤ η² spread(a)²/8; the reverse "
          "loss strictly decreases for 0 < η < η* = 8⟨G_r, G_f⟩/spread(a)².", _C4, _M + "c4", True, 50),
    Claim("C4b", "full-parameter Taylor test", "per-draw", (),
          "R(η) = L_r(θ − η g_f) − L_r(θ) + η⟨g_r, g_f⟩ = O(η²): observed order ≈ 2 over η = 2^−k until the "
          "float64 floor, and R(η)/η² → ½ g_fᵀ H_r g_f.", _C4, _M + "c4", True, 10),
    Claim("C4c", "full-gradient alignment is typical", "typical", ("H-rel", "H-bi"),
          "⟨g_r, g_f⟩ > 0 for the full gradient is common but not guaranteed; reported as a rate with a "
          "Clopper–Pearson interval per positional encoding.", _C4, _M + "c4", True, 200),
    # depth (THEORY §2b)
    Claim("C5", "the reverse query is the forward query at a reflected route (any depth)", "identity",
          ("H-rel", "H-bi", "H-mirror"),
          "log p_r(·|θ) = log p_f(·|Φθ) and ∇L_r(θ) = Φ∇L_f(Φθ) for the deep block (norms, SwiGLU, GQA, biases, "
          "either RoPE pairing), Φ the route reflection (J on W_Q, W_K and q/k biases for RoPE; b(δ) ↔ b(−δ) "
          "for T5; id for ALiBi and NoPE).", _C5, _M + "c5_reflected_route", True, 3),
    Claim("C5b", "Φ fixes the storage: the reverse query reads what the forward query writes", "identity",
          ("H-rel", "H-bi", "H-mirror"),
          "∇_S L_r(θ) = ∇_S L_f(Φθ) on every storage parameter S (embeddings, value path, MLP, norm gains, head), "
          "at any depth.", _C5, _M + "c5_reflected_route", True, 2),
)

BY_ID = {c.id: c for c in CLAIMS}


def get(claim_id: str) -> Claim:
    try:
        return BY_ID[claim_id]
    except KeyError:
        raise ValueError(f"unknown claim id {claim_id!r}; known: {', '.join(BY_ID)}") from None


def select(ids) -> list[Claim]:
    """Claims by id (``"C1"`` selects C1a, C1b, C1c); all when ``ids`` is empty or None."""
    if not ids:
        return list(CLAIMS)
    chosen = []
    for i in ids:
        group = [c for c in CLAIMS if c.id == i or (len(i) == 2 and c.family == i)]
        if not group:
            raise ValueError(f"unknown claim id {i!r}; known: {', '.join(BY_ID)} (or a family C0 … C5)")
        chosen += [c for c in group if c not in chosen]
    return chosen


def marked_ids(tests_dir) -> dict[str, dict[str, list[str]]]:
    """Claim ids named by ``pytest.mark.claim(...)`` / ``pytest.mark.negative_control(...)`` in the
    test files under ``tests_dir``: {"claim": {id: [files]}, "negative_control": {id: [files]}} (static scan)."""
    import ast

    found = {"claim": {}, "negative_control": {}}
    for path in sorted(Path(tests_dir).rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in found
                    and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "mark"):
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        found[node.func.attr].setdefault(arg.value, []).append(path.name)
    return found


def audit(tests_dir, docs_dir=DOCS, claims=CLAIMS) -> list[str]:
    """Completeness problems (empty when complete): a claim without a runner, a test, a doc page that
    names it, or (where required) a negative control both registered and tested; a marker naming an
    unknown claim; a negative control attached to an unknown claim."""
    problems = []
    marks = marked_ids(tests_dir)
    ids = {c.id for c in claims}
    for c in claims:
        try:
            c.runner()
        except (ImportError, KeyError, AttributeError) as exc:
            problems.append(f"{c.id}: no runner in {c.module}.RUNNERS ({type(exc).__name__}: {exc})")
        if c.id not in marks["claim"]:
            problems.append(f"{c.id}: no test marked claim({c.id!r})")
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
