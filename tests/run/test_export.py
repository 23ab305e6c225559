"""`neuroray export`: every trainable → ONNX with parity and a model card; INT8/FP16 with the metric before and
after; refusals (loss over the limit, parity, no checkpoint) exit 2 with one line and write nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from export_runs import CASES, fit_regressor, write_run, write_shards

from neuroray.cli import main
from neuroray.datasets.shards import open_shard_set, tensor_column_to_numpy
from neuroray.datasets.synthetic import write_synthetic_eeg
from neuroray.export import to_onnx as export
from neuroray.run_folder.checkpoints import load_checkpoint
from neuroray.trainables import base


def test_every_registered_trainable_has_an_export_case() -> None:
    assert sorted(CASES) == base.available()


def test_every_trainable_declares_its_scorer_and_output() -> None:
    """Each task says how export scores it and what its forward returns; no central table to forget."""
    from neuroray.export.scoring import SCORERS

    for name in base.available():
        task = base.get(name)
        assert task.scorer in SCORERS, name
        assert task.output != base.Task.output, name


@pytest.mark.parametrize("name", base.available())
def test_every_trainable_exports_with_parity_and_card(name: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    spec, hparams, target = CASES[name]
    shards = write_shards(tmp_path / "shards", spec)
    torch.manual_seed(0)
    module = base.build(name, spec, hparams, target=target)
    run = write_run(tmp_path / "run", shards, {"good": module}, module.monitor, module.mode)
    assert main(["export", str(run)]) == 0
    out = capsys.readouterr().out
    assert float(out.split("max |Δ| = ")[1].split()[0]) <= 1e-4
    card = json.loads((run / "export" / "model_card.json").read_text())
    assert card["parity"]["max_abs_diff"] <= 1e-4 and card["parity"]["windows"] == 12
    assert card["trainable"]["name"] == name and card["source"]["trial_id"] == "good"
    assert card["spec"]["spec"] == spec.to_dict() and card["model"]["input"]["shape"] == ["batch", *spec.sample_shape]
    assert card["metrics"]["validation"]["metric"] == module.monitor and card["metrics"]["validation"]["windows"] == 12
    assert np.isfinite(card["metrics"]["validation"]["fp32"])
    assert {"neuroray", "torch", "onnx", "onnxruntime"} <= set(card["versions"])
    assert card["normalization"]["per"] == "channel"
    # the batch axis is dynamic: 1 and 5 real test windows give torch's outputs
    x = tensor_column_to_numpy(open_shard_set(shards).read_split("test", ["x"])["x"])[:5]
    sess = ort.InferenceSession(str(run / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    ref = load_checkpoint(run / "checkpoints" / "good")
    with torch.no_grad():
        for batch in (x[:1], x):
            got = sess.run(None, {"x": batch})[0]
            assert np.abs(got - ref(torch.from_numpy(batch)).numpy()).max() <= 1e-4
    assert not list(tmp_path.glob(".*staging*"))


@pytest.fixture(scope="module")
def eeg_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A regressor fitted on the planted 10 Hz target (beats the mean predictor) in a finished-run folder."""
    work = tmp_path_factory.mktemp("export")
    write_synthetic_eeg(work / "eeg", n_subjects=8, windows_per_subject=20, n_chans=8, n_times=100, seed=3)
    spec = open_shard_set(work / "eeg").spec
    torch.manual_seed(0)
    fitted = fit_regressor(base.build("eeg_regressor", spec, {"encoder": "shallow"}, "y"), work / "eeg")
    return write_run(work / "run", work / "eeg", {"fit": fitted}, "val/nrmse", "min")


@pytest.mark.parametrize("mode", ["int8", "int8-static", "fp16"])
def test_quantized_export_reports_metric_before_and_after(eeg_run: Path, mode: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / mode
    assert main(["export", str(eeg_run), "--quantize", mode, "--out", str(out), "--accept-loss"]) == 0
    printed = capsys.readouterr().out
    assert f"{mode}: val/nrmse " in printed and "% relative" in printed
    card = json.loads((out / "model_card.json").read_text())
    q = card["quantization"]
    assert card["model"]["precision"] == mode and q["metric"] == "val/nrmse"
    assert q["before_fp32"] < 0.9  # the fitted model learned the planted target
    assert abs(q["after"] - q["before_fp32"]) < 0.1 and q["relative_loss"] == pytest.approx(
        (q["after"] - q["before_fp32"]) / q["before_fp32"])
    assert q["bytes"][mode] < q["bytes"]["fp32"]  # smaller file: the weights really are 8 / 16 bit
    assert set(card["model"]["files"]) == {"model.onnx", "model.fp32.onnx"}
    if mode == "int8-static":
        assert q["calibration_split"] == "train" and q["calibration_windows"] > 0
    # the quantized graph runs and stays close to the fp32 one on real validation windows
    x = tensor_column_to_numpy(open_shard_set(card["source"]["shards"]).read_split("val", ["x"])["x"])
    runs = [ort.InferenceSession(str(out / f), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
            for f in ("model.onnx", "model.fp32.onnx")]
    assert 0 < np.abs(runs[0] - runs[1]).max() < 0.5 * np.std(runs[1])


def test_quantization_loss_over_the_limit_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A target in large units (say, response time in microseconds, around 1e5): fp16's largest finite value is
    # 65504, so the converter clips the graph's de-standardization offset and every prediction is far off.
    spec = CASES["eeg_regressor"][0]
    shards = write_shards(tmp_path / "shards", spec, y_loc=1e5, y_scale=1e3)
    module = base.build("eeg_regressor", spec, {"encoder": "shallow"}, "y")
    module.set_target_stats(1e5, 1e3)
    run = write_run(tmp_path / "run", shards, {"t": module}, "val/nrmse", "min")
    out = tmp_path / "export"
    assert main(["export", str(run), "--quantize", "fp16", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "over the 2 % limit" in err and "--accept-loss" in err
    assert not out.exists() and not list(tmp_path.glob(".*staging*"))  # nothing half-written
    assert main(["export", str(run), "--quantize", "fp16", "--out", str(out), "--accept-loss"]) == 0
    q = json.loads((out / "model_card.json").read_text())["quantization"]
    assert q["relative_loss"] > 0.02 and q["accepted_over_limit"] is True


def test_export_errors_are_one_line(eeg_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    cases = [
        (["export", str(eeg_run), "--trial", "nope"], "not in"),
        (["export", str(tmp_path / "missing")], "not a finished neuroray run folder"),
        (["export"], "export needs RUN_DIR"),
        (["export", "--challenge", "eeg2025", "--challenge1", str(eeg_run)], "--challenge2"),
    ]
    # a trial that failed before any checkpoint: its row has none
    df = pd.read_parquet(eeg_run / "results.parquet")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text((eeg_run / "run.json").read_text())
    df.assign(checkpoint=None).to_parquet(broken / "results.parquet")
    cases.append((["export", str(broken)], "has no checkpoint to export"))
    for argv, expected in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, err
    monkeypatch.setattr(export, "PARITY_TOL", -1.0)  # no graph can meet it: the refusal path
    out = tmp_path / "parity"
    assert main(["export", str(eeg_run), "--out", str(out)]) == 2
    assert "parity failed" in capsys.readouterr().err and not out.exists()
