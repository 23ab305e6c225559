"""Ablation statistics over seeds: per-cell picks, mean ± std and t-based 95 % CIs, paired tests.
(The EEG2025 score over them: challenges/eeg2025/score.py.)

Pure pandas/scipy so every number in a report can be checked by hand (tests/run/test_report_stats.py).
A *cell* is one (arm, seed) of the matrix; when a search ran several trials in a cell, the cell's value for
every metric is taken from its best trial by the monitored metric, so all of a cell's metrics come from the
same model.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

METRIC_PREFIXES = ("val/", "test/")
CI_LEVEL = 0.95
WILCOXON_MIN_PAIRS = 6  # below this the exact signed-rank test cannot reach p < 0.05 anyway
STAT_COLUMNS = ["arm", "metric", "mean", "std", "ci_low", "ci_high", "n", "delta", "n_pairs", "p_value",
                "p_wilcoxon"]


def metric_columns(df: pd.DataFrame) -> list[str]:
    """Every validation/test metric a trial table carries (the report's metrics)."""
    return [c for c in df.columns if c.startswith(METRIC_PREFIXES)]


def best_per_cell(trials: pd.DataFrame, metric: str, mode: str) -> pd.DataFrame:
    """One row per (arm, seed): that cell's best trial by ``metric`` (ties: the first)."""
    ok = trials[trials[metric].notna()] if metric in trials else trials.iloc[0:0]
    if ok.empty:
        return ok.copy()
    order = ok.sort_values(metric, ascending=mode == "min", kind="stable")
    return order.drop_duplicates(["arm", "seed"], keep="first").sort_values(["arm", "seed"]).reset_index(drop=True)


def summarize(values: Any, level: float = CI_LEVEL) -> dict[str, float]:
    """mean, sample std and the two-sided t-interval of the mean; NaNs dropped; n < 2 gives no spread."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    n = len(v)
    if n == 0:
        return {"mean": math.nan, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0}
    mean = float(v.mean())
    if n < 2:
        return {"mean": mean, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 1}
    std = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def paired(arm: pd.Series, base: pd.Series) -> dict[str, float]:
    """Δ = mean over shared seeds of (arm − baseline); paired t-test (n ≥ 2) and Wilcoxon (n ≥ 6).

    ``arm`` and ``base`` are indexed by seed; only seeds with a value in both count as pairs.
    """
    both = pd.concat([arm.rename("a"), base.rename("b")], axis=1).dropna()
    n = len(both)
    out = {"delta": math.nan, "n_pairs": n, "p_value": math.nan, "p_wilcoxon": math.nan}
    if n == 0:
        return out
    diff = both["a"].to_numpy(float) - both["b"].to_numpy(float)
    out["delta"] = float(diff.mean())
    with warnings.catch_warnings():  # identical pairs: scipy warns and returns NaN, reported as "—"
        warnings.simplefilter("ignore")
        if n >= 2:
            out["p_value"] = float(stats.ttest_rel(both["a"], both["b"]).pvalue)
        if n >= WILCOXON_MIN_PAIRS and np.any(diff != 0):
            out["p_wilcoxon"] = float(stats.wilcoxon(diff).pvalue)
    return out


def arm_stats(cells: pd.DataFrame, arms: list[str], baseline: str, metrics: list[str]) -> pd.DataFrame:
    """One row per arm × metric (``STAT_COLUMNS``); the baseline's own Δ and p are NaN."""
    rows: list[dict[str, Any]] = []
    for metric in metrics:
        col = cells.set_index(["arm", "seed"])[metric] if metric in cells else pd.Series(dtype=float)
        by_arm = {a: (col.xs(a, level="arm") if a in col.index.get_level_values(0) else pd.Series(dtype=float))
                  for a in arms}
        base = by_arm.get(baseline, pd.Series(dtype=float))
        for arm in arms:
            row: dict[str, Any] = {"arm": arm, "metric": metric, **summarize(by_arm[arm])}
            if arm == baseline:
                row.update(delta=math.nan, n_pairs=int(base.notna().sum()), p_value=math.nan, p_wilcoxon=math.nan)
            else:
                row.update(paired(by_arm[arm], base))
            rows.append(row)
    return pd.DataFrame(rows, columns=STAT_COLUMNS)


def learning_curves(history: pd.DataFrame, cells: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per arm and epoch (``training_iteration``): mean, std and count of ``metric`` over the cells'
    chosen trials. Trials a scheduler stopped early simply drop out of the later epochs."""
    if history.empty or metric not in history or cells.empty:
        return pd.DataFrame(columns=["arm", "epoch", "mean", "std", "n"])
    chosen = history[history["trial_id"].isin(set(cells["trial_id"]))]
    chosen = chosen[chosen[metric].notna()]
    g = chosen.groupby(["arm", "training_iteration"])[metric]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()}).reset_index()
    return out.rename(columns={"training_iteration": "epoch"})
