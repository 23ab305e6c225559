"""A last good copy of Tune's experiment state, for `--resume` after a full disk cut the state short.

Tune rewrites ``experiment_state-*.json`` in place; when the storage fills up mid-write the file is left
truncated and the run cannot be resumed. Each time Tune saves its state (it asks every callback for its
own), the copy in storage is checked and, when it parses, published atomically as ``BACKUP``; a failed
publish (no space) keeps the older backup whole.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
from ray import tune

from neuroray.run import ray_compat
from neuroray.run_folder import storage as storage_mod

BACKUP = ".neuroray-state-backup.json"


def _read(fs: pafs.FileSystem, path: str) -> tuple[bytes, Any] | None:
    """The file's bytes and parsed JSON, or None when it is missing or cut short."""
    try:
        with fs.open_input_stream(path) as f:
            data = f.read()
        return data, json.loads(data)
    except (OSError, ValueError):
        return None


class StateBackup(tune.Callback):
    """Keeps ``BACKUP`` beside the experiment state in ``experiment`` (a run folder or its storage URI)."""

    def __init__(self, experiment: str) -> None:
        self.experiment = experiment

    def get_state(self) -> dict[str, Any] | None:
        """Tune's callback-state hook: nothing to save (the backup is the file)."""
        try:
            fs, root = storage_mod.fs_and_path(self.experiment)
            newest = ray_compat.newest_experiment_state(root, fs)
            found = _read(fs, newest) if newest else None
            if found is not None and isinstance(found[1], dict) and "trial_data" in found[1]:
                storage_mod.publish(fs, f"{root}/{BACKUP}", json.dumps({"name": Path(newest or "").name,
                                                             "state": found[1]}).encode())
        except OSError:  # no space: the older backup stays whole, which is the point
            pass
        return None


def restore_if_cut(experiment: str) -> bool:
    """Before ``Tuner.restore``: a newest state that does not parse is replaced by the backup; True if it was.
    Raises ``OSError`` only from the filesystem; returns False when there is nothing to restore from."""
    fs, root = storage_mod.fs_and_path(experiment)
    newest = ray_compat.newest_experiment_state(root, fs)
    if newest is None or _read(fs, newest) is not None:
        return False
    backup = _read(fs, f"{root}/{BACKUP}")
    if backup is None or not isinstance(backup[1], dict) or "state" not in backup[1]:
        return False
    storage_mod.publish(fs, newest, json.dumps(backup[1]["state"]).encode())
    return True


def is_cut(experiment: str) -> bool:
    """Whether the newest experiment state exists but does not parse."""
    fs, root = storage_mod.fs_and_path(experiment)
    newest = ray_compat.newest_experiment_state(root, fs)
    return newest is not None and _read(fs, newest) is None
