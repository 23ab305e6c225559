"""Subject folds (verdicts issue, item 3) and the statistics that fit them (item 4): group folds over train+val,
the test split untouched, one run of ``matrix.folds: 3`` end to end on Ray, and the corrected t-test by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch
import yaml
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from scipy import stats

from neuroray.cli import main
from neuroray.datasets.folds import FoldPlan, plan_folds
from neuroray.datasets.shards import open_shard_set, tensor_column_to_numpy
from neuroray.errors import ConfigError
from neuroray.reports.stats import BY_SUBJECT, CORRECTED_T, corrected_ttest, paired, subject_stats
from neuroray.run_folder.checkpoints import load_checkpoint


def _groups(shards: Path, split: str) -> set[str]:
    s = open_shard_set(shards)
    return set(s.read_split(split, ["subject"]).column("subject").to_pylist())


def test_group_folds_keep_subjects_on_one_side_and_leave_test_alone(small_eeg: Path) -> None:
    plan = plan_folds(open_shard_set(small_eeg), 3)
    trainval, test = _groups(small_eeg, "train") | _groups(small_eeg, "val"), _groups(small_eeg, "test")
    assert set(plan.fold_of) == trainval and not set(plan.fold_of) & test and set(plan.test_groups) == test
    assert sorted(set(plan.fold_of.values())) == [0, 1, 2]  # every fold validates on someone
    assert sorted(g for f in range(3) for g in plan.val_groups(f)) == sorted(trainval)  # each subject once
    total = sum(open_shard_set(small_eeg).rows(s) for s in ("train", "val"))
    assert all(t + v == total for t, v in plan.rows) and sum(v for _, v in plan.rows) == total
    assert plan_folds(open_shard_set(small_eeg), 3).to_json() == plan.to_json()  # a function of the set and K
    assert FoldPlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    with pytest.raises(ConfigError, match=r"matrix.folds: 8 folds, .* only 7 distinct subject values; use 2..7"):
        plan_folds(open_shard_set(small_eeg), 8)


def test_corrected_resampled_t_test_by_hand() -> None:
    """Nadeau–Bengio: t = mean(d) / sqrt((1/n + n2/n1) · s²), n − 1 degrees of freedom; wider than plain."""
    d = np.array([0.05, 0.02, 0.04, 0.07, 0.01, 0.03])
    ratio = 0.5  # 3 folds: val is half the size of train
    t = d.mean() / math.sqrt((1 / len(d) + ratio) * d.var(ddof=1))
    assert corrected_ttest(d, ratio) == pytest.approx(2 * stats.t.sf(abs(t), len(d) - 1))
    assert corrected_ttest(d, 0.0) == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue)
    assert corrected_ttest(d, ratio) > corrected_ttest(d, 0.0)
    units = pd.MultiIndex.from_product([[0, 1], [0, 1, 2]], names=["seed", "fold"])
    out = paired(pd.Series(d + 1.0, index=units), pd.Series(np.ones(6), index=units), ratio)
    assert out["test"] == CORRECTED_T and out["n_pairs"] == 6 and out["delta"] == pytest.approx(d.mean())
    half = stats.t.ppf(0.975, 5) * math.sqrt((1 / 6 + ratio) * d.var(ddof=1))
    assert out["delta_ci_low"] == pytest.approx(d.mean() - half) and out["delta_ci_high"] == pytest.approx(
        d.mean() + half)


@pytest.fixture(scope="module")
def five_test_subjects(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """34 planted-signal subjects: 5 of them in test (the per-subject comparison's minimum)."""
    from neuroray.datasets.synthetic import write_synthetic_eeg

    out = tmp_path_factory.mktemp("folds") / "eeg34"
    write_synthetic_eeg(out, n_subjects=34, windows_per_subject=12, n_chans=8, n_times=100, seed=5)
    return out


@pytest.mark.slow  # a 34-subject, 3-fold run, ~50 s; fold plans and the corrected test are unit-tested above
@pytest.mark.usefixtures("ray_session")
def test_three_fold_run_end_to_end(five_test_subjects: Path, tmp_path: Path) -> None:
    """2 arms × 1 seed × 3 folds: 6 cells, each trial validated on exactly its fold's subjects (its val/nrmse
    recomputed from those rows), the test subjects in no fold, one fold file, the corrected test in the report,
    one Optuna study per cell; each cell's pick scored per test subject (5 of them) as a direct computation
    gives, and the report's per-subject comparison."""
    small_eeg = five_test_subjects
    raw: dict[str, Any] = {
        "name": "folds", "data": {"shards": str(small_eeg)},
        "phases": [{"name": "fit", "trainable": "eeg_regressor", "target": "y", "epochs": 1, "batch_size": 32}],
        "matrix": {"arm": {"shallow": {"phases.fit.hparams.encoder": "shallow"},
                           "conv": {"phases.fit.hparams.encoder": "conv"}}, "seed": [0], "folds": 3},
        "search": {"num_samples": 1, "space": {"lr": "loguniform(1e-3, 1e-2)"}},
    }
    path = tmp_path / "folds.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["run", str(path), "--storage", str(tmp_path / "runs"), "--quiet"]) == 0
    run = tmp_path / "runs" / "folds"
    df = pd.read_csv(run / "results.csv")
    assert sorted(zip(df["arm"], df["fold"], strict=True)) == sorted((a, f) for a in ("conv", "shallow")
                                                                     for f in range(3))
    assert df["test/nrmse"].notna().all()
    plan = FoldPlan.from_json(json.loads((run / "folds.json").read_text()))
    assert plan.k == 3 and not set(plan.fold_of) & _groups(small_eeg, "test")
    shards = open_shard_set(small_eeg)
    table = pa.concat_tables([shards.read_split(s, ["x", "y", "subject"]) for s in ("train", "val")])
    for _, row in df.iterrows():  # every arm reads the same folds.json
        rows = table.filter(pc.is_in(table["subject"], pa.array(plan.val_groups(int(row["fold"])))))
        x, y = tensor_column_to_numpy(rows["x"]), rows["y"].to_numpy().astype(float)
        with torch.no_grad():
            pred = load_checkpoint(row["checkpoint"])(torch.from_numpy(x).float()).double().numpy()
        assert row["val/nrmse"] == pytest.approx(float(np.sqrt(np.mean((pred - y) ** 2)) / y.std()), rel=1e-4)
    subjects = pd.read_parquet(run / "test_subjects.parquet")
    test_groups = _groups(small_eeg, "test")
    assert len(test_groups) == 5 and set(subjects["subject"]) == test_groups
    assert sorted(zip(subjects["arm"], subjects["fold"], strict=True)) == sorted(
        (a, f) for a in ("conv", "shallow") for f in range(3) for _ in range(5))
    one = subjects.iloc[0]
    test = shards.read_split("test", ["x", "y", "subject"])
    rows = test.filter(pc.equal(test["subject"], one["subject"]))
    x, y = tensor_column_to_numpy(rows["x"]), rows["y"].to_numpy().astype(float)
    ckpt = df.loc[df["trial_id"] == one["trial_id"], "checkpoint"].iloc[0]
    with torch.no_grad():
        pred = load_checkpoint(ckpt)(torch.from_numpy(x).float()).double().numpy()
    assert one["test/nrmse"] == pytest.approx(float(np.sqrt(np.mean((pred - y) ** 2)) / y.std()), rel=1e-4)
    info = json.loads((run / "run.json").read_text())
    assert info["folds"] == 3 and info["fold_ratio"] == pytest.approx(plan.test_train_ratio)
    md = (run / "report.md").read_text()
    assert "Nadeau–Bengio corrected resampled t-test" in md and "(seed, fold) units" in md
    assert "| conv | test/nrmse | 3 |" in md and CORRECTED_T in md
    assert "## Per test subject: test/nrmse" in md and "| conv | test/nrmse | 5 |" in md and BY_SUBJECT in md
    storage = JournalStorage(JournalFileBackend(str(run / "optuna.journal")))
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    assert names == sorted(f"{a}-s0-f{f}" for a in ("conv", "shallow") for f in range(3))


def test_per_subject_comparison_by_hand() -> None:
    """Per subject: each arm's mean over its chosen trials; Δ over subjects; Wilcoxon over those subjects.
    A trial that was not a cell's pick is ignored."""
    rng = np.random.default_rng(1)
    base_scores = rng.normal(0.8, 0.1, 8)
    gain = np.linspace(0.02, 0.16, 8)  # arm b is better for every subject
    rows = []
    for seed in (0, 1):
        for i in range(8):
            rows.append({"trial_id": f"a{seed}", "arm": "a", "seed": seed, "subject": f"s{i}",
                         "test/nrmse": base_scores[i] + 0.01 * seed})
            rows.append({"trial_id": f"b{seed}", "arm": "b", "seed": seed, "subject": f"s{i}",
                         "test/nrmse": base_scores[i] - gain[i] + 0.01 * seed})
            rows.append({"trial_id": f"x{seed}", "arm": "b", "seed": seed, "subject": f"s{i}", "test/nrmse": 9.0})
    cells = pd.DataFrame({"trial_id": ["a0", "a1", "b0", "b1"]})
    out = subject_stats(pd.DataFrame(rows), cells, ["a", "b"], "a", "test/nrmse").set_index("arm")
    assert list(out.index) == ["b"] and out.at["b", "n_subjects"] == 8
    assert out.at["b", "delta"] == pytest.approx(-gain.mean())
    assert out.at["b", "p_wilcoxon"] == pytest.approx(stats.wilcoxon(-gain).pvalue) and out.at["b", "p_wilcoxon"] < 0.01
