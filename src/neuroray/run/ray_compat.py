"""Ray internals neuroray relies on, in one place, pinned to the installed Ray (tests/test_ray_compat.py).

Each is imported directly: if a Ray upgrade moves one, importing this module fails loudly instead of a
feature silently switching off.
"""

from __future__ import annotations

from typing import Any

import pyarrow.fs as pafs
from ray.train import Checkpoint
from ray.train._internal.session import _TrainingResult
from ray.tune.execution.experiment_state import _find_newest_experiment_checkpoint
from ray.tune.trainable.metadata import _TrainingRunMetadata

RAY_VERSION = "2.60.0"  # the version these symbols were checked against


def newest_experiment_state(experiment_path: str, fs: pafs.FileSystem) -> str | None:
    """The path of Tune's newest ``experiment_state-*.json`` (what ``Tuner.restore`` reads), or None."""
    return _find_newest_experiment_checkpoint(experiment_path, fs=fs)


def load_run_metadata(text: str) -> _TrainingRunMetadata:
    """A trial's runtime metadata (results, checkpoint manager) as Tune stores it in its snapshot."""
    return _TrainingRunMetadata.from_json_state(text)


def training_result(path: str, filesystem: pafs.FileSystem | None, metrics: dict[str, Any]) -> _TrainingResult:
    """A (checkpoint, metrics) pair as Tune's checkpoint manager tracks it."""
    return _TrainingResult(checkpoint=Checkpoint(path=path, filesystem=filesystem), metrics=metrics)
