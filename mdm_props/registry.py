"""The claim registry: the generic machinery that collects every claim of THEORY.md.

Each claim module ``mdm_props/claims/c<N>_*.py`` declares its rows as ``CLAIMS = (Claim(...), ...)``: kind,
hypotheses, statement and where each piece lives, one hop each: its checker, runner and bounds (dotted
names ``"mdm_props.claims.<module>:<name>"``), its test file, its doc page; its negative controls are the
``NEGATIVE_CONTROLS`` of its module. :func:`collect` gathers the rows (``registry.CLAIMS``); nothing here
names a claim. A family is the id up to its first non-digit after ``C`` (:func:`family_of`).

:func:`audit` (run by ``tests/test_registry.py``) imports every name the registry gives and fails when
a claim lacks a checker, runner or bound that resolves, a test marked ``claim(id)`` in its test file,
a meta-test marked ``meta(id)`` in that same test file, a doc page that names it, or (where required) a
negative control both registered and tested; or when a marker names an unknown id.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("identity", "per-draw", "distributional", "typical")
# the shared hypotheses; a claim that introduces one declares it in its row (``Claim.defines``) and
# :func:`collect` adds it here
HYPOTHESES = {
    "H-rel": "relative positional encoding (rope, alibi, t5, none): positions enter only the scores",
    "H-orth": "orthonormal V+1 embeddings and tied unembedding (U Uᵀ = I, U x_M = 0); needs d ≥ V + 1",
    "H-bi": "bidirectional attention",
    "H-iso": "W_Q, W_K with iid N(0, σ²) entries (isotropic initialisation)",
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
    defines: dict = field(default_factory=dict)  # hypotheses this claim introduces: {id: statement}
    builder: str | None = None  # the runner's argument builder ("module:name"), None: search.case_args (replay)
    note: str | None = None  # printed under verify's table: what err/tol means when it is not a margin
    # the claim is asserted where a per-check precondition holds (C8: at aligned layers) and its checker reports
    # the other checks not-applicable with their reason: verify counts them (the n/a column) and fails the row
    # only when nothing was decided; for every other claim a not-applicable check fails the row
    counts_not_applicable: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}; got {self.kind!r}")
        if self.kind in ("distributional", "typical") and self.false_alarm is None:
            raise ValueError(f"{self.id}: a {self.kind} claim must state its false-alarm level (false_alarm=...)")
        if self.false_alarm is not None and not 0 < self.false_alarm < 1:
            raise ValueError(f"false_alarm must lie in (0, 1); got {self.false_alarm!r}")
        unknown = set(self.hypotheses) - set(HYPOTHESES) - set(self.defines)
        if unknown:
            raise ValueError(
                f"unknown hypotheses {sorted(unknown)}; allowed {sorted(HYPOTHESES)} or those the claim defines"
            )

    @property
    def family(self) -> str:
        """The family id (:func:`family_of`): C1 for C1a, C10 for C10 (never C1)."""
        return family_of(self.id)

    @property
    def module(self) -> str:
        """The claim family's module (the runner's)."""
        return self.runner.partition(":")[0]

    def run(self, draws: int, seed: int, device: str = "cpu"):
        """Run the registered runner."""
        return resolve(self.runner)(draws, seed, device)

    def negative_controls(self) -> list:
        return [n for n in importlib.import_module(self.module).NEGATIVE_CONTROLS if n.claim == self.id]


def _natural(module_name: str) -> tuple:
    """Sort key of a claim module ``c<number><rest>``: by the number, so that c10 follows c9."""
    head = module_name.lstrip("c")
    digits = head[: len(head) - len(head.lstrip("0123456789"))]
    return (int(digits) if digits else -1, module_name)


def collect() -> tuple[Claim, ...]:
    """Every claim module's ``CLAIMS`` rows (``mdm_props/claims/c*.py``), in the order of their ids (by family
    number, then the rest of the id: C0.2 < C0.2d < C0.3, C3 < C3v, C9 < C10), whatever the module names. A
    new claim adds its module; nothing here names it."""
    import pkgutil

    from . import claims as package

    names = sorted((m.name for m in pkgutil.iter_modules(package.__path__) if m.name.startswith("c")), key=_natural)
    rows: list[Claim] = []
    for name in names:
        rows += getattr(importlib.import_module(f"{package.__name__}.{name}"), "CLAIMS", ())
    rows.sort(key=lambda c: (int(family_of(c.id)[1:]), c.id))  # C0.1 … C0.2 < C0.2d < C0.3 …, C9 < C10
    for c in rows:  # a claim's new hypotheses join the table (cli's explain prints them)
        HYPOTHESES.update(c.defines)
    ids = [c.id for c in rows]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"claim ids must be unique across the claim modules; repeated: {dup}")
    return tuple(rows)


_COLLECTED: dict = {}


def __getattr__(name: str):
    """``CLAIMS`` (every row, :func:`collect`) and ``BY_ID`` ({id: row}), collected on first use: the claim
    modules import :class:`Claim` from here, so they cannot be imported while this module loads."""
    if name in ("CLAIMS", "BY_ID"):
        if not _COLLECTED:
            rows = collect()
            _COLLECTED.update(CLAIMS=rows, BY_ID={c.id: c for c in rows})
        return _COLLECTED[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get(claim_id: str) -> Claim:
    by_id = __getattr__("BY_ID")
    try:
        return by_id[claim_id]
    except KeyError:
        raise ValueError(f"unknown claim id {claim_id!r}; known: {', '.join(by_id)}") from None


def family_of(claim_id: str) -> str:
    """A claim's family: its id up to the first non-digit after the leading ``C`` (C1a → C1, C0.3 → C0,
    C10 → C10): a family id can never be the prefix of another family's id."""
    if not isinstance(claim_id, str) or not claim_id.startswith("C"):
        raise ValueError(f"claim_id must start with 'C'; got {claim_id!r}")
    rest = claim_id[1:]
    return "C" + rest[: len(rest) - len(rest.lstrip("0123456789"))]


def select(ids) -> list[Claim]:
    """Claims by id; all when ``ids`` is None. An exact claim id wins (``"C3"`` is the claim C3 alone,
    C3v has its own id); an id no claim has selects its family (``"C1"``: C1a, C1b, C1c)."""
    claims = __getattr__("CLAIMS")
    if ids is None:
        return list(claims)
    if isinstance(ids, str) or not ids:
        raise ValueError(f"ids must be a non-empty list of claim ids or families; got {ids!r}")
    chosen = []
    for i in ids:
        group = [c for c in claims if c.id == i] or [c for c in claims if c.family == i]
        if not group:
            families = sorted({c.family for c in claims}, key=lambda f: int(f[1:]))
            raise ValueError(
                f"unknown claim id {i!r}; known: {', '.join(c.id for c in claims)} (or a family {', '.join(families)})"
            )
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


def audit(tests_dir, docs_dir=DOCS, claims=None) -> list[str]:
    """Completeness problems (empty when complete; ``claims`` default: every row); see the module docstring."""
    claims = __getattr__("CLAIMS") if claims is None else claims
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
        if c.tests not in marks["meta"].get(c.id, []):
            problems.append(
                f"{c.id}: no meta-test marked meta({c.id!r}) in its test file {c.tests} "
                "(a test of its checker or bound on its own)"
            )
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
