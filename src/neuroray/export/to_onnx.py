"""Export a trained trainable to ONNX, check it against torch with onnxruntime, optionally quantize it.

``neuroray export RUN_DIR`` picks a trial, rebuilds its module from the checkpoint, exports it (dynamo,
dynamic batch axis, one self-contained file), checks parity on real validation windows, scores the
trainable's own validation metric with the exported graph and, with ``--quantize``, again with the
INT8/FP16 graph. Everything is written to a staging folder first; the model files are then renamed into
the output folder and ``model_card.json`` is written last, so a reader that finds a card finds its model.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import torch

from neuroray.datasets.shards import ShardSet, open_shard_set
from neuroray.errors import NeurorayError
from neuroray.export.inference import CARD, REWRITES_KEY, OnnxModel, sample_windows
from neuroray.export.mlflow_artifacts import log_export
from neuroray.export.model_card import build_card
from neuroray.export.rewrites import for_inference
from neuroray.export.scoring import Score, evaluate, relative_loss
from neuroray.outputs import atomic_write
from neuroray.reports.source import RunInfo
from neuroray.run_folder.checkpoints import CKPT_WEIGHTS, load_checkpoint
from neuroray.run_folder.storage import fetch_checkpoint, is_uri
from neuroray.trainables.base import Task

if TYPE_CHECKING:
    from neuroray.export.quantize import Precision

PARITY_TOL = 1e-4
MAX_LOSS = 0.02  # refuse a quantized model that is more than 2 % (relative) worse on validation
MODEL, FP32_MODEL = "model.onnx", "model.fp32.onnx"
QUANT_METHOD = {
    "int8": "onnxruntime quantize_dynamic: INT8 weights, activations quantized per batch at run time",
    "int8-static": "onnxruntime quantize_static (QDQ, per-channel weights, MinMax activation ranges "
                   "calibrated on training windows)",
    "fp16": "onnxruntime float16 converter: fp16 weights and compute, fp32 input/output",
}


@dataclass(frozen=True)
class ExportResult:
    """An fp32 export of one checkpoint: model path and parity (max |Δ| vs torch over ``n_windows``)."""

    path: Path
    max_abs_diff: float
    n_windows: int


@dataclass(frozen=True)
class ExportReport:
    """What ``export_model`` wrote: folder, model, precision, parity, validation scores before/after and the card."""

    out: Path
    model: Path
    precision: str
    max_abs_diff: float
    n_parity: int
    before: Score
    after: Score | None
    relative_loss: float | None
    card: dict[str, Any]
    mlflow: str | None = None  # what happened to the MLflow artifacts (runs with tracking.mlflow)


def export_module(module: Task, out: Path, rewrite: bool = True) -> Path:
    """Write ``out`` (single self-contained file, dynamic batch axis) atomically; with ``rewrite``, the exact
    cheaper re-formulations of :mod:`neuroray.export.rewrites` are exported instead (named in the file's
    metadata, key ``neuroray.rewrites``; ``OnnxModel.rewrites`` reads them back)."""
    example = module.example_input(2)
    graph: torch.nn.Module = module
    applied: list[str] = []
    if rewrite:
        graph, applied = for_inference(module)  # a copy: the caller's module stays the parity reference
    graph = graph.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=4096)

    def write(tmp: Path) -> None:
        with torch.no_grad():
            torch.onnx.export(graph, (example,), str(tmp), dynamo=True, input_names=["x"], output_names=["y"],
                              dynamic_shapes=({0: batch},), external_data=False, verbose=False)
        if applied:
            model = onnx.load(str(tmp))
            onnx.helper.set_model_props(model, {REWRITES_KEY: ",".join(applied)})
            onnx.save(model, str(tmp))
        onnx.checker.check_model(str(tmp))

    atomic_write(out, write)
    return out


def parity(module: Task, onnx_path: Path, x: np.ndarray) -> float:
    """Max |onnxruntime − torch| over ``x`` (float32 windows)."""
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = module.eval()(torch.from_numpy(x)).numpy()
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    return float(np.max(np.abs(got.reshape(ref.shape) - ref)))


def select_trial(run_dir: Path, trial: str = "best") -> tuple[RunInfo, pd.Series]:
    """A finished run's info and the row of trial ``best`` (by the run's metric) or of that trial id."""
    from neuroray.reports import folder as report

    info, trials = report.load_run(run_dir)
    if trial == "best":
        row = report.best_trial(trials, info.metric, info.mode)
        if row is None:
            raise NeurorayError(f"{run_dir}: no trial reported {info.metric}; nothing to export")
        return info, row
    match = trials[trials["trial_id"] == trial]
    if match.empty:
        raise NeurorayError(f"--trial {trial}: not in {run_dir}; trials: {', '.join(trials['trial_id'])}")
    return info, match.iloc[0]


def checkpoint_of(row: pd.Series, run_dir: Path) -> Path:
    """The local checkpoint folder of trial ``row`` (fetched into the run folder for a URI); error if it has none."""
    ckpt = row.get("checkpoint")
    if isinstance(ckpt, str) and is_uri(ckpt):  # --storage s3://…: a local copy in the run folder
        ckpt = str(fetch_checkpoint(ckpt, run_dir / "checkpoints"))
    if not isinstance(ckpt, str) or not ckpt or not (Path(ckpt) / CKPT_WEIGHTS).is_file():
        raise NeurorayError(f"{run_dir}: trial {row['trial_id']} has no checkpoint to export (checkpoint "
                            f"{ckpt!r}: no {CKPT_WEIGHTS}); it failed or never reported an improvement")
    return Path(ckpt)


def _trial_metrics(row: pd.Series) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if str(k).startswith(("val/", "train/", "test/"))
            and isinstance(v, int | float) and not math.isnan(float(v))}


def _publish(staging: Path, out: Path, files: dict[str, Path], card: dict[str, Any]) -> None:
    """Model files renamed into ``out`` first, the card last; a stale fp32 sibling of an earlier export goes."""
    out.mkdir(parents=True, exist_ok=True)
    if FP32_MODEL not in files:
        (out / FP32_MODEL).unlink(missing_ok=True)
    for name, path in files.items():
        os.replace(path, out / name)
    atomic_write(out / CARD, lambda p: p.write_text(json.dumps(card, indent=2, default=str)))


def export_model(checkpoint: str | Path, shard_set: ShardSet, out_dir: Path, precision: Precision = "fp32", *,
                 source: dict[str, Any] | None = None, trial_metrics: dict[str, Any] | None = None,
                 max_loss: float = MAX_LOSS, accept_loss: bool = False, parity_windows: int = 256,
                 calib_windows: int = 256) -> ExportReport:
    """Checkpoint → ``out_dir/model.onnx`` (+ ``model.fp32.onnx`` when quantized) + ``model_card.json``."""
    module = load_checkpoint(checkpoint)
    if tuple(shard_set.spec.sample_shape) != tuple(module.spec.sample_shape):
        raise NeurorayError(f"{shard_set.root}: windows of shape {shard_set.spec.sample_shape}, but the checkpoint "
                            f"{checkpoint} takes {module.spec.sample_shape}")
    out_dir = Path(out_dir)
    staging = out_dir.parent / f".{out_dir.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        fp32 = export_module(module, staging / "fp32.onnx")
        x = sample_windows(shard_set, "val", parity_windows)
        if len(x) == 0:
            raise NeurorayError(f"{shard_set.root}: the validation split is empty; parity needs real windows")
        diff = parity(module, fp32, x)
        if not diff <= PARITY_TOL:
            raise NeurorayError(f"parity failed: onnxruntime vs torch max |Δ| = {diff:.2e} > {PARITY_TOL:g} on "
                                f"{len(x)} validation windows; nothing written")
        before = evaluate(module, OnnxModel(fp32), shard_set, "val")
        files: dict[str, Path] = {MODEL: fp32}
        after: Score | None = None
        loss: float | None = None
        quant: dict[str, Any] | None = None
        if precision != "fp32":
            from neuroray.export.quantize import convert  # onnxruntime.quantization: only when asked for

            calib = sample_windows(shard_set, "train", calib_windows) if precision == "int8-static" else None
            qpath = staging / "quantized.onnx"
            details = convert(precision, fp32, qpath, calib)
            after = evaluate(module, OnnxModel(qpath), shard_set, "val")
            loss = relative_loss(before.value, after.value, before.mode)
            quant = {"precision": precision, "method": QUANT_METHOD[precision], **details, "metric": before.metric,
                     "mode": before.mode, "before_fp32": before.value, "after": after.value, "relative_loss": loss,
                     "max_loss": max_loss, "accepted_over_limit": bool(not loss <= max_loss),
                     "max_abs_diff_vs_torch": parity(module, qpath, x), "validation_windows": after.n_windows,
                     "calibration_split": "train" if calib is not None else None,
                     "bytes": {"fp32": fp32.stat().st_size, precision: qpath.stat().st_size}}
            if not loss <= max_loss and not accept_loss:  # NaN (e.g. fp16 overflow to inf) is refused too
                raise NeurorayError(
                    f"{precision}: {before.metric} {before.value:.4f} → {after.value:.4f} on the validation split is "
                    f"{loss * 100:+.2f} % relative, over the {max_loss * 100:g} % limit; nothing written. Pass "
                    "--accept-loss to keep it anyway, or try another --quantize")
            files = {MODEL: qpath, FP32_MODEL: fp32}
        with torch.no_grad():
            out_shape = ["batch", *module(torch.from_numpy(x[:2])).shape[1:]]
        validation: dict[str, Any] = {"metric": before.metric, "mode": before.mode, "split": "val",
                                      "windows": before.n_windows, "fp32": before.value}
        if after is not None:
            validation[precision] = after.value
        card = build_card(module, shard_set, files, precision, {"max_abs_diff": diff, "windows": len(x),
                          "tolerance": PARITY_TOL, "precision": "fp32",
                          "graph_rewrites": OnnxModel(fp32).rewrites}, validation, quant, source, trial_metrics,
                          out_shape)
        _publish(staging, out_dir, files, card)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportReport(out=out_dir, model=out_dir / MODEL, precision=precision, max_abs_diff=diff,
                        n_parity=len(x), before=before, after=after, relative_loss=loss, card=card)


def export_checkpoint(checkpoint: str | Path, shard_set: ShardSet, out_dir: Path,
                      n_windows: int = 256) -> ExportResult:
    """fp32 export of one checkpoint (the demo's path); see :func:`export_model`."""
    if not checkpoint or not (Path(checkpoint) / CKPT_WEIGHTS).is_file():
        raise NeurorayError(f"checkpoint {checkpoint!r} does not exist; the trial has nothing to export")
    r = export_model(checkpoint, shard_set, out_dir, parity_windows=n_windows)
    return ExportResult(path=r.model, max_abs_diff=r.max_abs_diff, n_windows=r.n_parity)


def export_trial(run_dir: Path, trial: str = "best", out: Path | None = None, precision: Precision = "fp32",
                 **kwargs: Any) -> tuple[pd.Series, ExportReport]:
    """``neuroray export RUN_DIR``: the chosen trial of a finished run → ``out`` (default RUN_DIR/export)."""
    info, row = select_trial(run_dir, trial)
    ckpt = checkpoint_of(row, run_dir)
    if not info.shards:
        raise NeurorayError(f"{run_dir}/run.json names no shard set; parity and metrics need its validation split")
    source = {"run_dir": str(run_dir.resolve()), "experiment": info.name, "trial_id": row["trial_id"],
              "arm": row.get("arm"), "seed": row.get("seed"), "checkpoint": str(ckpt)}
    report = export_model(ckpt, open_shard_set(info.shards), out or run_dir / "export", precision,
                          source=source, trial_metrics=_trial_metrics(row), **kwargs)
    return row, replace(report, mlflow=log_export(run_dir, str(row["trial_id"]), report.out))


def format_report(trial_id: str, r: ExportReport) -> str:
    """Human-readable summary of an export: parity, validation metric and, when quantized, the relative loss."""
    lines = [f"exported trial {trial_id} → {r.model} ({r.precision}); onnxruntime vs torch max |Δ| = "
             f"{r.max_abs_diff:.2e} on {r.n_parity} validation windows (fp32)",
             f"validation {r.before.metric} over {r.before.n_windows} windows: fp32 {r.before.value:.4f}"]
    if r.after is not None and r.relative_loss is not None:
        lines.append(f"{r.precision}: {r.before.metric} {r.before.value:.4f} → {r.after.value:.4f} "
                     f"({r.relative_loss * 100:+.2f} % relative; limit {r.card['quantization']['max_loss'] * 100:g} %"
                     + (", ACCEPTED OVER THE LIMIT with --accept-loss)" if r.relative_loss > r.card["quantization"]
                        ["max_loss"] else ")"))
    lines.append(f"model card: {r.out / CARD}")
    if r.mlflow:
        lines.append(r.mlflow)
    return "\n".join(lines)
