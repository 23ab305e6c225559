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
UNITS = "units.png"
CONFUSION_PNG = "confusion.png"


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


def units_png(cells: pd.DataFrame, stats: pd.DataFrame, metric: str, arms: list[str], baseline: str,
              path: Path) -> Path:
    """Per arm, side by side: every unit's ``metric`` (points; a unit = one seed[, fold]), the arm's mean and
    95 % interval (bar), and the baseline's mean as a dashed line across."""
    import numpy as np

    row = stats[stats["metric"] == metric].set_index("arm")
    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(arms) + 2), 4.2))
    rng = np.random.default_rng(0)  # jitter only: the same picture every rebuild
    for i, arm in enumerate(arms):
        values = cells.loc[cells["arm"] == arm, metric].dropna().to_numpy(float) if metric in cells else []
        color = "#7f7f7f" if arm == baseline else f"C{i}"
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(values)), values, s=18, alpha=0.7, color=color, zorder=3)
        if arm in row.index and not pd.isna(row.at[arm, "mean"]):
            mean, lo, hi = (float(row.at[arm, k]) for k in ("mean", "ci_low", "ci_high"))
            err = None if pd.isna(lo) else [[mean - lo], [hi - mean]]
            ax.errorbar([i + 0.28], [mean], yerr=err, fmt="D", color="black", ms=5, capsize=4, zorder=4)
    if baseline in row.index and not pd.isna(row.at[baseline, "mean"]):
        ax.axhline(float(row.at[baseline, "mean"]), color="#7f7f7f", ls="--", lw=1, label=f"{baseline} mean")
        ax.legend(fontsize=8)
    ax.set_xticks(range(len(arms)), [f"{a}\n(n={int(row.at[a, 'n'])})" if a in row.index else a for a in arms])
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: every unit (points), mean and 95 % interval")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def confusion_png(matrices: dict[str, tuple[str, list[list[int]]]], path: Path) -> Path:
    """Per arm (one row each: ``arm → (trial id, counts)``): the test-split confusion matrix as counts and
    normalized by true class (each row sums to 1), rows true class, columns predicted."""
    import numpy as np

    fig, axes = plt.subplots(len(matrices), 2, figsize=(7.5, 3.2 * len(matrices)), squeeze=False)
    for (arm, (trial, counts)), (left, right) in zip(matrices.items(), axes, strict=True):
        c = np.asarray(counts, dtype=float)
        norm = c / np.maximum(c.sum(axis=1, keepdims=True), 1.0)
        for ax, values, title, text in ((left, c, "counts", "{:.0f}"), (right, norm, "normalized by true class",
                                                                         "{:.2f}")):
            top = values.max() if values.size and values.max() > 0 else 1.0
            ax.imshow(values, cmap="Blues", vmin=0, vmax=top)
            for (i, j), v in np.ndenumerate(values):
                ax.text(j, i, text.format(v), ha="center", va="center", fontsize=9,
                        color="white" if v > 0.6 * top else "black")
            k = len(values)
            ax.set_xticks(range(k))
            ax.set_yticks(range(k))
            ax.set_xlabel("predicted class")
            ax.set_ylabel("true class")
            ax.set_title(f"{arm} ({trial}): {title}", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
