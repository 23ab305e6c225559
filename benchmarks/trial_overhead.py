"""Trial overhead: one tiny fit through neuroray (both engines) vs plain Lightning on the same Parquet.

Baseline: pyarrow → torch tensors → lightning.Trainer.fit in this process, reading included.
neuroray: the same phase as Tune trials on an embedded Ray, per trial = Tuner wall time / trials.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml

from neuroray.datasets.shards import open_shard_set, tensor_column_to_numpy
from neuroray.datasets.synthetic import write_synthetic_eeg
from neuroray.platform import session
from neuroray.platform.tune import run_experiment
from neuroray.search_spaces.experiment import load
from neuroray.trainables import base

EPOCHS, BATCH = 3, 64


def _plain_fit(shards: Path) -> float:
    start = time.perf_counter()
    s = open_shard_set(shards, verify="none")

    def loader(split: str, shuffle: bool) -> torch.utils.data.DataLoader:
        t = s.read_split(split, ["x", "y"])
        x, y = torch.from_numpy(tensor_column_to_numpy(t["x"])), torch.from_numpy(t["y"].to_numpy())
        rows = [{"x": a, "y": b} for a, b in zip(x, y, strict=True)]
        return torch.utils.data.DataLoader(rows, batch_size=BATCH, shuffle=shuffle)  # type: ignore[arg-type]

    module = base.build("eeg_regressor", s.spec, {"encoder": "shallow"}, "y")
    trainer = L.Trainer(max_epochs=EPOCHS, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, loader("train", True), loader("val", False))
    return time.perf_counter() - start


def _neuroray(shards: Path, work: Path, engine: str, trials: int) -> float:
    exp = {"name": f"bench-{engine}-{time.time_ns()}", "data": {"shards": str(shards), "verify": "none"},
           "phases": [{"name": "fit", "trainable": "eeg_regressor", "target": "y", "epochs": EPOCHS,
                       "batch_size": BATCH}],
           "search": {"sampler": "random", "num_samples": trials, "space": {"lr": "loguniform(1e-3, 1e-2)"}},
           "resources": {"workers": 1, "engine": engine, "max_concurrent_trials": 1}}
    path = work / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    loaded = load(path)
    shard_set = open_shard_set(shards, verify="none")
    start = time.perf_counter()
    run_experiment(loaded, shard_set, work / "runs", verbose=0)
    return (time.perf_counter() - start) / trials


def run(repeats: int = 3, actor_trials: int = 6) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shards = work / "eeg"
        # 8 ch × 256 samples, ~1,750 training rows: the size issue 9 names.
        write_synthetic_eeg(shards, n_subjects=24, windows_per_subject=105, n_chans=8, n_times=256)
        session.start()
        plain = [_plain_fit(shards) for _ in range(repeats)]
        actor = [_neuroray(shards, work, "actor", trials=actor_trials) for _ in range(repeats)]
        tt = [_neuroray(shards, work, "torchtrainer", trials=1) for _ in range(repeats)]
        session.stop()

    def summary(xs: list[float]) -> dict[str, float]:
        return {"median_s": statistics.median(xs), "min_s": min(xs), "max_s": max(xs)}

    p = statistics.median(plain)
    return {
        "name": "trial_overhead",
        "what": f"one eeg_regressor fit, {EPOCHS} epochs, batch {BATCH}, 8x256 windows, ~1,750 train rows; "
                f"actor engine: {actor_trials} trials per repeat (per trial = wall / trials), W&B offline (default)",
        "plain_lightning": summary(plain),
        "neuroray_actor_per_trial": summary(actor),
        "neuroray_torchtrainer_per_trial": summary(tt),
        "actor_overhead_s": statistics.median(actor) - p,
        "torchtrainer_overhead_s": statistics.median(tt) - p,
        "actor_ratio": statistics.median(actor) / p,
        "torchtrainer_ratio": statistics.median(tt) / p,
        "goals": {"actor_overhead_s": 1.0, "torchtrainer_overhead_s": 15.0},
    }
