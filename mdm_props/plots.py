"""Figures' common ground. matplotlib is an optional dependency: ``pip install 'mdm_props[plot]'``.

A claim's figure lives in its claim module (``plot_correlation`` in :mod:`mdm_props.claims.c2_correlated_routes`,
``plot_depth`` in :mod:`mdm_props.claims.c7_alignment_at_init`); each is written to a ``.png`` file whose
folder exists (:func:`mdm_props.arguments.require_output_file`, checked before the figure is computed;
folders are never created).
"""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (an ImportError naming the extra without it)."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install 'mdm_props[plot]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(plt, fig, path: Path) -> Path:
    """Lay out ``fig``, write it to ``path`` as PNG, close it and return ``path``."""
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
