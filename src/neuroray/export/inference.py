"""Run exported models: an onnxruntime session with its model card, latency/throughput, batch prediction.

Prediction streams: each Parquet file of the shard set is read ``batch_size`` rows at a time and each
batch of predictions is appended to the output through one ``ParquetWriter``, so memory stays at a few
batches whatever the size of the set. Ray is not needed for this; one process saturates the session's
threads.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq

from neuroray.datasets.shards import ShardSet, tensor_array, tensor_column_to_numpy
from neuroray.datasets.splits import SPLITS
from neuroray.errors import NeurorayError, first_line
from neuroray.outputs import atomic_write

CARD = "model_card.json"
REWRITES_KEY = "neuroray.rewrites"  # ONNX metadata_props key written by export_module


def _read_card(path: Path) -> dict[str, Any]:
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise NeurorayError(f"{path}: not valid JSON ({getattr(e, 'msg', e)}); the model card is corrupt. "
                            "Export the model again (or delete the card to skip its checks)") from None
    if not isinstance(card, dict):
        raise NeurorayError(f"{path}: a model card is a JSON object; got {type(card).__name__}. "
                            "Export the model again (or delete the card to skip its checks)")
    return card


class OnnxModel:
    """An onnxruntime CPU session on ``path`` plus the model card written beside it (if any)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise NeurorayError(f"{self.path}: no such model file; export one with `neuroray export RUN_DIR`")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # constant-folding notes on fp16 graphs are not the user's business
        # Every graph optimization, applied at load: the NCHWc layouts of level "all" are specific to this CPU,
        # so model.onnx stays portable standard ONNX and is optimized where it runs. Measured: 1.5 ms (EEGNeX)
        # to 77 ms (LaBraM) of load time; a saved pre-optimized graph halves that and gains nothing per call.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # One request at a time: parallel execution only helps graphs with independent branches, and costs
        # scheduling on every call of these chain-shaped encoders.
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if threads is not None:
            if threads < 1:
                raise NeurorayError(f"--threads {threads}: must be >= 1")
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        start = time.perf_counter()
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own pybind exception types for unreadable graphs
            raise NeurorayError(f"{self.path}: not a loadable ONNX model ({first_line(e, 200)})") from None
        self.load_ms = (time.perf_counter() - start) * 1e3
        meta = self.session.get_modelmeta().custom_metadata_map
        #: the exact re-formulations the export applied (neuroray.export.rewrites), from the file's metadata
        self.rewrites = [r for r in meta.get(REWRITES_KEY, "").split(",") if r]
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        dims = inp.shape[1:]
        self.sample_shape: tuple[int, ...] | None = (
            tuple(int(d) for d in dims) if all(isinstance(d, int) for d in dims) else None)
        card = self.path.parent / CARD
        self.card: dict[str, Any] | None = _read_card(card) if card.is_file() else None

    def settings(self) -> dict[str, Any]:
        """The session settings a latency figure depends on, as ``bench-model`` prints them."""
        o = self.session.get_session_options()
        return {"graph_optimization": str(o.graph_optimization_level).rsplit(".", 1)[-1],
                "execution_mode": str(o.execution_mode).rsplit(".", 1)[-1],
                "intra_op_threads": o.intra_op_num_threads or "default",
                "inter_op_threads": o.inter_op_num_threads or "default",
                "providers": self.session.get_providers(), "load_ms": self.load_ms, "graph_rewrites": self.rewrites}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]
        return out

    def check_shards(self, shard_set: ShardSet) -> None:
        """Refuse a shard set whose windows are not what the model was exported for."""
        got = tuple(shard_set.spec.sample_shape)
        if self.sample_shape is not None and got != self.sample_shape:
            raise NeurorayError(f"{shard_set.root}: windows of shape {got}, but {self.path} takes "
                                f"{self.sample_shape}; predict on a shard set prepared like the training one")
        if self.card is None:
            return
        want = self.card.get("spec", {})
        have = {"modality": shard_set.manifest["modality"], "spec": shard_set.spec.to_dict()}
        for key in ("sfreq", "ch_names", "voxel_mm"):
            a, b = want.get("spec", {}).get(key), have["spec"].get(key)
            if a is not None and b is not None and a != b:
                shown = f"{len(a)} channels" if key == "ch_names" else a
                raise NeurorayError(f"{shard_set.root}: {key} differs from the model card of {self.path} "
                                    f"(model: {shown}); predict on a shard set prepared like the training one")
        if want.get("modality") not in (None, have["modality"]):
            raise NeurorayError(f"{shard_set.root}: {have['modality']} data, but {self.path} takes "
                                f"{want['modality']}")


def iter_split(shard_set: ShardSet, split: str, columns: Sequence[str] | None = None,
               batch_size: int = 256) -> Iterator[tuple[np.ndarray, pa.RecordBatch]]:
    """(x as float32 numpy, the record batch) ``batch_size`` rows at a time, file by file."""
    for path in shard_set.files(split):
        cols = None if columns is None else ["x", *[c for c in columns if c != "x"]]
        for batch in pq.ParquetFile(path, filesystem=shard_set.fs).iter_batches(batch_size=batch_size, columns=cols):
            yield tensor_column_to_numpy(batch.column("x")), batch


def sample_windows(shard_set: ShardSet, split: str, n: int, batch_size: int = 256) -> np.ndarray:
    """About ``n`` windows spread evenly over ``split`` (every k-th row), read in bounded memory."""
    stride = max(1, -(-shard_set.rows(split) // max(n, 1)))  # ceil: the kept rows reach the split's end
    keep: list[np.ndarray] = []
    seen = 0
    for x, _ in iter_split(shard_set, split, ["x"], batch_size):
        idx = np.arange(seen, seen + len(x))
        keep.append(x[idx % stride == 0])
        seen += len(x)
    return np.concatenate(keep)[:n] if keep else np.zeros((0, *shard_set.spec.sample_shape), np.float32)


def _prediction_columns(y: np.ndarray) -> dict[str, pa.Array]:
    if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1):
        return {"pred": pa.array(y.reshape(-1))}
    if y.ndim == 2:
        return {f"pred_{i}": pa.array(y[:, i]) for i in range(y.shape[1])}
    return {"pred": tensor_array(y)}  # reconstructions: one fixed-shape tensor per row


@dataclass(frozen=True)
class PredictResult:
    """What ``predict`` wrote: the Parquet file, its row count and the splits it covers."""

    out: Path
    rows: int
    splits: list[str]


def predict(model: OnnxModel, shard_set: ShardSet, out: str | Path, split: str = "test",
            batch_size: int = 256) -> PredictResult:
    """Predictions for every row of ``split`` (or ``all``) with the shard set's id columns kept beside them."""
    if split not in (*SPLITS, "all"):
        raise NeurorayError(f"--split {split!r}; allowed: {', '.join(SPLITS)}, all")
    if batch_size < 1:
        raise NeurorayError(f"--batch-size {batch_size}: must be >= 1")
    model.check_shards(shard_set)
    splits = list(SPLITS) if split == "all" else [split]
    if sum(shard_set.rows(s) for s in splits) == 0:
        raise NeurorayError(f"{shard_set.root}: split {split!r} has no rows; rows per split: "
                            f"{shard_set.manifest['rows']}")
    out = Path(out)
    if out.is_dir():
        raise NeurorayError(f"--out {out}: is a folder; name the Parquet file to write (e.g. {out}/preds.parquet)")
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> int:
        rows = 0
        writer: pq.ParquetWriter | None = None
        try:
            for name in splits:
                for x, batch in iter_split(shard_set, name, None, batch_size):
                    table = pa.Table.from_batches([batch]).drop_columns(["x"])
                    if split == "all":
                        table = table.append_column("split", pa.array([name] * len(x)))
                    for col, values in _prediction_columns(model(x)).items():
                        table = table.append_column(col, values)
                    if writer is None:
                        writer = pq.ParquetWriter(tmp, table.schema)
                    writer.write_table(table.cast(writer.schema))
                    rows += len(x)
        finally:
            if writer is not None:
                writer.close()
        return rows

    rows = atomic_write(out, write)
    return PredictResult(out=out, rows=rows, splits=splits)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def time_calls(fn: Callable[[np.ndarray], Any], sample_shape: Sequence[int], runs: int = 200, warmup: int = 20,
               batch: int = 64, batch_runs: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Batch-1 latency of ``fn`` (p50/p95 over ``runs`` timed calls after ``warmup``) and batch-``batch``
    throughput (``batch_runs`` timed calls, default max(5, runs / 10)); the same protocol for any runtime."""
    rng = np.random.default_rng(seed)
    one = rng.standard_normal((1, *sample_shape), dtype=np.float32)
    many = rng.standard_normal((batch, *sample_shape), dtype=np.float32)
    for _ in range(warmup):
        fn(one)
    lat = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(one)
        lat.append((time.perf_counter() - start) * 1e3)
    big_runs = batch_runs or max(5, runs // 10)
    for _ in range(max(1, warmup // 10)):
        fn(many)
    big = []
    for _ in range(big_runs):
        start = time.perf_counter()
        fn(many)
        big.append(time.perf_counter() - start)
    return {"input_shape": [batch, *sample_shape], "runs": runs, "warmup": warmup,
            "batch1_p50_ms": _percentile(lat, 50), "batch1_p95_ms": _percentile(lat, 95),
            "batch1_mean_ms": statistics.fmean(lat), f"batch{batch}_median_ms": statistics.median(big) * 1e3,
            "batch": batch, "batch_runs": big_runs, "throughput_per_s": batch * big_runs / sum(big)}


def bench(model: OnnxModel, runs: int = 200, warmup: int = 20, batch: int = 64, batch_runs: int | None = None,
          seed: int = 0) -> dict[str, Any]:
    """``neuroray bench-model``: :func:`time_calls` on the onnxruntime session (random windows of its shape)."""
    if runs < 1 or warmup < 0 or batch < 1:
        raise NeurorayError(f"--runs {runs} / --warmup {warmup} / --batch {batch}: need runs >= 1, warmup >= 0, "
                            "batch >= 1")
    if model.sample_shape is None:
        raise NeurorayError(f"{model.path}: input has symbolic dimensions besides the batch; cannot make a window")
    threads = model.session.get_session_options().intra_op_num_threads
    return {"model": str(model.path), "threads": threads or "default", "session": model.settings(),
            **time_calls(model, model.sample_shape, runs, warmup, batch, batch_runs, seed)}


def format_bench(r: dict[str, Any]) -> str:
    """Human-readable summary of a :func:`bench` result: batch-1 latency and batch throughput."""
    b = r["batch"]
    st = r["session"]
    rewrites = ", ".join(st["graph_rewrites"]) or "none"
    return (f"{r['model']}: input {r['input_shape'][1:]}, threads {r['threads']}\n"
            f"session: graph optimization {st['graph_optimization']}, {st['execution_mode']} execution, "
            f"intra-op threads {st['intra_op_threads']}, inter-op {st['inter_op_threads']}, "
            f"{'/'.join(st['providers'])}; loaded in {st['load_ms']:.0f} ms; export rewrites: {rewrites}\n"
            f"batch-1 latency: p50 {r['batch1_p50_ms']:.3f} ms, p95 {r['batch1_p95_ms']:.3f} ms "
            f"({r['runs']} runs after {r['warmup']} warm-up)\n"
            f"batch-{b} throughput: {r['throughput_per_s']:.1f} windows/s "
            f"(median {r[f'batch{b}_median_ms']:.2f} ms per batch over {r['batch_runs']} runs)")
