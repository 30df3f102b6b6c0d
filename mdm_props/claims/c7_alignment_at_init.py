"""C7 — per-layer storage alignment at standard initialisation (typical; THEORY §2b).

At branch scale 1 and Gaussian embeddings the rate of ``cos(G_f^ℓ, G_r^ℓ) > 0`` of the MDM (each relative
encoding) is separated from the ARM's (:func:`check_c7`); :func:`depth_rates` gives the rate against the
init scale for the depth figure (``mdm-props plot depth``). The deep draw and the per-layer storage
gradients are :mod:`mdm_props.layer_storage`'s.
"""

from __future__ import annotations

import random
from pathlib import Path

from ..arguments import PNG_SUFFIX, require_output_file
from ..checks import CheckResult, Counterexample, NegativeControl, inequality
from ..facts import Template
from ..layer_storage import MAX_SEED, QUERY_KINDS, StorageCase, layer_cosines
from ..model import RELATIVE_ENCODINGS, ModelConfig, preset
from ..params import resolve_device
from ..plots import pyplot, save
from ..progress import Progress
from ..statistics import FALSE_ALARM, clopper_pearson
from ..validation import require_choice, require_int, require_seed

BLOCKS = ("plain", "llada-like", "dream-like", "smdm-like")

# ---------------------------------------------------------------------------------------------
# C7 — alignment at standard initialisation (typical)

C7_SCALES = (1.0, 3.0, 10.0)  # init scales of the depth figure


def c7_case(rng: random.Random, *, kind: str, pos: str, block: str, n_layers: int, scale: float = 1.0) -> StorageCase:
    """A C7 draw: Gaussian embeddings, branch scale 1, the canonical template "A r B" with A, B, r
    distinct; ``block`` "plain" (V = 8, d = 16, d_k = 4, 2 heads, no norm, no MLP) or a preset
    (model.preset, V = 8, d = 16, d_k = 4, 4 heads, RMSNorm, SwiGLU, half-split RoPE) with the merged value
    path (G^ℓ = ∂L/∂W_OV^ℓ), no value bias and read-out at the slot (offset 0, also for dream-like)."""
    require_choice("kind", kind, QUERY_KINDS)
    require_choice("block", block, BLOCKS)
    attention = "causal" if kind == "arm" else "bidirectional"
    if block == "plain":
        cfg = ModelConfig(vocab=8, d_model=16, d_head=4, n_heads=2, n_layers=n_layers, pos=pos, attention=attention)
    else:
        if pos != "rope":
            raise ValueError(f"pos must be 'rope' for the preset block {block!r} (the presets use RoPE); got {pos!r}")
        cfg = preset(block, n_layers=n_layers, attention=attention, merged_ov=True, v_bias=False, readout_offset=0)
    A, B, r = rng.sample(range(cfg.vocab), 3)
    return StorageCase(cfg, rng.randint(0, MAX_SEED), scale, False, Template(3, 0, 2, (r,)), A, B, kind)


def c7_group_cases(draws: int, seed: int, *, kind: str, pos: str, scale: float = 1.0, n_layers=None):
    """``draws`` seeded C7 draws of one group (MDM with encoding ``pos``, or the ARM with ``pos``): depth
    uniform on 1–4 (or ``n_layers``); blocks: plain, and for RoPE the three presets too (uniform)."""
    rng = random.Random(require_seed("seed", seed))
    blocks = BLOCKS if pos == "rope" else ("plain",)
    for _ in range(require_int("draws", draws, 1)):
        L = rng.randint(1, 4) if n_layers is None else n_layers
        yield c7_case(rng, kind=kind, pos=pos, block=rng.choice(blocks), n_layers=L, scale=scale)


def alignment_signs(
    draws: int, seed: int, device: str = "cpu", *, kind: str, pos, scale: float = 1.0, n_layers=None
) -> dict:
    """One group's outcomes: ``per_layer`` {ℓ: [positive, draws]} over every layer of every draw, and the
    asserted statistic ``chosen`` [positive, draws]: per draw the sign of cos(G_f^ℓ, G_r^ℓ) at one layer ℓ
    drawn uniformly (one independent Bernoulli outcome per draw, as Clopper–Pearson needs). ``pos``: one
    encoding, or a tuple taken in turn (the ARM pools the encodings)."""
    resolve_device(device)
    encodings = (pos,) if isinstance(pos, str) else tuple(pos)
    per_layer: dict[int, list[int]] = {}
    per_encoding: dict[str, list[int]] = {}
    chosen = [0, 0]
    rng = random.Random(require_seed("seed", seed) + 7)
    for i, enc in enumerate(encodings):
        n = draws // len(encodings) + (i < draws % len(encodings))
        if n == 0:
            continue
        for case in c7_group_cases(n, seed + i, kind=kind, pos=enc, scale=scale, n_layers=n_layers):
            fq, rq = case.queries()
            cos = layer_cosines(case.params(device), case.cfg, fq, rq)
            for layer, c in enumerate(cos.tolist(), 1):
                cell = per_layer.setdefault(layer, [0, 0])
                cell[0] += c > 0
                cell[1] += 1
            pick = rng.randrange(case.cfg.n_layers)
            chosen[0] += bool(cos[pick] > 0)
            chosen[1] += 1
            cell = per_encoding.setdefault(enc, [0, 0])
            cell[0] += bool(cos[pick] > 0)
            cell[1] += 1
    return {"per_layer": {k: per_layer[k] for k in sorted(per_layer)}, "chosen": chosen, "per_encoding": per_encoding}


def c7_alpha(comparisons: int = 1, alpha: float = FALSE_ALARM) -> float:
    """Bonferroni: each comparison "lower(MDM_e) > upper(ARM)" uses two-sided (1 − α_c) intervals,
    α_c = alpha/comparisons. A false separation needs the MDM interval to miss above (prob. ≤ α_c/2) or
    the ARM's to miss below (≤ α_c/2): ≤ α_c per comparison, ≤ alpha over all of them."""
    return alpha / require_int("comparisons", comparisons, 1)


def check_c7(groups: dict, alpha: float = FALSE_ALARM) -> list[CheckResult]:
    """C7 on the outcomes of :func:`alignment_signs`: ``groups`` = {"arm": …, encoding: … (MDM)}. For each
    MDM encoding: Clopper–Pearson lower bound of its rate > the ARM's upper bound (:func:`c7_alpha`)."""
    if "arm" not in groups:
        raise ValueError(f"groups must hold the 'arm' outcomes; got keys {sorted(groups)}")
    mdm = [e for e in groups if e != "arm"]
    if not mdm:
        raise ValueError(f"groups must hold at least one MDM group besides 'arm'; got keys {sorted(groups)}")
    a = c7_alpha(len(mdm), alpha)
    k_arm, n_arm = groups["arm"]["chosen"]
    arm_lo, arm_hi = clopper_pearson(k_arm, n_arm, a)
    out = []
    for e in mdm:
        k, n = groups[e]["chosen"]
        lo, hi = clopper_pearson(k, n, a)
        rates = lambda g: {layer: (c[0] / c[1], c[1]) for layer, c in g["per_layer"].items()}  # noqa: E731
        out.append(
            inequality(
                "C7",
                f"lower CP bound of P(cos(G_f^ℓ, G_r^ℓ) > 0), MDM ({e}), > the ARM's upper bound",
                lo,
                arm_hi,
                ">",
                1.0,
                mdm_rate=k / n,
                mdm_interval=(lo, hi),
                arm_rate=k_arm / n_arm,
                arm_interval=(arm_lo, arm_hi),
                alpha=alpha,
                alpha_per_comparison=a,
                comparisons=len(mdm),
                mdm_per_layer=rates(groups[e]),
                arm_per_layer=rates(groups["arm"]),
                mdm_per_encoding=groups[e].get("per_encoding"),
                arm_per_encoding=groups["arm"].get("per_encoding"),
            )
        )
    return out


def c7_groups(
    draws: int, seed: int, device: str = "cpu", *, per_encoding: bool = False, scale: float = 1.0, n_layers=None
) -> dict:
    """The outcomes of the groups, ``draws`` draws each: the ARM (encodings in turn) and the MDM, either
    pooled over the relative encodings (one group "relative", encodings in turn; one comparison) or one
    group per encoding (``per_encoding``; four comparisons, Bonferroni in :func:`c7_alpha`)."""
    if per_encoding:
        groups = {
            e: alignment_signs(draws, seed + 101 * i, device, kind="mdm", pos=e, scale=scale, n_layers=n_layers)
            for i, e in enumerate(RELATIVE_ENCODINGS)
        }
    else:
        groups = {
            "relative": alignment_signs(
                draws, seed, device, kind="mdm", pos=RELATIVE_ENCODINGS, scale=scale, n_layers=n_layers
            )
        }
    groups["arm"] = alignment_signs(
        draws, seed + 997, device, kind="arm", pos=RELATIVE_ENCODINGS, scale=scale, n_layers=n_layers
    )
    return groups


def run_c7(draws: int, seed: int, device: str = "cpu") -> list[CheckResult]:
    """C7 with ``draws`` draws per group: the MDM pooled over the relative encodings (each encoding's rate
    reported) against the ARM; one comparison at false alarm 1e-6."""
    return check_c7(c7_groups(draws, seed, device))


def depth_rates(
    draws: int,
    seed: int,
    device: str = "cpu",
    scales=C7_SCALES,
    depths=(1, 2, 3, 4),
    pos: str = "rope",
    *,
    progress=None,
) -> dict:
    """{(kind, depth, scale): rate of cos > 0 over every layer} for the depth figure (plain and preset
    blocks, MDM with ``pos`` and the ARM); ``progress(k, n)`` is called after each of the n points."""
    out: dict = {}
    total = len(QUERY_KINDS) * len(depths) * len(scales)
    for kind in QUERY_KINDS:
        for L in depths:
            for s in scales:
                g = alignment_signs(draws, seed, device, kind=kind, pos=pos, scale=s, n_layers=L)
                k = sum(c[0] for c in g["per_layer"].values())
                n = sum(c[1] for c in g["per_layer"].values())
                out[(kind, L, s)] = k / n
                if progress:
                    progress(len(out), total)
    return out


# ---------------------------------------------------------------------------------------------
# negative control


def c7_arm_as_mdm(draws: int, seed: int, device: str = "cpu") -> Counterexample:
    """C7's separation with the ARM on both sides (H-bi dropped from the 'MDM' group): no separation."""
    resolve_device(device)
    n = max(draws, 1)
    groups = {
        "causal": alignment_signs(n, seed, device, kind="arm", pos=RELATIVE_ENCODINGS),
        "arm": alignment_signs(n, seed + 997, device, kind="arm", pos=RELATIVE_ENCODINGS),
    }
    r = check_c7(groups)[0]
    if r.holds:
        return Counterexample("C7", "H-bi (the MDM group replaced by causal ARM draws)", False, 2 * n)
    return Counterexample(
        "C7",
        "H-bi (the MDM group replaced by causal ARM draws)",
        True,
        2 * n,
        {
            "lower": r.observed,
            "arm_upper": r.reference,
            "rate": r.details["mdm_rate"],
            "arm_rate": r.details["arm_rate"],
        },
        float(r.observed - r.reference),
    )


NEGATIVE_CONTROLS = [
    NegativeControl(
        "C7~arm",
        "C7",
        "H-bi (both groups causal)",
        "with ARM draws in place of the MDM's the rates are not separated",
        c7_arm_as_mdm,
        40,
    ),
]


# ---------------------------------------------------------------------------------------------
# the registry rows (collected by mdm_props.registry)

from ..registry import STATED_FALSE_ALARM, Claim  # noqa: E402  (the rows sit at the end of the module)

_M = __name__ + ":"
CLAIMS = (
    Claim(
        id="C7",
        title="per-layer alignment at standard initialisation: MDM against ARM",
        kind="typical",
        hypotheses=("H-rel", "H-bi"),
        statement="At branch scale 1 with Gaussian embeddings (depth 1–4, plain and preset blocks) the "
        "Clopper–Pearson lower bound of P(cos(G_f^ℓ, G_r^ℓ) > 0) for the MDM exceeds the ARM's upper "
        "bound (false alarm 1e-6); per-layer and per-encoding rates reported.",
        doc="claims/C7-alignment-at-init.md",
        checker=_M + "check_c7",
        runner=_M + "run_c7",
        bounds=("mdm_props.statistics:clopper_pearson", _M + "c7_alpha"),
        tests="tests/test_c7.py",
        needs_negative_control=True,
        default_draws=120,
        false_alarm=STATED_FALSE_ALARM,
    ),
)


# ---------------------------------------------------------------------------------------------
# the figure (mdm-props plot depth)


def plot_depth(
    path,
    *,
    draws: int = 40,
    seed: int = 0,
    scales=(0.5, 1.0, 2.0, 3.0, 5.0, 10.0),
    depths=(1, 2, 3, 4),
    pos: str = "rope",
    quiet: bool = False,
) -> Path:
    """C7: the rate of cos(G_f^ℓ, G_r^ℓ) > 0 over every layer against the init scale, one line per depth,
    MDM (solid) and ARM (dashed), ``draws`` draws per point (plain and preset blocks, encoding ``pos``;
    :func:`mdm_props.claims.c7_alignment_at_init.depth_rates`), with a progress bar on stderr over the
    points (:class:`mdm_props.progress.Progress`; ``quiet=True``: none). Writes a PNG to ``path`` and
    returns it."""
    if not scales or any(isinstance(s, bool) or not isinstance(s, (int, float)) or not s > 0 for s in scales):
        raise ValueError(f"scales must be numbers > 0; got {scales!r}")
    path = require_output_file("path", path, PNG_SUFFIX)
    plt = pyplot()
    with Progress(len(QUERY_KINDS) * len(depths) * len(scales), "plot depth", quiet=quiet) as bar:
        rates = depth_rates(
            draws, seed, "cpu", scales=tuple(scales), depths=tuple(depths), pos=pos, progress=bar.callback
        )
    fig, ax = plt.subplots(figsize=(6, 3.8), dpi=100)
    for i, L in enumerate(depths):
        for kind, ls in (("mdm", "-"), ("arm", "--")):
            ax.plot(
                scales,
                [rates[(kind, L, s)] for s in scales],
                color=f"C{i}",
                ls=ls,
                marker=".",
                label=f"{kind.upper()}, depth {L}",
            )
    ax.axhline(0.5, color="0.5", lw=0.5)
    ax.set(
        xscale="log",
        xlabel="init scale",
        ylabel="rate of cos(G_f^ℓ, G_r^ℓ) > 0 (all layers)",
        ylim=(0, 1.02),
        title=f"C7: storage-gradient alignment at init ({pos}, {draws} draws a point)",
    )
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return save(plt, fig, path)
