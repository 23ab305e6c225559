"""Report statistics on hand-built trial tables with answers computed here independently."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from neuroray.challenges.eeg2025.score import add_challenge_scores, challenge_pairs, combined_cells, eeg2025_score
from neuroray.reports.importance import param_importances
from neuroray.reports.stats import arm_stats, best_per_cell, learning_curves, paired, summarize

# 2 arms × 4 seeds × 2 search trials per cell. The monitored metric picks the trial; every other
# metric must come from that same trial (val/r is set to 100·seed + trial so the pick is visible).
BASE = {0: 0.50, 1: 0.55, 2: 0.45, 3: 0.60}
ARM_B = {0: 0.40, 1: 0.52, 2: 0.41, 3: 0.50}


def _trials() -> pd.DataFrame:
    rows = []
    for arm, best in (("base", BASE), ("b", ARM_B)):
        for seed, v in best.items():
            for t, value in enumerate((v + 0.2, v)):  # the second trial of each cell is its best
                rows.append({"trial_id": f"{arm}-{seed}-{t}", "arm": arm, "seed": seed, "status": "OK",
                             "val/nrmse": value, "val/r": 100 * seed + t, "test/nrmse": value + 0.01,
                             "train/loss": 9.0})
    rows.append({"trial_id": "b-9-x", "arm": "b", "seed": 9, "status": "ERROR", "val/nrmse": math.nan})
    return pd.DataFrame(rows)


def _ci(values: list[float]) -> tuple[float, float]:
    x = np.asarray(values)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return x.mean() - half, x.mean() + half


def test_best_per_cell_takes_every_metric_from_the_best_trial() -> None:
    cells = best_per_cell(_trials(), "val/nrmse", "min")
    assert len(cells) == 8  # the failed trial (seed 9) has no metric and forms no cell
    assert (cells["trial_id"].str.endswith("-1")).all()
    assert list(cells["val/r"]) == [100 * s + 1 for s in (0, 1, 2, 3)] * 2
    worst = best_per_cell(_trials(), "val/nrmse", "max")  # mode max: the other trial
    assert (worst["trial_id"].str.endswith("-0")).all()


def test_summarize_matches_t_interval() -> None:
    vals = list(BASE.values())
    s = summarize(vals)
    lo, hi = _ci(vals)
    assert s["n"] == 4 and s["mean"] == pytest.approx(np.mean(vals))
    assert s["std"] == pytest.approx(np.std(vals, ddof=1))
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((lo, hi))
    # Known answer: t(0.975, 3) = 3.182446...
    assert hi - np.mean(vals) == pytest.approx(3.182446305 * np.std(vals, ddof=1) / 2, rel=1e-8)
    one = summarize([0.3, math.nan])
    assert one["n"] == 1 and one["mean"] == 0.3 and math.isnan(one["std"]) and math.isnan(one["ci_low"])
    assert summarize([])["n"] == 0


def test_paired_test_on_shared_seeds_only() -> None:
    a = pd.Series({0: 1.0, 1: 2.0, 2: 2.5, 3: 4.0, 7: 100.0})  # seed 7 has no baseline: not a pair
    b = pd.Series({0: 0.5, 1: 1.9, 2: 1.0, 3: 3.0, 8: -5.0})
    p = paired(a, b)
    assert p["n_pairs"] == 4
    assert p["delta"] == pytest.approx(np.mean([0.5, 0.1, 1.5, 1.0]))
    assert p["p_value"] == pytest.approx(stats.ttest_rel([1.0, 2.0, 2.5, 4.0], [0.5, 1.9, 1.0, 3.0]).pvalue)
    assert math.isnan(p["p_wilcoxon"])  # < 6 pairs
    single = paired(pd.Series({0: 1.0}), pd.Series({0: 0.0}))
    assert single["n_pairs"] == 1 and single["delta"] == 1.0 and math.isnan(single["p_value"])
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=8), rng.normal(size=8)
    many = paired(pd.Series(x), pd.Series(y))
    assert many["p_wilcoxon"] == pytest.approx(stats.wilcoxon(x - y).pvalue)


def test_arm_stats_every_metric_delta_and_p() -> None:
    cells = best_per_cell(_trials(), "val/nrmse", "min")
    table = arm_stats(cells, ["base", "b"], "base", ["val/nrmse", "test/nrmse", "val/r"])
    assert len(table) == 6
    row = table[(table["arm"] == "b") & (table["metric"] == "val/nrmse")].iloc[0]
    b, base = list(ARM_B.values()), list(BASE.values())
    assert row["mean"] == pytest.approx(np.mean(b)) and row["n"] == 4
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(_ci(b))
    assert row["delta"] == pytest.approx(np.mean(b) - np.mean(base))
    assert row["p_value"] == pytest.approx(stats.ttest_rel(b, base).pvalue)
    test_row = table[(table["arm"] == "b") & (table["metric"] == "test/nrmse")].iloc[0]
    assert test_row["mean"] == pytest.approx(np.mean(b) + 0.01)
    base_row = table[(table["arm"] == "base") & (table["metric"] == "val/nrmse")].iloc[0]
    assert math.isnan(base_row["delta"]) and math.isnan(base_row["p_value"])
    # An arm with no finished cell: no numbers, n = 0, rather than an error.
    empty = arm_stats(cells, ["base", "ghost"], "base", ["val/nrmse"])
    ghost = empty[empty["arm"] == "ghost"].iloc[0]
    assert ghost["n"] == 0 and math.isnan(ghost["mean"]) and ghost["n_pairs"] == 0


def test_eeg2025_score_pairs_and_combined_runs() -> None:
    assert eeg2025_score(1.0, 2.0) == pytest.approx(0.3 * 1.0 + 0.7 * 2.0)
    cols = ["val/nrmse_c1", "val/nrmse_c2", "test/c1/nrmse", "test/c2/nrmse", "val/c10", "val/loss"]
    assert challenge_pairs(cols) == {"val/nrmse_eeg2025": ("val/nrmse_c1", "val/nrmse_c2"),
                                     "test/eeg2025/nrmse": ("test/c1/nrmse", "test/c2/nrmse")}
    cells = pd.DataFrame({"arm": ["a", "a"], "seed": [0, 1], "val/nrmse_c1": [0.9, 0.8],
                          "val/nrmse_c2": [1.0, 0.95]})
    scored, names = add_challenge_scores(cells)
    assert names == ["val/nrmse_eeg2025"]
    assert list(scored["val/nrmse_eeg2025"]) == pytest.approx([0.3 * 0.9 + 0.7 * 1.0, 0.3 * 0.8 + 0.7 * 0.95])
    c1 = pd.DataFrame({"arm": ["a", "a", "b"], "seed": [0, 1, 0], "val/nrmse": [0.9, 0.8, 0.7]})
    c2 = pd.DataFrame({"arm": ["a", "b"], "seed": [0, 0], "val/nrmse": [1.0, 0.99]})
    joined = combined_cells(c1, c2, ["val/nrmse"]).set_index(["arm", "seed"])["eeg2025:val/nrmse"]
    assert joined.to_dict() == pytest.approx({("a", 0): 0.3 * 0.9 + 0.7 * 1.0, ("b", 0): 0.3 * 0.7 + 0.7 * 0.99})


def test_learning_curves_follow_the_chosen_trials() -> None:
    trials = _trials()
    cells = best_per_cell(trials, "val/nrmse", "min")
    rows = []
    for tid in trials["trial_id"]:
        arm, seed = tid.split("-")[0], int(tid.split("-")[1])
        for epoch in (1, 2, 3):
            chosen = tid.endswith("-1")
            rows.append({"trial_id": tid, "arm": arm, "seed": seed, "training_iteration": epoch,
                         "val/nrmse": (1.0 / epoch + seed) if chosen else 50.0})
    curves = learning_curves(pd.DataFrame(rows), cells, "val/nrmse")
    first = curves[(curves["arm"] == "b") & (curves["epoch"] == 2)].iloc[0]
    assert first["n"] == 4 and first["mean"] == pytest.approx(0.5 + 1.5)  # seeds 0..3 → mean offset 1.5
    assert first["std"] == pytest.approx(np.std([0, 1, 2, 3], ddof=1))
    assert learning_curves(pd.DataFrame(), cells, "val/nrmse").empty


def test_param_importance_ranks_the_parameter_that_matters() -> None:
    rng = np.random.default_rng(1)
    lr = 10 ** rng.uniform(-4, -1, 24)
    noise = rng.uniform(0, 1, 24)
    df = pd.DataFrame({"param.lr": lr, "param.dropout": noise, "param.encoder": ["a", "b"] * 12,
                       "val/nrmse": (np.log10(lr) + 2.5) ** 2 + 0.01 * noise})
    imp, note = param_importances(df, "val/nrmse", "min")
    assert next(iter(imp)) == "lr" and imp["lr"] > 0.5 and set(imp) == {"lr", "dropout", "encoder"}
    assert "24 finished trials" in note
    none, why = param_importances(df.drop(columns=["param.lr", "param.dropout", "param.encoder"]), "val/nrmse", "min")
    assert none == {} and "no search parameters" in why
    # A conditional parameter (only set for one encoder) is left out of the trials that lack it.
    cond = df.assign(**{"param.n_filters": np.where(df["param.encoder"] == "b", rng.integers(8, 64, 24), np.nan)})
    imp, _ = param_importances(cond, "val/nrmse", "min")
    assert next(iter(imp)) == "lr" and "n_filters" in imp
    few, why = param_importances(df.head(2), "val/nrmse", "min")
    assert few == {} and "2 finished trial(s)" in why


def test_param_importance_reads_the_runs_own_studies(tmp_path: Path) -> None:
    """With optuna.journal the real studies are read (declared distributions; pruned trials left out)."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = tmp_path / "optuna.journal"
    storage = JournalStorage(JournalFileBackend(str(journal)))
    rng = np.random.default_rng(0)
    dists = {"lr": FloatDistribution(1e-4, 1e-2, log=True), "dropout": FloatDistribution(0.0, 0.5)}
    for name in ("a-s0", "b-s0"):
        study = optuna.create_study(study_name=name, storage=storage)
        for _ in range(10):
            lr, dropout = 10 ** rng.uniform(-4, -2), rng.uniform(0, 0.5)
            study.add_trial(optuna.trial.create_trial(params={"lr": lr, "dropout": dropout}, distributions=dists,
                                                      value=abs(np.log10(lr) + 3) + 0.01 * dropout))
        study.add_trial(optuna.trial.create_trial(params={"lr": 1e-3, "dropout": 0.1}, distributions=dists,
                                                  state=optuna.trial.TrialState.PRUNED))
    imp, note = param_importances(pd.DataFrame({"val/nrmse": []}), "val/nrmse", "min", journal=journal)
    assert imp["lr"] > imp["dropout"] and "20 completed trials of the run's 2 Optuna studies" in note
