"""Figures. matplotlib is an optional dependency: ``pip install 'mdm_props[plot]'``.

Every figure is written to a ``.png`` file whose folder exists (:func:`mdm_props.arguments.require_output_file`,
checked before the figure is computed; folders are never created).
"""

from __future__ import annotations

from pathlib import Path

from .arguments import PNG_SUFFIX, require_output_file
from .claims.c2_correlated_routes import score_correlation, score_correlation_limit


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install 'mdm_props[plot]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_correlation(
    path, bases=(1e4, 5e5), *, delta: int = 2, d_k: int = 64, max_d_k: int = 256, max_delta: int = 64
) -> Path:
    """C2a: Corr(S_f, S_r) = tr(R_g)/d_k, g = 2Δ, against d_k (even, 2 … ``max_d_k``, at offset ``delta``)
    and against the offset Δ (1 … ``max_delta``, at head size ``d_k``), one line per RoPE base; the
    d_k → ∞ limits ∫₀¹ cos(g base^−u) du are dashed. Writes a PNG to ``path`` and returns it."""
    if not bases:
        raise ValueError("bases must name at least one RoPE base")
    for b in bases:
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not b > 1:
            raise ValueError(f"bases must be numbers > 1; got {b!r}")
    if isinstance(d_k, bool) or not isinstance(d_k, int) or d_k < 2 or d_k % 2:
        raise ValueError(f"d_k must be an even integer >= 2; got {d_k!r}")
    if isinstance(max_d_k, bool) or not isinstance(max_d_k, int) or max_d_k < 4:
        raise ValueError(f"max_d_k must be an integer >= 4; got {max_d_k!r}")
    for name, v in (("delta", delta), ("max_delta", max_delta)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {v!r}")
    path = require_output_file("path", path, PNG_SUFFIX)
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100)
    dks = list(range(2, max_d_k + 1, 2))
    deltas = list(range(1, max_delta + 1))
    for i, base in enumerate(bases):
        color = f"C{i}"
        label = f"base {base:g}"
        left.plot(
            dks,
            [score_correlation(k, base, 2.0 * delta) for k in dks],
            color=color,
            marker=".",
            ms=3,
            lw=1,
            label=label,
        )
        left.axhline(float(score_correlation_limit(2.0 * delta, base, dps=20)), color=color, ls="--", lw=1)
        right.plot(
            deltas,
            [score_correlation(d_k, base, 2.0 * dl) for dl in deltas],
            color=color,
            lw=1,
            label=f"{label}, d_k = {d_k}",
        )
        right.plot(
            deltas,
            [float(score_correlation_limit(2.0 * dl, base, dps=20)) for dl in deltas],
            color=color,
            ls="--",
            lw=1,
        )
    left.set(
        xscale="log",
        xlabel="head size d_k",
        ylabel="Corr(S_f, S_r) = tr(R_g)/d_k",
        title=f"offset Δ = {delta} (g = {2 * delta}); dashed: d_k → ∞",
    )
    right.set(xlabel="offset Δ (g = 2Δ)", title=f"d_k = {d_k}; dashed: d_k → ∞")
    for ax in (left, right):
        ax.axhline(0.0, color="0.5", lw=0.5)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


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
    from .claims.c7_alignment_at_init import QUERY_KINDS, depth_rates
    from .progress import Progress

    if not scales or any(isinstance(s, bool) or not isinstance(s, (int, float)) or not s > 0 for s in scales):
        raise ValueError(f"scales must be numbers > 0; got {scales!r}")
    path = require_output_file("path", path, PNG_SUFFIX)
    plt = _pyplot()
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
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
