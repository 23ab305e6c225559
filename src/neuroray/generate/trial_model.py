"""The trained module and shard set of one trial of a finished run, for `neuroray generate`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from neuroray.datasets.locations import is_uri
from neuroray.datasets.shards import ShardSet, open_shard_set
from neuroray.errors import NeurorayError
from neuroray.export.to_onnx import checkpoint_of, select_trial
from neuroray.reports.folder import best_trial, load_run
from neuroray.reports.source import RunInfo
from neuroray.run_folder.checkpoints import CKPT_META, load_checkpoint

__all__ = ["TrialModel", "load_trial"]


@dataclass
class TrialModel:
    """A trial's run info, results row, module (eval mode) and shard set."""

    info: RunInfo
    row: pd.Series
    module: Any
    shards: ShardSet

    @property
    def trial_id(self) -> str:
        """The trial's id in results.csv."""
        return str(self.row["trial_id"])


def _trainable(checkpoint: object) -> str | None:
    meta = Path(str(checkpoint)) / CKPT_META
    if not isinstance(checkpoint, str) or is_uri(checkpoint) or not meta.is_file():
        return None
    return str(json.loads(meta.read_text()).get("trainable"))


def load_trial(run_dir: Path, trial: str, trainable: str, what: str) -> TrialModel:
    """``trial`` of ``run_dir`` (``best``: the best ``trainable`` trial by the run's metric, since a run may
    compare it with other trainables); one error line when it is of another trainable (``what`` needs it)
    or its shard set is gone."""
    pick = None
    if trial == "best":  # one read of the run folder; select_trial below only when no such trial is found
        info, trials = load_run(run_dir)
        same = trials[[_trainable(c) == trainable for c in trials["checkpoint"]]]
        pick = best_trial(same, info.metric, info.mode) if not same.empty else None
    info, row = (info, pick) if pick is not None else select_trial(run_dir, trial)
    module = load_checkpoint(checkpoint_of(row, run_dir))
    if module.name != trainable:
        raise NeurorayError(f"generate: trial {row['trial_id']} is a {module.name} model; {what} needs a "
                            f"{trainable} trial (--trial ID)")
    if not info.shards or not (is_uri(info.shards) or Path(info.shards).is_dir()):
        raise NeurorayError(f"{run_dir}/run.json: its shard set {info.shards!r} is not there; {what} reads it")
    return TrialModel(info, row, module, open_shard_set(info.shards))
