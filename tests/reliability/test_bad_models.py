"""Exported models given to `bench-model` and `predict`: a corrupt model card beside the model, a `--json`
path whose folder does not exist yet or cannot exist.

The model is a real ONNX graph (mean of each window) built with onnx.helper: these cases are about the files
around it, so no training run is needed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from neuroray.cli import main
from neuroray.export.inference import CARD, OnnxModel

SHAPE = (4, 16)  # (channels, samples) of one window


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """``<tmp>/export/model.onnx``: (batch, 4, 16) → (batch,), the mean of each window."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *SHAPE])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch"])
    node = helper.make_node("ReduceMean", ["x"], ["y"], axes=[1, 2], keepdims=0)
    graph = helper.make_graph([node], "window_mean", [x], [y])
    # ir_version 8: what onnxruntime reads (onnx's newest default can be ahead of it)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(proto)
    path = tmp_path / "export" / "model.onnx"
    path.parent.mkdir()
    onnx.save(proto, str(path))
    return path


def test_the_model_runs(model: Path) -> None:
    """The fixture is a working model: every case below breaks only what lies around it."""
    x = np.random.default_rng(0).standard_normal((3, *SHAPE)).astype(np.float32)
    assert np.allclose(OnnxModel(model, threads=1)(x), x.mean(axis=(1, 2)), atol=1e-6)


def test_bench_json_into_a_folder_that_does_not_exist_yet(model: Path, tmp_path: Path) -> None:
    figures = tmp_path / "results" / "bench" / "model.json"  # neither folder exists
    assert main(["bench-model", str(model), "--runs", "5", "--warmup", "1", "--batch", "4", "--threads", "1",
                 "--json", str(figures)]) == 0
    r = json.loads(figures.read_text())
    assert r["runs"] == 5 and r["input_shape"] == [4, *SHAPE] and r["batch1_p50_ms"] > 0
    assert [p.name for p in figures.parent.iterdir()] == ["model.json"]  # no temp file left beside it


def test_bench_json_where_no_folder_can_be_made(model: Path, tmp_path: Path,
                                                expect_exit2: Callable[..., str]) -> None:
    blocker = tmp_path / "a-file"  # a folder below a regular file cannot be made, even by root
    blocker.write_text("not a folder")
    target = blocker / "bench" / "model.json"
    expect_exit2(["bench-model", str(model), "--runs", "5", "--warmup", "1", "--batch", "4", "--json", str(target)],
                 f"--json {target}: cannot write there", "choose a path in a folder you can write",
                 untouched=[blocker])


CARDS = [  # (id, content of model_card.json, fragments of the error line after the card's path)
    ("cut-short", '{"format": "neuroray-model-card/1", "spec": {"modality": "eeg", ', ["not valid JSON"]),
    ("not-an-object", '["eeg"]', ["a model card is a JSON object; got list"]),
]


@pytest.mark.parametrize(("content", "fragments"), [c[1:] for c in CARDS], ids=[c[0] for c in CARDS])
@pytest.mark.parametrize("command", ["bench-model", "predict"])
def test_corrupt_model_card(command: str, content: str, fragments: list[str], model: Path, tmp_path: Path,
                            expect_exit2: Callable[..., str]) -> None:
    card = model.parent / CARD
    card.write_text(content)
    out = tmp_path / "preds.parquet"
    argv = ["bench-model", str(model), "--runs", "5"] if command == "bench-model" else \
        ["predict", str(model), str(tmp_path / "shards"), "--out", str(out)]
    expect_exit2(argv, f"{card}: ", *fragments, "Export the model again", untouched=[model.parent, out])
