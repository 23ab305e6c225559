"""`neuroray run` with `targets:` (studies issue, item 3): per-target columns in the results and held-out test
scores, a per-target table in the report; a target with no value in train is refused before Ray."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from factor_shards import FACTORS, write_factor_shards

from neuroray.cli import main


def _experiment(tmp_path: Path, shards: Path, **phase: Any) -> Path:
    raw = {"name": "factors", "data": {"shards": str(shards)},
           "phases": [{"name": "fit", "trainable": "eeg_regressor", "epochs": 4, "batch_size": 32,
                       "hparams": {"encoder": "shallow", "lr": 3e-3}, **phase}]}
    path = tmp_path / "factors.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.usefixtures("ray_session")
def test_four_factors_run_with_per_target_scores_and_report(tmp_path: Path) -> None:
    shards = write_factor_shards(tmp_path / "eeg", n_subjects=10, per_subject=30)
    path = _experiment(tmp_path, shards, targets=FACTORS)
    assert main(["run", str(path), "--storage", str(tmp_path / "runs"), "--quiet"]) == 0
    run = tmp_path / "runs" / "factors"
    df = pd.read_csv(run / "results.csv")
    assert len(df) == 1 and (df["status"] == "OK").all()
    for split in ("val", "test"):
        per = [df[f"{split}/nrmse/{f}"].iloc[0] for f in FACTORS]
        assert df[f"{split}/nrmse"].iloc[0] == pytest.approx(sum(per) / 4, rel=1e-4)
        assert df[[f"{split}/r/{f}" for f in FACTORS]].notna().all(axis=None)
    assert (df[[f"val/r/{f}" for f in FACTORS]].iloc[0] > 0.3).all(), df.filter(like="val/r")  # learning, 4 epochs
    md = (run / "report.md").read_text()
    section = md.split("## Per target", 1)[1].split("\n## ", 1)[0]
    assert all(f"| {f} " in section for f in FACTORS) and "test/nrmse" in section and "val/r" in section
    # exported and predicted: one column per target, in the order named, in raw units
    assert main(["export", str(run), "--out", str(tmp_path / "model")]) == 0
    card = json.loads((tmp_path / "model" / "model_card.json").read_text())
    assert card["model"]["output"]["shape"] == ["batch", 4] and set(card["target_stats"]) == set(FACTORS)
    out = tmp_path / "preds.parquet"
    assert main(["predict", str(tmp_path / "model" / "model.onnx"), str(shards), "--out", str(out)]) == 0
    preds = pd.read_parquet(out)
    assert [c for c in preds if c.startswith("pred")] == ["pred_0", "pred_1", "pred_2", "pred_3"]
    assert 40 < preds["pred_1"].mean() < 60  # attention, in its own units


@pytest.mark.parametrize(("phase", "expected"), [
    ({"targets": FACTORS, "trainable": "eeg_classifier"}, "takes one target"),
    ({"targets": FACTORS, "target": "attention"}, "not both"),
    ({"targets": ["attention", "externalizing"]}, "column 'attention' has no value in the train split"),
    ({"targets": ["externalizing", "age"]}, "phases.fit.targets: column 'age' is not in"),
])
def test_bad_targets_are_one_line_before_ray(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             phase: dict[str, Any], expected: str) -> None:
    shards = write_factor_shards(tmp_path / "eeg", n_subjects=6, per_subject=4, null_attention=1.0)
    path = _experiment(tmp_path, shards, **phase)
    assert main(["run", str(path), "--storage", str(tmp_path / "runs"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "runs").exists()
