"""Ray internals neuroray relies on, in one place, pinned to the installed Ray (tests/run/test_ray_compat.py).

Each symbol is imported on first use, so this module itself is light (the autoscaler's monitor process
imports it). Nothing here falls back: if a Ray upgrade moves a symbol, the import fails loudly (the pin test names it)
instead of a feature silently switching off. ``PRIVATE`` lists every one, for that test.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow.fs as pafs

__all__ = ["RAY_VERSION", "PRIVATE", "private", "newest_experiment_state", "load_run_metadata", "training_result",
           "create_data_helper_actors"]

RAY_VERSION = "2.60.0"  # the version these symbols were checked against

#: every private Ray symbol neuroray uses, as "module:attribute"
PRIVATE: dict[str, str] = {
    "newest_experiment_checkpoint": "ray.tune.execution.experiment_state:_find_newest_experiment_checkpoint",
    "training_run_metadata": "ray.tune.trainable.metadata:_TrainingRunMetadata",
    "training_result": "ray.train._internal.session:_TrainingResult",
    "wandb_clean_log": "ray.air.integrations.wandb:_clean_log",
    "wandb_is_allowed_type": "ray.air.integrations.wandb:_is_allowed_type",
    "force_on_current_node": "ray.air.util.node:_force_on_current_node",
    "data_stats_actor": "ray.data._internal.stats:get_or_create_stats_actor",
    "data_autoscaling_coordinator":
        "ray.data._internal.cluster_autoscaler.default_autoscaling_coordinator:get_or_create_autoscaling_coordinator",
    "utilization_scorer": "ray.autoscaler._private.resource_demand_scheduler:_resource_based_utilization_scorer",
}


def private(name: str) -> Callable[..., Any]:
    """The private Ray symbol ``PRIVATE[name]``, imported on first use (the autoscaler and W&B parts are
    imported only where they run); an ImportError/AttributeError here means Ray moved it."""
    module, attr = PRIVATE[name].split(":")
    symbol: Callable[..., Any] = getattr(importlib.import_module(module), attr)
    return symbol


def newest_experiment_state(experiment_path: str, fs: pafs.FileSystem) -> str | None:
    """The path of Tune's newest ``experiment_state-*.json`` (what ``Tuner.restore`` reads), or None."""
    path: str | None = private("newest_experiment_checkpoint")(experiment_path, fs=fs)
    return path


def load_run_metadata(text: str) -> Any:
    """A trial's runtime metadata (results, checkpoint manager) as Tune stores it in its snapshot."""
    return private("training_run_metadata").from_json_state(text)  # type: ignore[attr-defined]


def training_result(path: str, filesystem: pafs.FileSystem | None, metrics: dict[str, Any]) -> Any:
    """A (checkpoint, metrics) pair as Tune's checkpoint manager tracks it."""
    from ray.train import Checkpoint

    return private("training_result")(checkpoint=Checkpoint(path=path, filesystem=filesystem), metrics=metrics)


def create_data_helper_actors() -> None:
    """Create Ray Data's cluster-wide stats actor and autoscaling coordinator from the calling process."""
    private("data_stats_actor")()
    private("data_autoscaling_coordinator")()
