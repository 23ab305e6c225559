"""The atlas, LFP and RF experiment files in --smoke mode: each prepares its shards and runs every arm."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from neuroray.cli import main
from neuroray.datasets.shards import ShardSet, open_shard_set
from neuroray.reports.source import CONFUSION

REPO = Path(__file__).resolve().parents[2]
STUDIES = ["atlas/vae3d_conditional.yaml", "atlas/beta_vae_sweep.yaml", "lfp/genotype_vit.yaml",
           "lfp/ntrials_matrix.yaml", "rf/localization.yaml", "rf/localization_hpo.yaml"]
# The EEG2025 files run against the session's synthetic HBN tree in test_eeg2025_challenge1.py.
EEG2025 = ["eeg2025/challenge1.yaml", "eeg2025/challenge1_hpo.yaml", "eeg2025/challenge1_success.yaml",
           "eeg2025/challenge2_hpo.yaml", "eeg2025/multiphase_ablation.yaml"]


def test_every_experiment_file_has_a_smoke_test() -> None:
    shipped = sorted(str(p.relative_to(REPO / "experiments")) for p in (REPO / "experiments").rglob("*.yaml"))
    assert shipped == sorted([*STUDIES, *EEG2025, "demo.yaml"])  # demo.yaml: tests/run/test_demo_smoke.py


# kept out of the default run for time (`make test-all` runs them): the atlas studies (the 3-D VAE learns planted
# blobs in tests/trainables/test_vae3d.py; its brain maps are drawn in test_brain_maps.py), rf/localization
# (localization_hpo trains the same trainable on the same prepare), lfp/ntrials_matrix (genotype_vit runs the same
# two trainables on the same prepare, and test_trial_subset the n_trials option)
SLOW_STUDIES = {"atlas/vae3d_conditional.yaml", "atlas/beta_vae_sweep.yaml", "rf/localization.yaml",
                "lfp/ntrials_matrix.yaml"}


@pytest.mark.parametrize("rel", [pytest.param(r, marks=pytest.mark.slow) if r in SLOW_STUDIES else r
                                 for r in STUDIES])
def test_study_smoke(rel: str, ray_session: None, tmp_path: Path) -> None:
    path = REPO / "experiments" / rel
    raw = yaml.safe_load(path.read_text())
    cwd = os.getcwd()
    os.chdir(tmp_path)  # data/ (relative in the files) lands in the temp folder
    try:
        assert main(["run", str(path), "--smoke", "--quiet", "--storage", str(tmp_path / "runs")]) == 0
    finally:
        os.chdir(cwd)
    shards = open_shard_set(tmp_path / raw["smoke"]["overrides"]["data.shards"])
    assert shards.manifest["modality"] == {"atlas": "volume"}.get(rel.split("/")[0], "spectrogram")
    run_dir = tmp_path / "runs" / f"{raw['name']}-smoke"
    df = pd.read_csv(run_dir / "results.csv")
    assert sorted(df["arm"]) == sorted(raw["matrix"].get("arm", {"default": {}}))
    assert (df["status"] == "OK").all()
    metric = raw["metric"]["name"]
    assert metric in df.columns
    if rel.startswith("lfp/"):  # classifiers: every trial's test-split confusion matrix, each arm's in the report
        for text in df[CONFUSION]:
            counts = np.array(json.loads(text))
            assert counts.shape == (2, 2) and counts.sum() == shards.rows("test"), counts
        page = (run_dir / "report.html").read_text()
        assert (run_dir / "confusion.png").is_file() and "Confusion matrices (test split)" in page
    if rel.startswith("atlas/"):  # each arm's pick: input vs reconstruction maps, embedded in the report
        page = (run_dir / "report.html").read_text()
        assert all(f"Brain maps: input vs reconstruction, arm {arm}" in page for arm in set(df["arm"])), page[:2000]
        assert len(list((run_dir / "generate").glob("*/reconstruct/*_recon.nii.gz"))) == 2 * df["arm"].nunique()
    if rel == "lfp/genotype_vit.yaml":  # the ViT arm's attention rollout, per class, on the test split
        _check_attention(run_dir, shards, df)


def _check_attention(run_dir: Path, shards: ShardSet, df: pd.DataFrame) -> None:
    assert main(["generate", str(run_dir), "--attention"]) == 0
    vit = df[df["arm"] == "vit"].iloc[0]  # `best` among the temporal_vit trials (the CNN arm has no attention)
    out = run_dir / "generate" / vit["trial_id"] / "attention"
    record = json.loads((out / "attention.json").read_text())
    spec, patch = shards.manifest["spec"], record["patch"]
    shape = (spec["n_trials"] // patch["trial"], -(-spec["n_frames"] // patch["time"]))  # (n_trials, n_time_tokens)
    test_labels = shards.read_split("test", ["label"]).column("label").to_pylist()
    for k in sorted(set(test_labels)):
        m = np.load(out / f"attention_class{k}.npy")
        assert m.shape == shape and abs(float(m.sum()) - 1.0) < 1e-4 and (m > 0).all(), (m.shape, m.sum())
        assert record["counts"][str(k)] == test_labels.count(k)
    assert (out / "attention.png").stat().st_size > 10_000
    cnn = df[df["arm"] == "cnn"].iloc[0]["trial_id"]
    assert main(["generate", str(run_dir), "--attention", "--trial", cnn]) == 2  # one line: it is not a ViT
