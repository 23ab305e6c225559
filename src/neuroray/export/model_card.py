"""``model_card.json``: what an exported model takes, what it returns, where it came from, how good it is."""

from __future__ import annotations

import importlib.metadata
import platform
import time
from pathlib import Path
from typing import Any

from neuroray import __version__
from neuroray.datasets.shards import ShardSet, sha256_file
from neuroray.trainables.base import Task

CARD_FORMAT = "neuroray-model-card/1"

#: what the single output of each trainable's graph means
def library_versions() -> dict[str, str]:
    """Versions of neuroray, Python and the ML libraries installed (torch, onnx, onnxruntime, …)."""
    versions = {"neuroray": __version__, "python": platform.python_version()}
    for dist in ("torch", "onnx", "onnxruntime", "onnxscript", "braindecode", "lightning"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _target_stats(manifest: Any, targets: list[str]) -> Any:
    """The manifest's train stats of the target (a dict per column when there are several; None without)."""
    stats = manifest.get("target_stats") or {}
    if len(targets) > 1:
        return {t: stats.get(t) for t in targets}
    return stats.get(targets[0]) if targets else None


def build_card(module: Task, shard_set: ShardSet, files: dict[str, Path], precision: str,
               parity: dict[str, Any], validation: dict[str, Any], quantization: dict[str, Any] | None,
               source: dict[str, Any] | None, trial_metrics: dict[str, Any] | None,
               output_shape: list[Any]) -> dict[str, Any]:
    """The card for ``files`` (name → path, the first being the model to use) exported from ``module``."""
    spec = module.spec.to_dict()
    manifest = shard_set.manifest
    target = module.target
    return {
        "format": CARD_FORMAT,
        "model": {
            "file": next(iter(files)), "precision": precision,
            "files": {name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for name, p in files.items()},
            "input": {"name": "x", "dtype": "float32", "shape": ["batch", *module.spec.sample_shape]},
            "output": {"name": "y", "dtype": "float32", "shape": output_shape,
                       "meaning": module.output},
        },
        "trainable": {"name": module.name, "target": target, "monitor": module.monitor, "mode": module.mode,
                      "hparams": {k: v for k, v in dict(module.hparams).items() if k not in ("trainable", "target")}},
        "spec": {"modality": module.spec.modality, "spec": spec},
        "channels": spec.get("ch_names", []),
        "sfreq": spec.get("sfreq"),
        "input_preprocessing": manifest.get("preprocessing", []),
        "normalization": manifest.get("normalization", {}),
        "target_stats": _target_stats(manifest, module.target_names()),
        "metrics": {"trial": trial_metrics or {}, "validation": validation},
        "parity": parity,
        "quantization": quantization,
        "source": {**(source or {}), "shards": str(shard_set.root)},
        "versions": library_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
