"""Per-phase data (studies issue, item 1): a pretraining phase reads its own shard set, the finetune the
experiment's; each phase's rows come from its own set, and a chain across sets whose windows the encoder
cannot take is refused before Ray starts, naming both phases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from neuroray.cli import main
from neuroray.datasets.shards import open_shard_set
from neuroray.datasets.synthetic import write_synthetic_eeg


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """P (pretrain) and F (finetune): same windows (8 ch x 100 samples at 100 Hz), different subjects and
    sizes; P4: 4 channels; P50: 50-sample windows."""
    root = tmp_path_factory.mktemp("phase-data")
    spec = {"n_chans": 8, "n_times": 100, "sfreq": 100.0}
    write_synthetic_eeg(root / "P", n_subjects=9, windows_per_subject=24, seed=3, **spec)
    write_synthetic_eeg(root / "F", n_subjects=8, windows_per_subject=10, seed=4, **spec)
    write_synthetic_eeg(root / "P4", n_subjects=6, windows_per_subject=4, **{**spec, "n_chans": 4})
    write_synthetic_eeg(root / "P50", n_subjects=6, windows_per_subject=4, **{**spec, "n_times": 50})
    return {p.name: p for p in root.iterdir()}


def _experiment(tmp_path: Path, pretrain: Path, finetune: Path, encoder: str = "conv", **extra: Any) -> Path:
    raw = {"name": "phase-data", "data": {"shards": str(finetune)},
           "phases": [{"name": "pretrain", "trainable": "eeg_masked_pretrain", "epochs": 1, "batch_size": 32,
                       "data": {"shards": str(pretrain)}, "hparams": {"encoder": encoder}},
                      {"name": "finetune", "trainable": "eeg_regressor", "target": "y", "from": "pretrain",
                       "epochs": 2, "batch_size": 16, "hparams": {"encoder": encoder}}], **extra}
    path = tmp_path / "phase-data.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.usefixtures("ray_session")
def test_each_phase_reads_its_own_set(sets: dict[str, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    p_rows, f_rows = open_shard_set(sets["P"]).rows("train"), open_shard_set(sets["F"]).rows("train")
    assert p_rows != f_rows
    path = _experiment(tmp_path, sets["P"], sets["F"])
    assert main(["validate", str(path)]) == 0
    assert f"default: pretrain read {sets['P']}" in capsys.readouterr().out
    assert main(["run", str(path), "--storage", str(tmp_path / "runs"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"data: {sets['P']} train ({p_rows} rows)" in out and f"data: train ({f_rows} rows)" in out
    run = tmp_path / "runs" / "phase-data"
    record = json.loads((run / "data.json").read_text())
    assert record["data"]["rows"]["train"] == f_rows
    assert record["phases"]["default: pretrain"]["rows"]["train"] == p_rows
    df = pd.read_csv(run / "results.csv")
    assert len(df) == 1 and (df["status"] == "OK").all()
    # What each phase's Ray dataset held: the finetune's report and the pretrain's phase record
    assert df["data/train_rows"].iloc[0] == f_rows
    (meta,) = run.glob("checkpoints/*/pretrain/meta.json")
    assert json.loads(meta.read_text())["metrics"]["data/train_rows"] == p_rows


@pytest.mark.parametrize(("pretrain", "expected"), [
    ("P4", "chained phases need the same channels and sampling rate"),
    # the shallow encoder's temporal kernel follows the window length (conv's does not: that chain runs)
    ("P50", "its encoder cannot take that encoder's weights"),
])
def test_a_chain_across_unlike_sets_is_refused_before_ray(sets: dict[str, Path], tmp_path: Path, pretrain: str,
                                                          expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = _experiment(tmp_path, sets[pretrain], sets["F"], encoder="shallow")
    assert main(["run", str(path), "--storage", str(tmp_path / "runs"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert "phases.finetune.from: 'finetune' reads" in err and "starts from 'pretrain'" in err
    assert str(sets[pretrain]) in err and str(sets["F"]) in err
    assert not (tmp_path / "runs").exists()


def test_the_final_phase_reads_the_experiments_data(sets: dict[str, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = _experiment(tmp_path, sets["P"], sets["F"],
                       matrix={"arm": {"a": {"phases.finetune.data": {"shards": str(sets["P"])}}}})
    assert main(["validate", str(path)]) == 2
    assert "phases.finetune.data: the final phase reads the experiment's data" in capsys.readouterr().err
