"""experiments/eeg2025/challenge1.yaml in --smoke mode: prepare from a synthetic HBN tree, EEGNeX learns rt."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import yaml

from neuroray.cli import main
from neuroray.datasets.shards import open_shard_set

REPO = Path(__file__).resolve().parents[2]
EXPERIMENT = REPO / "experiments" / "eeg2025" / "challenge1.yaml"


def test_smoke_settings_match_the_session_tree(n_subjects: int) -> None:
    # The smoke run below reuses the session's synthetic tree; that is only honest if it is the tree the
    # experiment's smoke overrides would have generated.
    smoke = yaml.safe_load(EXPERIMENT.read_text())["smoke"]["overrides"]
    assert smoke["data.prepare.synthetic_hbn"] == n_subjects
    assert smoke["data.prepare.synthetic_sfreq"] == 100 and smoke["data.prepare.synthetic_runs"] == 1


def test_challenge1_smoke_eegnex_beats_the_mean_predictor(hbn_tree: Path, ray_session: None, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "hbn-synthetic-smoke").symlink_to(hbn_tree, target_is_directory=True)
    cwd = os.getcwd()
    os.chdir(tmp_path)  # data/ and runs/ (relative in the file) land in the temp folder
    try:
        assert main(["run", str(EXPERIMENT), "--smoke", "--quiet", "--storage", str(tmp_path / "runs")]) == 0
    finally:
        os.chdir(cwd)
    shards = open_shard_set(tmp_path / "data" / "eeg2025" / "challenge1-smoke")
    assert shards.manifest["target"]["column"] == "rt" and shards.spec.n_chans == 129
    assert shards.spec.n_times == 200 and shards.spec.sfreq == 100.0
    df = pd.read_csv(tmp_path / "runs" / "eeg2025-challenge1-smoke" / "results.csv")
    assert len(df) == 1 and (df["status"] == "OK").all()
    # NRMSE = rmse / std(y) (population std): predicting the mean scores 1.0.
    assert df["val/nrmse"].iloc[0] < 0.9
