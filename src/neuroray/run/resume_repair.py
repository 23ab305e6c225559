"""Before `--resume`: point every unfinished trial of Tune's newest snapshot at a checkpoint that exists.

Tune keeps ``num_to_keep`` checkpoints plus the latest, and deletes the one it no longer needs when the next
one registers; its experiment snapshot is written afterwards. A run SIGKILLed between the two leaves a
snapshot whose "latest checkpoint" is gone, and Tune then fails that trial for good ("Could not recover
from checkpoint as it does not exist on storage anymore"). Here such a trial is pointed at the newest
complete checkpoint in its folder (or, when none is left, restarted from its first epoch), so nothing a
restore needs is lost.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from neuroray.run import ray_compat
from neuroray.run_folder import storage as storage_mod
from neuroray.run_folder.checkpoints import CKPT_LIGHTNING, CKPT_META, CKPT_WEIGHTS

_COMPLETE = {CKPT_META, CKPT_WEIGHTS, CKPT_LIGHTNING}  # what every final-phase checkpoint holds


def _exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def _newest_complete(fs: pafs.FileSystem, trial_dir: str) -> tuple[str, dict[str, Any]] | None:
    """The newest ``checkpoint_*`` folder holding every file, with the metrics its meta.json recorded."""
    try:
        entries = fs.get_file_info(pafs.FileSelector(trial_dir))
    except (OSError, FileNotFoundError):
        return None
    folders = sorted((e.path for e in entries if e.type == pafs.FileType.Directory
                      and e.base_name.startswith("checkpoint_")), reverse=True)
    for folder in folders:
        names = {i.base_name for i in fs.get_file_info(pafs.FileSelector(folder))}
        if not names >= _COMPLETE:
            continue  # cut short while being copied into storage
        try:
            with fs.open_input_stream(f"{folder}/{CKPT_META}") as f:
                metrics = dict(json.loads(f.read()).get("metrics") or {})
        except (OSError, ValueError):
            continue
        # only the final phase reports to Tune, so its epoch is Tune's training_iteration
        metrics.setdefault("training_iteration", int(metrics.get("phase_epoch", 0)))
        return folder, metrics
    return None


def repair_snapshot(experiment: str) -> list[str]:
    """Fix the newest ``experiment_state-*.json`` under ``experiment`` in place; returns the ids of the
    trials it holds as unfinished (what this resume must recover)."""
    fs, root = storage_mod.fs_and_path(experiment)
    newest = ray_compat.newest_experiment_state(root, fs)
    if newest is None:
        return []
    with fs.open_input_stream(newest) as f:
        state = json.loads(f.read())
    unfinished: list[str] = []
    changed = False
    for entry in state.get("trial_data", []):
        trial = json.loads(entry[0])
        if trial.get("status") == "TERMINATED":
            continue
        unfinished.append(str(trial.get("trial_id")))
        meta = ray_compat.load_run_metadata(entry[1])
        manager = meta.checkpoint_manager
        latest = manager.latest_checkpoint_result if manager is not None else None
        if manager is None or latest is None or latest.checkpoint is None:
            continue
        checkpoint = latest.checkpoint
        if _exists(fs, checkpoint.path):
            continue
        kept = [r for r in manager._checkpoint_results
                if r.checkpoint is not None and _exists(fs, r.checkpoint.path)]
        recorded_dir = str(Path(checkpoint.path).parent)
        found = _newest_complete(fs, f"{root}/{Path(recorded_dir).name}")
        if found is None:
            replacement = None  # nothing left to continue from: the trial starts again at its first epoch
        else:
            # the recorded prefix stays: Tune re-bases every tracked path on the storage it restores from
            path = f"{recorded_dir}/{Path(found[0]).name}"
            replacement = ray_compat.training_result(path, checkpoint.filesystem, found[1])
        manager._checkpoint_results = kept
        manager._latest_checkpoint_result = replacement
        meta.invalidate_cache()
        entry[1] = meta.get_json_state()
        changed = True
    if changed:
        storage_mod.publish(fs, newest, json.dumps(state).encode())
    return unfinished
