"""The atlas, LFP and RF experiment files in --smoke mode: each prepares its shards and runs every arm."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from neuroray.cli import main
from neuroray.datasets.shards import open_shard_set

REPO = Path(__file__).resolve().parents[2]
STUDIES = ["atlas/vae3d_conditional.yaml", "lfp/genotype_vit.yaml", "rf/localization.yaml"]


@pytest.mark.parametrize("rel", STUDIES)
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
    df = pd.read_csv(tmp_path / "runs" / f"{raw['name']}-smoke" / "results.csv")
    assert sorted(df["arm"]) == sorted(raw["matrix"].get("arm", {"default": {}}))
    assert (df["status"] == "OK").all()
    metric = raw["metric"]["name"]
    assert metric in df.columns
