"""Ablation statistics over units: per-cell picks, mean ± std and t-based 95 % CIs, paired tests.
(The EEG2025 score over them: challenges/eeg2025/score.py.)

Pure pandas/scipy so every number in a report can be checked by hand (tests/run/test_report_stats.py).
A *cell* is one (arm, seed[, fold]) of the matrix; when a search ran several trials in a cell, the cell's value
for every metric is taken from its best trial by the monitored metric, so all of a cell's metrics come from the
same model. A *unit* is a cell without its arm: (seed) or (seed, fold); arms are paired by unit.

With subject folds the units share training subjects, so their differences are correlated and the plain
t-test is over-confident; Nadeau & Bengio (2003, Machine Learning 52:239) correct the variance of the mean
by (1/n + n_test/n_train) instead of 1/n (``corrected_ratio``), for the interval and the test alike.
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
                "p_wilcoxon", "delta_ci_low", "delta_ci_high", "test"]
PAIRED_T = "paired t"
CORRECTED_T = "Nadeau-Bengio corrected t"


def unit_columns(df: pd.DataFrame) -> list[str]:
    """What identifies a unit besides the arm: ``seed``, and ``fold`` when the matrix had subject folds."""
    return ["seed", "fold"] if "fold" in df.columns and df["fold"].notna().any() else ["seed"]


def metric_columns(df: pd.DataFrame) -> list[str]:
    """Every validation/test metric a trial table carries (the report's metrics)."""
    return [c for c in df.columns if c.startswith(METRIC_PREFIXES)]


def best_per_cell(trials: pd.DataFrame, metric: str, mode: str) -> pd.DataFrame:
    """One row per (arm, seed[, fold]): that cell's best trial by ``metric`` (ties: the first)."""
    ok = trials[trials[metric].notna()] if metric in trials else trials.iloc[0:0]
    if ok.empty:
        return ok.copy()
    keys = ["arm", *unit_columns(ok)]
    order = ok.sort_values(metric, ascending=mode == "min", kind="stable")
    return order.drop_duplicates(keys, keep="first").sort_values(keys).reset_index(drop=True)


def _spread(n: int, ratio: float) -> float:
    """The factor on var(values) that gives the variance of their mean: 1/n, or Nadeau–Bengio's
    (1/n + n_test/n_train) when the units share training data (``ratio`` > 0)."""
    return 1.0 / n + ratio


def summarize(values: Any, level: float = CI_LEVEL, ratio: float = 0.0) -> dict[str, float]:
    """mean, sample std and the two-sided t-interval of the mean (``ratio``: corrected for overlapping training
    sets); NaNs dropped; n < 2 gives no spread."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    n = len(v)
    if n == 0:
        return {"mean": math.nan, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0}
    mean = float(v.mean())
    if n < 2:
        return {"mean": mean, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 1}
    std = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * std * math.sqrt(_spread(n, ratio))
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def corrected_ttest(diff: np.ndarray, ratio: float) -> float:
    """Two-sided p of the Nadeau–Bengio corrected resampled t-test on paired differences ``diff``
    (``ratio`` = n_test/n_train of one resample; 0 gives the plain paired t-test)."""
    n = len(diff)
    sd = float(np.std(diff, ddof=1))
    if n < 2 or sd == 0:
        return math.nan
    t = float(np.mean(diff)) / (sd * math.sqrt(_spread(n, ratio)))
    return float(2 * stats.t.sf(abs(t), n - 1))


def paired(arm: pd.Series, base: pd.Series, ratio: float = 0.0) -> dict[str, Any]:
    """Δ = mean over shared units of (arm − baseline) with its 95 % interval; paired t-test (n ≥ 2; corrected by
    ``ratio`` for subject folds) and Wilcoxon (n ≥ 6).

    ``arm`` and ``base`` are indexed by unit; only units with a value in both count as pairs.
    """
    both = pd.concat([arm.rename("a"), base.rename("b")], axis=1).dropna()
    n = len(both)
    out: dict[str, Any] = {"delta": math.nan, "n_pairs": n, "p_value": math.nan, "p_wilcoxon": math.nan,
                           "delta_ci_low": math.nan, "delta_ci_high": math.nan,
                           "test": CORRECTED_T if ratio > 0 else PAIRED_T}
    if n == 0:
        return out
    diff = both["a"].to_numpy(float) - both["b"].to_numpy(float)
    d = summarize(diff, ratio=ratio)
    out.update(delta=d["mean"], delta_ci_low=d["ci_low"], delta_ci_high=d["ci_high"])
    with warnings.catch_warnings():  # identical pairs: scipy warns and returns NaN, reported as "—"
        warnings.simplefilter("ignore")
        if n >= 2:
            out["p_value"] = corrected_ttest(diff, ratio) if ratio > 0 else \
                float(stats.ttest_rel(both["a"], both["b"]).pvalue)
        if n >= WILCOXON_MIN_PAIRS and np.any(diff != 0):
            out["p_wilcoxon"] = float(stats.wilcoxon(diff).pvalue)
    return out


def arm_stats(cells: pd.DataFrame, arms: list[str], baseline: str, metrics: list[str],
              ratio: float = 0.0) -> pd.DataFrame:
    """One row per arm × metric (``STAT_COLUMNS``); the baseline's own Δ and p are NaN. ``ratio``: the subject
    folds' n_val/n_train (the corrected test and intervals); 0 without folds."""
    rows: list[dict[str, Any]] = []
    units = unit_columns(cells) if not cells.empty else ["seed"]
    for metric in metrics:
        col = cells.set_index(["arm", *units])[metric] if metric in cells else pd.Series(dtype=float)
        by_arm = {a: (col.xs(a, level="arm") if a in col.index.get_level_values(0) else pd.Series(dtype=float))
                  for a in arms}
        base = by_arm.get(baseline, pd.Series(dtype=float))
        for arm in arms:
            row: dict[str, Any] = {"arm": arm, "metric": metric, **summarize(by_arm[arm], ratio=ratio)}
            if arm == baseline:
                row.update(delta=math.nan, n_pairs=int(base.notna().sum()), p_value=math.nan, p_wilcoxon=math.nan,
                           delta_ci_low=math.nan, delta_ci_high=math.nan, test="")
            else:
                row.update(paired(by_arm[arm], base, ratio))
            rows.append(row)
    return pd.DataFrame(rows, columns=STAT_COLUMNS)


SUBJECT_COLUMNS = ["arm", "metric", "n_subjects", "delta", "p_wilcoxon", "test"]
BY_SUBJECT = "Wilcoxon signed-rank over test subjects"


def subject_stats(subjects: pd.DataFrame, cells: pd.DataFrame, arms: list[str], baseline: str,
                  metric: str) -> pd.DataFrame:
    """Test subjects as units (MOABB's comparison): per subject, each arm's mean ``metric`` over its chosen
    trials; Δ = mean over subjects of (arm − baseline), Wilcoxon signed-rank over the subjects both have."""
    if subjects.empty or metric not in subjects:
        return pd.DataFrame(columns=SUBJECT_COLUMNS)
    chosen = subjects[subjects["trial_id"].isin(set(cells["trial_id"]))]
    per = chosen.groupby(["arm", "subject"])[metric].mean()
    base = per.xs(baseline, level="arm") if baseline in per.index.get_level_values(0) else pd.Series(dtype=float)
    rows: list[dict[str, Any]] = []
    for arm in arms:
        if arm == baseline or arm not in per.index.get_level_values(0):
            continue
        both = pd.concat([per.xs(arm, level="arm").rename("a"), base.rename("b")], axis=1).dropna()
        diff = (both["a"] - both["b"]).to_numpy(float)
        p = math.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if len(diff) >= 2 and np.any(diff != 0):
                p = float(stats.wilcoxon(diff).pvalue)
        rows.append({"arm": arm, "metric": metric, "n_subjects": len(diff),
                     "delta": float(diff.mean()) if len(diff) else math.nan, "p_wilcoxon": p, "test": BY_SUBJECT})
    return pd.DataFrame(rows, columns=SUBJECT_COLUMNS)


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
