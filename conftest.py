"""Test configuration: Hypothesis profiles, the ``device`` parameter, CUDA determinism, markers.

Profiles (choose with ``HYPOTHESIS_PROFILE=...``; ``ci`` is the default when ``CI`` is set):
  ci        built on Hypothesis's own ``ci`` profile (derandomized, no database); 100 examples
  dev       fast local runs: 25 examples, random seeds, example database
  thorough  2,000 examples, random seeds; ``hypothesis.target()`` hunts the worst margins

Every test that takes a ``device`` argument runs for ``cpu`` and ``cuda``. Without a GPU the
``cuda`` cases are skipped, unless ``MDM_PROPS_REQUIRE_CUDA=1`` turns that skip into a failure.
"""

import os

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before the first cuBLAS call

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", parent=settings.get_profile("ci"), deadline=None, max_examples=100, print_blob=True)
settings.register_profile("dev", deadline=None, max_examples=25)
settings.register_profile("thorough", deadline=None, max_examples=2000, derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

torch.use_deterministic_algorithms(True, warn_only=True)
# One intra-op thread per process: the tensors here are tiny, and with 2 xdist workers on 2 cores
# OpenMP's second thread only waits for a busy core (measured: a C1b check takes 5x longer).
torch.set_num_threads(1)
if torch.cuda.is_available():
    torch.backends.cudnn.benchmark = False


# Hypothesis draws the structure and a seed; the batched claim tests check this many parameter draws of it
# per example (mdm_props.batched): 20 in ci/dev (20× the draws of a per-draw example for about 1.5–3× its
# time), 256 under `thorough`, which hunts with large batches.
BATCH_DRAWS = {"thorough": 256}.get(os.environ.get("HYPOTHESIS_PROFILE", ""), 20)


@pytest.fixture(scope="session")
def batch_draws() -> int:
    """Parameter draws per Hypothesis example in the batched claim tests (session scope: no health check)."""
    return BATCH_DRAWS


def pytest_generate_tests(metafunc):
    """Parametrize every test that takes ``device`` over cpu and cuda (a plain parameter, not a
    fixture, so ``@given`` tests trip no function-scoped-fixture health check)."""
    explicit = any(m.args and "device" in str(m.args[0]) for m in metafunc.definition.iter_markers("parametrize"))
    if "device" in metafunc.fixturenames and not explicit:
        metafunc.parametrize(
            "device", [pytest.param("cpu"), pytest.param("cuda", marks=pytest.mark.xdist_group("cuda"))]
        )


def pytest_runtest_setup(item):
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get("device") == "cuda" and not torch.cuda.is_available():
        if os.environ.get("MDM_PROPS_REQUIRE_CUDA") == "1":
            pytest.fail("MDM_PROPS_REQUIRE_CUDA=1 but torch.cuda.is_available() is False")
        pytest.skip("no CUDA device (set MDM_PROPS_REQUIRE_CUDA=1 on GPU runners to make this a failure)")


def pytest_report_header(config):
    return (
        f"mdm_props: torch {torch.__version__}, cuda available: {torch.cuda.is_available()}, "
        f"hypothesis profile: {settings._current_profile}"
    )


def pytest_collection_modifyitems(config, items):
    """A ``claim``/``negative_control``/``meta`` marker must name exactly one registered claim id."""
    from mdm_props.registry import BY_ID

    for item in items:
        for name in ("claim", "negative_control", "meta"):
            for mark in item.iter_markers(name):
                if len(mark.args) != 1 or mark.args[0] not in BY_ID:
                    raise pytest.UsageError(
                        f"{item.nodeid}: @pytest.mark.{name}{mark.args} must name one claim id of {', '.join(BY_ID)}"
                    )


# ---------------------------------------------------------------------------------------------
# the margin summary: every list of CheckResults that mdm_props.checks.assert_holds checks is
# recorded per claim; xdist workers send theirs to the controller (workeroutput), which prints one
# line per claim at the end of the run (draws, checks, smallest margin, largest err/tol, status).

MARGINS_KEY = "mdm_props_margins"


class MarginLog:
    """Per claim id: draws (a list of one draw's results counts 1; a runner's list counts its distinct
    ``details["draw"]``), checks, smallest margin, largest err/tol, failing checks (undecided checks are
    counted apart, never as failing, and left out of the margins)."""

    def __init__(self):
        self.rows: dict[str, dict] = {}

    def __call__(self, results) -> None:
        import math

        by_claim: dict[str, list] = {}
        for r in results:
            by_claim.setdefault(r.claim, []).append(r)
        for claim, rs in by_claim.items():
            draws = {repr(sorted(r.details["draw"].items())) for r in rs if isinstance(r.details.get("draw"), dict)}
            decided = [r for r in rs if not r.undecided]  # an undecided check is counted, not judged
            margins = [r.margin for r in decided if not math.isnan(r.margin)]
            ratios = [r.error_ratio for r in decided if not math.isnan(r.error_ratio)]
            self.merge(
                claim,
                {
                    "draws": max(1, len(draws)),
                    "checks": len(rs),
                    "worst_margin": min(margins, default=math.inf),
                    "worst_error_ratio": max(ratios, default=0.0),
                    "failed": sum(not r.holds for r in decided),
                    "undecided": len(rs) - len(decided),
                },
            )

    def merge(self, claim: str, row: dict) -> None:
        old = self.rows.get(claim)
        if old is None:
            self.rows[claim] = dict(row)
            return
        old["draws"] += row["draws"]
        old["checks"] += row["checks"]
        old["failed"] += row["failed"]
        old["undecided"] = old.get("undecided", 0) + row.get("undecided", 0)
        old["worst_margin"] = min(old["worst_margin"], row["worst_margin"])
        old["worst_error_ratio"] = max(old["worst_error_ratio"], row["worst_error_ratio"])

    def lines(self, known) -> list[str]:
        head = f"{'claim':<6} {'draws':>7} {'checks':>7} {'margin':>10} {'err/tol':>9}  status"
        out = [head]
        for claim in [c for c in known if c in self.rows]:
            r = self.rows[claim]
            status = "holds" if not r["failed"] else f"VIOLATED ({r['failed']} checks)"
            if r.get("undecided"):
                status += f" ({r['undecided']} undecided)"
            out.append(
                f"{claim:<6} {r['draws']:>7} {r['checks']:>7} {r['worst_margin']:>10.3g} "
                f"{r['worst_error_ratio']:>9.3g}  {status}"
            )
        return out


def pytest_configure(config):
    from mdm_props import checks

    config._mdm_margins = MarginLog()
    checks.add_result_listener(config._mdm_margins)


def pytest_unconfigure(config):
    from mdm_props import checks

    log = getattr(config, "_mdm_margins", None)
    if log is not None:
        checks.remove_result_listener(log)


def pytest_sessionfinish(session):
    config = session.config
    if hasattr(config, "workeroutput"):  # an xdist worker: hand the rows to the controller
        import json

        config.workeroutput[MARGINS_KEY] = json.dumps(config._mdm_margins.rows)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    import json

    rows = json.loads(getattr(node, "workeroutput", {}).get(MARGINS_KEY, "{}"))
    for claim, row in rows.items():
        node.config._mdm_margins.merge(claim, row)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    from mdm_props.registry import BY_ID

    log = getattr(config, "_mdm_margins", None)
    if log is None or hasattr(config, "workeroutput") or not any(c in BY_ID for c in log.rows):
        return
    terminalreporter.section("claim margins (checked by assert_holds)")
    for line in log.lines(list(BY_ID)):
        terminalreporter.write_line(line)
