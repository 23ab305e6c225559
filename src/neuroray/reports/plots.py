"""Report figures as PNG files (matplotlib, Agg backend: no display needed on a cluster node)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from neuroray.outputs import atomic_write

LEARNING_CURVES = "learning_curves.png"
IMPORTANCE = "param_importance.png"


def _save(fig: plt.Figure, path: Path) -> Path:
    try:
        atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path


def learning_curves_png(curves: pd.DataFrame, metric: str, arms: list[str], path: Path) -> Path:
    """Per arm: ``metric`` vs epoch, mean over seeds with a ±1 std band (where ≥ 2 seeds reached that epoch)."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for arm in arms:
        c = curves[curves["arm"] == arm].sort_values("epoch")
        if c.empty:
            continue
        n_max = int(c["n"].max())
        line, = ax.plot(c["epoch"], c["mean"], marker="o", ms=3, label=f"{arm} (n={n_max})")
        band = c[c["n"] >= 2]
        if not band.empty:
            ax.fill_between(band["epoch"], band["mean"] - band["std"], band["mean"] + band["std"],
                            color=line.get_color(), alpha=0.2, linewidth=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch (reported to Tune)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: mean over seeds ± 1 std")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def importance_png(importances: dict[str, float], metric: str, path: Path) -> Path:
    """A horizontal bar chart of parameter ``importances`` for ``metric`` at ``path``; returns ``path``."""
    names = list(importances)[::-1]  # most important on top
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.4))
    ax.barh(names, [importances[n] for n in names], color="#4c72b0")
    ax.set_xlabel(f"importance for {metric}")
    ax.set_title("Optuna parameter importance")
    ax.set_xlim(0, max(1.0, max(importances.values())))
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)
