"""Inference speed: every EEG encoder of ``eeg_regressor`` on EEG2025 windows (129 ch x 200 samples at 100 Hz),
exported to ONNX and run by onnxruntime vs the same module in torch eager; then EEGNeX INT8 vs fp32.

Baseline: torch eager (``inference_mode``) on the same inputs with the same protocol and thread count
(1 intra-op thread for both: repeatable on a shared machine, and what a per-window online decoder gets).
ONNX figures come from ``neuroray.platform.inference.bench``, the code behind ``neuroray bench-model``.
INT8: a briefly fitted EEGNeX exported through ``export_model`` (the code behind ``neuroray export --quantize``),
which scores the validation NRMSE of the fp32 and the INT8 graph.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuroray.datasets.eeg.steps import resolve_layout
from neuroray.datasets.shards import open_shard_set, tensor_column_to_numpy
from neuroray.datasets.spec import EEGWindowSpec
from neuroray.datasets.synthetic import write_synthetic_eeg
from neuroray.platform.export import export_model, export_module
from neuroray.platform.inference import OnnxModel, bench, time_calls
from neuroray.platform.quantize import Precision
from neuroray.platform.train import save_checkpoint
from neuroray.trainables import base
from neuroray.trainables.eeg import EncoderName

THREADS, BATCH = 1, 64
SPEC = EEGWindowSpec(n_chans=129, n_times=200, sfreq=100.0, ch_names=tuple(resolve_layout("hbn129")))
FIGURES = ("batch1_p50_ms", "batch1_p95_ms", "throughput_per_s")
MIN_RUNS, MAX_RUNS = 30, 200


def _summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    return {k: {"median": statistics.median(r[k] for r in rows), "min": min(r[k] for r in rows),
                "max": max(r[k] for r in rows)} for k in FIGURES}


def _torch_fn(module: torch.nn.Module) -> Callable[[np.ndarray], Any]:
    def call(x: np.ndarray) -> Any:
        with torch.inference_mode():
            return module(torch.from_numpy(x))
    return call


def _runs(fn: Callable[[np.ndarray], Any], budget_s: float) -> int:
    """Timed batch-1 calls that fit ``budget_s`` (MIN_RUNS..MAX_RUNS), from three untimed calls."""
    one = np.zeros((1, *SPEC.sample_shape), np.float32)
    start = time.perf_counter()
    for _ in range(3):
        fn(one)
    per_call = (time.perf_counter() - start) / 3
    return int(min(MAX_RUNS, max(MIN_RUNS, budget_s / per_call)))


def _measure(fns: dict[str, Callable[[np.ndarray], Any]], runs: dict[str, int], repeats: int,
             onnx: dict[str, OnnxModel]) -> dict[str, dict[str, dict[str, float]]]:
    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in fns}
    for _ in range(repeats):  # interleaved, so a load spike on the shared machine hits every runtime alike
        for k, fn in fns.items():
            kw = {"runs": runs[k], "warmup": 3, "batch": BATCH, "batch_runs": 1}
            rows[k].append(bench(onnx[k], **kw) if k in onnx else time_calls(fn, SPEC.sample_shape, **kw))
    return {k: {**_summary(v), "runs": {"median": runs[k], "min": runs[k], "max": runs[k]}} for k, v in rows.items()}


def _encoder(name: str, work: Path, repeats: int, budget_s: float) -> dict[str, Any]:
    torch.manual_seed(0)
    module = base.build("eeg_regressor", SPEC, {"encoder": name}, "y").eval()
    onnx_model = OnnxModel(export_module(module, work / f"{name}.onnx"), threads=THREADS)
    fns = {"onnx": onnx_model, "torch_eager": _torch_fn(module)}
    runs = {k: _runs(fn, budget_s) for k, fn in fns.items()}
    if name == "eegnex":
        runs["onnx"] = 200  # the acceptance figure: bench-model's default protocol
    m = _measure(fns, runs, repeats, {"onnx": onnx_model})
    o, t = m["onnx"], m["torch_eager"]
    return {"params": sum(p.numel() for p in module.parameters()), "onnx": o, "torch_eager": t,
            "onnx_speedup_batch1_p50": t["batch1_p50_ms"]["median"] / o["batch1_p50_ms"]["median"],
            "onnx_speedup_throughput": o["throughput_per_s"]["median"] / t["throughput_per_s"]["median"]}


def _fit(module: base.Task, shards: Path, epochs: int) -> base.Task:
    table = open_shard_set(shards).read_split("train", ["x", "y"])
    x = torch.from_numpy(tensor_column_to_numpy(table["x"]).copy())
    y = torch.from_numpy(table["y"].to_numpy().astype(np.float32))
    module.set_target_stats(float(y.mean()), float(y.std()))
    opt = torch.optim.AdamW(module.parameters(), lr=3e-3)
    module.train()
    for _ in range(epochs):
        for i in range(0, len(x), 32):
            opt.zero_grad()
            module.training_step({"x": x[i:i + 32], "y": y[i:i + 32]}, 0).backward()
            opt.step()
    # After a dozen steps BatchNorm's running averages still lag the weights; re-estimate them on the training
    # windows (cumulative average) so the exported eval-mode model is the one that learned.
    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
    with torch.no_grad():
        for i in range(0, len(x), 32):
            module(x[i:i + 32])
    for bn in norms:
        bn.momentum = 0.1
    return module.eval()


def _eegnex_int8(work: Path, repeats: int, budget_s: float, epochs: int) -> dict[str, Any]:
    """fp32 vs dynamic and static INT8: validation NRMSE (the planted 10 Hz target) and latency."""
    shards = work / "eeg129"
    write_synthetic_eeg(shards, n_subjects=10, windows_per_subject=12, n_chans=129, n_times=200, seed=5)
    torch.manual_seed(0)
    module = _fit(base.build("eeg_regressor", open_shard_set(shards).spec, {"encoder": "eegnex"}, "y"), shards, epochs)
    ckpt = work / "ckpt"
    ckpt.mkdir()
    spec = open_shard_set(shards).spec
    save_checkpoint(ckpt, module, {"name": "fit"}, {"modality": "eeg", "spec": spec.to_dict()}, {})
    out: dict[str, Any] = {"train_epochs": epochs}
    precisions: tuple[Precision, ...] = ("int8", "int8-static")
    for precision in precisions:
        r = export_model(ckpt, open_shard_set(shards), work / precision, precision, accept_loss=True)
        if r.after is None or r.relative_loss is None:
            raise RuntimeError(f"{precision} export reported no metric after quantization")
        out["metric"] = r.before.metric
        out["validation_windows"] = r.before.n_windows
        out["fp32_metric"] = r.before.value
        out[precision] = {"metric": r.after.value, "relative_loss": r.relative_loss,
                          "bytes": r.card["quantization"]["bytes"][precision]}
        out["fp32_bytes"] = r.card["quantization"]["bytes"]["fp32"]
    models = {"fp32": work / "int8" / "model.fp32.onnx", "int8": work / "int8" / "model.onnx",
              "int8-static": work / "int8-static" / "model.onnx"}
    sessions = {k: OnnxModel(p, threads=THREADS) for k, p in models.items()}
    runs = {k: _runs(model, budget_s) for k, model in sessions.items()}
    for k, figures in _measure(dict(sessions), runs, repeats, sessions).items():
        out.setdefault(k, {})["latency"] = figures
    fp32_p50 = out["fp32"]["latency"]["batch1_p50_ms"]["median"]
    for k in ("int8", "int8-static"):
        out[k]["batch1_p50_ratio_vs_fp32"] = out[k]["latency"]["batch1_p50_ms"]["median"] / fp32_p50
    return out


def run(repeats: int = 3, budget_s: float = 1.0, int8_epochs: int = 3) -> dict[str, Any]:
    """Every figure: median of ``repeats`` (min, max). Batch-1 runs per measurement: what fits ``budget_s``
    (30..200), except EEGNeX on ONNX Runtime, always 200; batch-64 throughput: one timed call per repeat."""
    torch.set_num_threads(THREADS)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="neuroray-bench-") as tmp:
        work = Path(tmp)
        encoders = {name: _encoder(name, work, repeats, budget_s) for name in typing.get_args(EncoderName)}
        int8 = _eegnex_int8(work, repeats, budget_s, int8_epochs)
    eegnex = encoders["eegnex"]["onnx"]
    return {
        "name": "inference",
        "what": f"eeg_regressor encoders at {SPEC.n_chans} ch x {SPEC.n_times} samples ({SPEC.sfreq:g} Hz), "
                f"{THREADS} thread: ONNX Runtime (neuroray bench-model) vs torch eager, batch-1 latency and "
                f"batch-{BATCH} throughput; EEGNeX INT8 (dynamic, static) vs fp32: validation NRMSE and latency",
        "encoders": encoders,
        "eegnex_batch1_p95_ms": eegnex["batch1_p95_ms"],
        "eegnex_int8": int8,
        "wall_s": time.perf_counter() - start,
    }
