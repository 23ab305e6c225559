"""Shrink an fp32 ONNX export: INT8 (dynamic, or static calibrated on training windows) and FP16.

All three use onnxruntime's own tools (``onnxruntime.quantization`` and the float16 converter that ships in
``onnxruntime.transformers``), so no extra dependency is needed. Measured here (torch 2.13 dynamo export,
onnxruntime 1.31): ``quantize_dynamic`` on the raw export fails in ONNX shape inference — the exporter's
``value_info`` disagrees with the graph once ``quant_pre_process`` has fused Conv+BatchNorm, and the
symbolic shape pass of ``quant_pre_process`` itself crashes on the dynamo graph. Pre-processing without the
symbolic pass and then dropping the stale ``value_info`` makes every registered trainable quantize.
Measure, don't assume: on CPU, dynamic INT8 convolutions (ConvInteger) can be several times slower than
fp32, while static QDQ INT8 is usually faster.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from onnxruntime.transformers.float16 import convert_float_to_float16

from neuroray.errors import NeurorayError

Precision = Literal["fp32", "int8", "int8-static", "fp16"]
#: ``--quantize`` choices → the precision written into the model card
MODES: dict[str, Precision] = {"none": "fp32", "int8": "int8", "int8-static": "int8-static", "fp16": "fp16"}


def _preprocessed(src: Path, work: Path) -> Path:
    """``quant_pre_process`` (graph optimization + ONNX shape inference) with stale shapes dropped."""
    out = work / "preprocessed.onnx"
    quant_pre_process(str(src), str(out), skip_symbolic_shape=True)
    model = onnx.load(str(out))
    del model.graph.value_info[:]  # re-inferred by the quantizer; the kept ones contradict fused nodes
    onnx.save(model, str(out))
    return out


def int8_dynamic(src: Path, dst: Path) -> dict[str, Any]:
    """Weights INT8 ahead of time, activations quantized on the fly per batch (no calibration data)."""
    with tempfile.TemporaryDirectory(prefix="neuroray-quant-") as tmp:
        quantize_dynamic(str(_preprocessed(src, Path(tmp))), str(dst), weight_type=QuantType.QInt8)
    return {"per_channel": False}


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime.quantization warns through the root logger once per node; keep errors only meanwhile."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


class _Windows(CalibrationDataReader):
    """Calibration windows, ``batch`` at a time."""

    def __init__(self, input_name: str, x: np.ndarray, batch: int) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = (
            {input_name: np.ascontiguousarray(x[i:i + batch], dtype=np.float32)} for i in range(0, len(x), batch))

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next calibration batch as ``{input_name: array}``; None when exhausted."""
        return next(self._batches, None)


#: the ops that carry the compute of every registered model; quantizing only these avoids ops whose weights
#: onnxruntime cannot quantize (a tensor shared by several InstanceNormalization nodes in ``vae3d``'s graph)
CORE_OPS = ["Conv", "ConvTranspose", "MatMul", "Gemm"]


def int8_static(src: Path, dst: Path, calibration: np.ndarray, batch: int = 32) -> dict[str, Any]:
    """QDQ INT8 for weights (per output channel) and activations (MinMax ranges from ``calibration``).

    Every op type onnxruntime supports is quantized; if it refuses the graph (measured: ``vae3d``,
    "Quantization parameter shared mode is not supported for weight"), only :data:`CORE_OPS` are.
    """
    if len(calibration) == 0:
        raise NeurorayError("int8-static needs calibration windows; the training split is empty")
    input_name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="neuroray-quant-") as tmp, _quiet_root_logger():
        pre = _preprocessed(src, Path(tmp))
        for ops in (None, CORE_OPS):
            try:
                quantize_static(str(pre), str(dst), _Windows(input_name, calibration, batch),
                                quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                                weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=ops)
                return {"per_channel": True, "op_types": ops or "all supported",
                        "calibration_windows": len(calibration)}
            except ValueError as e:
                error = e
    raise NeurorayError(f"onnxruntime cannot quantize this graph statically ({error}); try --quantize int8 or fp16")


def fp16(src: Path, dst: Path) -> dict[str, Any]:
    """Weights and compute in float16; the graph's input and output stay float32 (callers need no cast).

    The converter emits the same Cast node twice when one fp32-only input (a Resize's scales) feeds two
    blocked nodes, which onnxruntime rejects ("two nodes with same node name"); exact duplicates are dropped.
    """
    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    seen: set[bytes] = set()
    nodes = []
    for node in model.graph.node:
        key = node.SerializeToString()
        if key not in seen:
            seen.add(key)
            nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(dst))
    return {"keep_io_types": True}


def convert(precision: Precision, src: Path, dst: Path, calibration: np.ndarray | None = None) -> dict[str, Any]:
    """``src`` (fp32) → ``dst`` at ``precision``; returns what was done (for the model card)."""
    if precision == "int8":
        return int8_dynamic(src, dst)
    if precision == "int8-static":
        return int8_static(src, dst, calibration if calibration is not None else np.zeros((0,)))
    if precision == "fp16":
        return fp16(src, dst)
    raise NeurorayError(f"unknown precision {precision!r}; allowed: {', '.join(MODES)}")
