"""Finished-run folders for export/inference tests, written by the production writers without a Tune run.

A run folder is what `neuroray export` reads: run.json + results.parquet (``report.write_reports``) whose
rows point at checkpoints (``train.save_checkpoint``) of modules built from the registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from neuroray.datasets.shards import ShardSetWriter, open_shard_set, tensor_column_to_numpy
from neuroray.datasets.spec import EEGWindowSpec, Spec, SpectrogramSpec, VolumeSpec
from neuroray.reports.folder import write_reports
from neuroray.run_folder.checkpoints import save_checkpoint
from neuroray.trainables.base import Task

EEG = EEGWindowSpec(n_chans=8, n_times=128, sfreq=64.0, ch_names=tuple(f"E{i}" for i in range(1, 9)))
SPEC = SpectrogramSpec(n_trials=4, n_freqs=16, n_frames=16)
#: every registered trainable on a tiny spec: (spec, hparams, target); a test fails when one is missing
CASES: dict[str, tuple[Spec, dict[str, Any], str | None]] = {
    "eeg_regressor": (EEG, {"encoder": "conv"}, "y"),
    "eeg_classifier": (EEG, {"encoder": "shallow"}, "label"),
    "eeg_masked_pretrain": (EEG, {"encoder": "conv"}, None),
    "eeg_contrastive": (EEG, {"encoder": "conv"}, None),
    "vae3d": (VolumeSpec(shape=(12, 14, 12), voxel_mm=8.0), {"depth": 2, "base_channels": 8}, None),
    "temporal_vit": (SPEC, {"embed_dim": 32, "depth": 2}, "label"),
    "spectrogram_cnn": (SPEC, {"width": 8}, "label"),
    "rf_localizer": (SPEC, {}, None),
}


def write_shards(out: Path, spec: Spec, rows: dict[str, int] | None = None, seed: int = 0,
                 y_loc: float = 0.0, y_scale: float = 1.0) -> Path:
    """Random windows with every column the registered trainables read (y, label, pos_x/pos_y, ids)."""
    rows = rows or {"train": 24, "val": 12, "test": 10}
    rng = np.random.default_rng(seed)
    writer = ShardSetWriter(out, spec, rows_per_file=8)  # several files per split: streaming crosses files
    for i, (split, n) in enumerate(rows.items()):
        x = rng.standard_normal((n, *spec.sample_shape)).astype(np.float32)
        writer.write(split, x, {
            "subject": np.array([f"S{i}{k % 3}" for k in range(n)]), "window": np.arange(n, dtype=np.int32),
            "y": y_loc + y_scale * rng.standard_normal(n), "label": np.arange(n) % 2, "pos_x": rng.random(n), "pos_y": rng.random(n)})
    n_chans = spec.sample_shape[0]  # the windows are already "z-scored": identity statistics
    writer.commit(normalization={"from": "train", "per": "channel", "mean": [0.0] * n_chans, "std": [1.0] * n_chans})
    return out


def write_run(run_dir: Path, shards: Path, modules: dict[str, Task], metric: str, mode: str,
              values: dict[str, float] | None = None) -> Path:
    """run.json + results.parquet with one trial per module (``trial_id`` → module), each checkpointed."""
    spec = open_shard_set(shards).spec
    rows: list[dict[str, Any]] = []
    for i, (trial_id, module) in enumerate(modules.items()):
        value = (values or {}).get(trial_id, 1.0 - 0.1 * i)
        ckpt = run_dir / "checkpoints" / trial_id
        ckpt.mkdir(parents=True)
        save_checkpoint(ckpt, module, {"name": "fit"}, {"modality": spec.modality, "spec": spec.to_dict()},
                        {metric: value})
        rows.append({"trial_id": trial_id, "arm": "a", "seed": i, "status": "OK", "epochs": 1,
                     "checkpoint": str(ckpt), metric: value})
    write_reports(run_dir, pd.DataFrame(rows), run_dir.name, metric, mode, ["a"], shards=str(shards))
    return run_dir


def fit_regressor(module: Task, shards: Path, steps: int = 60, lr: float = 3e-3, seed: int = 0) -> Task:
    """A few full-batch AdamW steps on the train split (enough to learn a planted band-power target)."""
    torch.manual_seed(seed)
    table = open_shard_set(shards).read_split("train", ["x", "y"])
    x = torch.from_numpy(tensor_column_to_numpy(table["x"]).copy())
    y = torch.from_numpy(table["y"].to_numpy().astype(np.float32))
    module.set_target_stats(float(y.mean()), float(y.std()))
    opt = torch.optim.AdamW(module.parameters(), lr=lr)
    module.train()
    for _ in range(steps):
        opt.zero_grad()
        module.training_step({"x": x, "y": y}, 0).backward()
        opt.step()
    return module.eval()
