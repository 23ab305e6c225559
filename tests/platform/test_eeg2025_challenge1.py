"""experiments/eeg2025/*.yaml in --smoke mode: prepare from a synthetic HBN tree, EEGNeX learns rt, multi-phase arms run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from neuroray.cli import main
from neuroray.datasets.shards import open_shard_set

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments" / "eeg2025"


@pytest.fixture(scope="module")
def workdir(hbn_tree: Path, ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A cwd whose data/hbn-synthetic-smoke is the session's tree; the smoke shard set is prepared once, here."""
    work = tmp_path_factory.mktemp("eeg2025")
    (work / "data").mkdir()
    (work / "data" / "hbn-synthetic-smoke").symlink_to(hbn_tree, target_is_directory=True)
    cwd = os.getcwd()
    os.chdir(work)  # data/ and runs/ (relative in the files) land in the temp folder
    try:
        yield work
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("name", ["challenge1.yaml", "multiphase_ablation.yaml"])
def test_smoke_settings_match_the_session_tree(name: str, n_subjects: int) -> None:
    # The smoke runs below reuse the session's synthetic tree; that is only honest if it is the tree the
    # experiment's smoke overrides would have generated.
    smoke = yaml.safe_load((EXPERIMENTS / name).read_text())["smoke"]["overrides"]
    assert smoke["data.prepare.synthetic_hbn"] == n_subjects
    assert smoke["data.prepare.synthetic_sfreq"] == 100 and smoke["data.prepare.synthetic_runs"] == 1


def test_challenge1_smoke_eegnex_beats_the_mean_predictor(workdir: Path) -> None:
    assert main(["run", str(EXPERIMENTS / "challenge1.yaml"), "--smoke", "--quiet",
                 "--storage", str(workdir / "runs")]) == 0
    shards = open_shard_set(workdir / "data" / "eeg2025" / "challenge1-smoke")
    assert shards.manifest["target"]["column"] == "rt" and shards.spec.n_chans == 129
    assert shards.spec.n_times == 200 and shards.spec.sfreq == 100.0
    df = pd.read_csv(workdir / "runs" / "eeg2025-challenge1-smoke" / "results.csv")
    assert len(df) == 1 and (df["status"] == "OK").all()
    # NRMSE = rmse / std(y) (population std): predicting the mean scores 1.0.
    assert df["val/nrmse"].iloc[0] < 0.9


def test_multiphase_ablation_smoke_runs_every_arm_with_its_phases(workdir: Path) -> None:
    assert main(["run", str(EXPERIMENTS / "multiphase_ablation.yaml"), "--smoke", "--quiet",
                 "--storage", str(workdir / "runs")]) == 0
    run = workdir / "runs" / "eeg2025-multiphase-ablation-smoke"
    df = pd.read_csv(run / "results.csv")
    assert sorted(df["arm"]) == ["full", "no_aux", "no_contrastive", "supervised"]
    assert (df["status"] == "OK").all() and df["val/nrmse"].notna().all()
    phases = {arm: sorted(p.name for p in (run / "tensorboard").glob(f"{arm}-*/*")) for arm in df["arm"]}
    assert phases["full"] == ["contrastive", "finetune", "pretrain"]
    assert phases["no_contrastive"] == ["finetune", "pretrain"]
    assert phases["supervised"] == ["finetune"]
