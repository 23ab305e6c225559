"""`neuroray bench-model` and `neuroray predict` on an exported model; the export's metric is the trainable's own."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from export_runs import CASES, write_run, write_shards

from neuroray.cli import main
from neuroray.datasets.shards import open_shard_set, tensor_column_to_numpy
from neuroray.datasets.spec import EEGWindowSpec
from neuroray.run_folder.checkpoints import load_checkpoint
from neuroray.trainables import base


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(model.onnx, shard set, checkpoint) of a two-class EEG classifier."""
    work = tmp_path_factory.mktemp("inference")
    spec, hparams, target = CASES["eeg_classifier"]
    shards = write_shards(work / "shards", spec, rows={"train": 20, "val": 19, "test": 13})
    torch.manual_seed(1)
    run = write_run(work / "run", shards, {"c": base.build("eeg_classifier", spec, hparams, target)},
                    "val/auroc", "max")
    assert main(["export", str(run)]) == 0
    return run / "export" / "model.onnx", shards, run / "checkpoints" / "c"


def test_bench_model_prints_latency_percentiles_and_throughput(exported: tuple[Path, Path, Path], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    model = exported[0]
    figures = tmp_path / "bench.json"
    assert main(["bench-model", str(model), "--runs", "40", "--warmup", "5", "--threads", "1",
                 "--json", str(figures)]) == 0
    out = capsys.readouterr().out
    assert "batch-1 latency: p50 " in out and " p95 " in out and "batch-64 throughput: " in out
    assert "session: graph optimization ORT_ENABLE_ALL, ORT_SEQUENTIAL execution, intra-op threads 1" in out
    r = json.loads(figures.read_text())
    assert r["session"]["providers"] == ["CPUExecutionProvider"] and r["session"]["load_ms"] > 0
    assert 0 < r["batch1_p50_ms"] <= r["batch1_p95_ms"] and r["runs"] == 40 and r["threads"] == 1
    assert r["input_shape"] == [64, 8, 128] and r["throughput_per_s"] > 0


def test_predict_streams_every_row_with_ids_and_torch_values(exported: tuple[Path, Path, Path], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    model, shards, ckpt = exported
    out = tmp_path / "preds" / "val.parquet"
    # batches of 5 over files of 8 rows: the stream crosses batch and file boundaries
    assert main(["predict", str(model), str(shards), "--out", str(out), "--split", "val", "--batch-size", "5"]) == 0
    assert "19 predictions (val)" in capsys.readouterr().out
    preds = pd.read_parquet(out)
    shard_set = open_shard_set(shards)
    table = shard_set.read_split("val")
    assert len(preds) == shard_set.rows("val") == 19
    assert list(preds["subject"]) == table["subject"].to_pylist() and list(preds["window"]) == list(range(19))
    with torch.no_grad():
        ref = load_checkpoint(ckpt)(torch.from_numpy(tensor_column_to_numpy(table["x"]))).numpy()
    got = preds[["pred_0", "pred_1"]].to_numpy()
    assert np.abs(got - ref).max() <= 1e-4
    assert not list(out.parent.glob(".*tmp*"))

    every = tmp_path / "all.parquet"
    assert main(["predict", str(model), str(shards), "--out", str(every), "--split", "all"]) == 0
    preds = pd.read_parquet(every)
    assert preds["split"].value_counts().to_dict() == {"train": 20, "val": 19, "test": 13}


def test_predict_and_bench_refuse_bad_inputs(exported: tuple[Path, Path, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    model, shards, _ = exported
    other = write_shards(tmp_path / "other", EEGWindowSpec(n_chans=4, n_times=128, sfreq=64.0))
    renamed = write_shards(tmp_path / "renamed", EEGWindowSpec(n_chans=8, n_times=128, sfreq=64.0,
                                                               ch_names=tuple(f"X{i}" for i in range(8))))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    out = tmp_path / "p.parquet"
    cases = [
        (["predict", str(model), str(other), "--out", str(out)], "windows of shape (4, 128)"),
        (["predict", str(model), str(renamed), "--out", str(out)], "ch_names differs from the model card"),
        (["predict", str(tmp_path / "none.onnx"), str(shards), "--out", str(out)], "no such model file"),
        (["predict", str(garbage), str(shards), "--out", str(out)], "not a loadable ONNX model"),
        (["predict", str(model), str(tmp_path), "--out", str(out)], "not a shard set"),
        (["predict", str(model), str(shards), "--out", str(tmp_path)], "is a folder"),
        (["bench-model", str(tmp_path / "none.onnx")], "no such model file"),
        (["bench-model", str(model), "--threads", "0"], "--threads 0"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, err
    assert not out.exists()


def test_exported_metric_is_the_trainables_own_validation_metric(exported: tuple[Path, Path, Path]) -> None:
    """The card's val/auroc (onnxruntime outputs, platform scorer) = Lightning's validation loop on the module."""
    model, shards, ckpt = exported
    card = json.loads((model.parent / "model_card.json").read_text())
    table = open_shard_set(shards).read_split("val", ["x", "label"])
    rows = [{"x": torch.from_numpy(x), "label": torch.tensor(float(y))}
            for x, y in zip(tensor_column_to_numpy(table["x"]), table["label"].to_pylist(), strict=True)]
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    loader = torch.utils.data.DataLoader(rows, batch_size=7)  # type: ignore[arg-type]
    lightning_auroc = trainer.validate(load_checkpoint(ckpt), loader, verbose=False)[0]["val/auroc"]
    assert card["metrics"]["validation"]["fp32"] == pytest.approx(lightning_auroc, abs=1e-5)
