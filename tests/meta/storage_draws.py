"""Fixed storage-claim draws and input perturbations shared by the C1, C3 and C4 meta-tests (tests/test_c1.py,
tests/test_c3.py, tests/test_c4.py and tests/meta/test_checkers_c1_c3_c4.py); not a test module."""

from mdm_props import storage
from mdm_props.facts import Template, canonical_template
from mdm_props.model import RELATIVE_ENCODINGS, ModelConfig
from mdm_props.params import init_params

# fixed draws: every relative encoding, one to three heads, a longer template with a repeated filler
DRAWS = [
    (
        ModelConfig(vocab=5, d_model=8, d_head=4, n_heads=1 + n % 3, pos=pos),
        7 + n,
        (1.0, 2.0)[n % 2],
        canonical_template(2) if n % 2 else Template(5, 1, 3, (2, 4, 2)),
    )
    for n, pos in enumerate(RELATIVE_ENCODINGS)
]
A, B, ETA = 0, 1, 0.1


def draw(n, device="cpu"):
    cfg, seed, scale, template = DRAWS[n]
    return init_params(cfg, seed, scale=scale, orthonormal=True, device=device), cfg, template


def relative_scaling(monkeypatch, factor_for_query):
    """Make storage.storage_gradient return (1 + s) G for the queries ``factor_for_query`` maps to s."""
    real = storage.storage_gradient

    def scaled(params, cfg, query):
        G, state = real(params, cfg, query)
        return G * (1 + factor_for_query(query)), state

    monkeypatch.setattr(storage, "storage_gradient", scaled)  # the per-draw backend's gradient (mdm_props.claim)


def _ten_bounds(result):
    """The relative change of the gradient that moves ``result.observed`` by 10 tolerances."""
    return 10 * result.tolerance / abs(result.reference)
