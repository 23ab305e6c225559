"""Export a trained trainable to ONNX and check it against torch with onnxruntime."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from neuroray.datasets.shards import ShardSet, tensor_column_to_numpy
from neuroray.errors import NeurorayError
from neuroray.platform.train import load_checkpoint
from neuroray.trainables.base import Task

PARITY_TOL = 1e-4


@dataclass(frozen=True)
class ExportResult:
    path: Path
    max_abs_diff: float
    n_windows: int


def export_module(module: Task, out: Path) -> Path:
    """Write ``out`` (single self-contained file, dynamic batch axis) atomically."""
    module = module.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    example = module.example_input(2)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.no_grad():
        torch.onnx.export(module, (example,), str(tmp), dynamo=True, input_names=["x"], output_names=["y"],
                          dynamic_shapes=({0: batch},), external_data=False, verbose=False)
    onnx.checker.check_model(str(tmp))
    os.replace(tmp, out)
    return out


def parity(module: Task, onnx_path: Path, x: np.ndarray) -> float:
    """Max |onnxruntime − torch| over ``x`` (float32 windows)."""
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = module.eval()(torch.from_numpy(x)).numpy()
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    return float(np.max(np.abs(got.reshape(ref.shape) - ref)))


def export_checkpoint(checkpoint: str | Path, shard_set: ShardSet, out_dir: Path,
                      n_windows: int = 256) -> ExportResult:
    """Checkpoint → ``out_dir/model.onnx``; parity measured on real validation windows."""
    if not checkpoint or not Path(checkpoint).is_dir():
        raise NeurorayError(f"checkpoint {checkpoint!r} does not exist; the trial has nothing to export")
    module = load_checkpoint(checkpoint)
    path = export_module(module, out_dir / "model.onnx")
    shutil.copy(Path(checkpoint) / "meta.json", out_dir / "checkpoint_meta.json")
    x = tensor_column_to_numpy(shard_set.read_split("val", columns=["x"])["x"])[:n_windows]
    diff = parity(module, path, np.array(x, dtype=np.float32, copy=True))
    return ExportResult(path=path, max_abs_diff=diff, n_windows=len(x))
