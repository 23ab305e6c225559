"""Trial overhead (issue 9 item 2b): one tiny fit through neuroray (both engines) vs plain Lightning.

Baseline: pyarrow → torch tensors → ``lightning.Trainer.fit`` in this process, reading included.
neuroray: the same phase as Tune trials on one embedded Ray (started once, as a session would).
- Actor engine, per trial in a study: ``(wall of N trials − wall of 1 trial) / (N − 1)``, both runs in the
  same repeat, so the run's fixed part (Tuner start, the trial actor's imports, the splits) cancels out.
- Actor engine, per trial including that fixed part: wall of N trials / N.
- TorchTrainer engine (Train V2): one trial per run, wall per run.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import row, tensor_loader

EPOCHS, BATCH = 3, 64
GOAL_ACTOR_S, GOAL_TORCHTRAINER_S = 1.0, 12.0  # issue 20 (15 s in issue 9)


def _plain_fit(shards: Path) -> float:
    import lightning as L

    from neuroray.datasets.shards import open_shard_set
    from neuroray.trainables import base

    start = time.perf_counter()
    s = open_shard_set(shards, verify="none")
    module = base.build("eeg_regressor", s.spec, {"encoder": "shallow"}, "y")
    trainer = L.Trainer(max_epochs=EPOCHS, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, tensor_loader(s, "train", BATCH, True), tensor_loader(s, "val", BATCH, False))
    return time.perf_counter() - start


def _neuroray(shards: Path, work: Path, engine: str, trials: int) -> float:
    """Wall seconds of one Tuner run of ``trials`` trials, one at a time."""
    from neuroray.datasets.shards import open_shard_set
    from neuroray.run.tune import run_experiment
    from neuroray.search_spaces.experiment import load

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
    return time.perf_counter() - start


def run(repeats: int = 3, actor_trials: int = 4) -> dict[str, Any]:
    from neuroray.datasets.synthetic import write_synthetic_eeg
    from neuroray.run import session

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shards = work / "eeg"
        # 8 ch × 256 samples, ~1,750 training rows: the size issue 9 names.
        write_synthetic_eeg(shards, n_subjects=24, windows_per_subject=105, n_chans=8, n_times=256)
        session.start()
        plain = [_plain_fit(shards) for _ in range(repeats)]
        one, many = [], []
        for _ in range(repeats):
            one.append(_neuroray(shards, work, "actor", trials=1))
            many.append(_neuroray(shards, work, "actor", trials=actor_trials))
        tt = [_neuroray(shards, work, "torchtrainer", trials=1) for _ in range(repeats)]
        session.stop()

    p = statistics.median(plain)
    marginal = [(m - o) / (actor_trials - 1) for o, m in zip(one, many, strict=True)]
    with_fixed = [m / actor_trials for m in many]
    actor_over = statistics.median(marginal) - p
    tt_over = statistics.median(tt) - p
    n = actor_trials
    return {
        "name": "trial_overhead",
        "title": "Trial overhead: one tiny fit per trial, both engines (issue 9 item 2b)",
        "what": f"one eeg_regressor fit (shallow), {EPOCHS} epochs, batch {BATCH}, 8×256 windows, ~1,750 train rows, "
                f"W&B offline (the default); one embedded Ray for all runs; trials one at a time. Baseline: plain "
                f"Lightning in-process over the same Parquet, reading included. Actor engine per trial in a study: "
                f"(wall of {n} trials − wall of 1) / {n - 1} in the same repeat, so the run's fixed start-up cancels.",
        "rows": [
            row(f"actor engine (reused trial actor): per trial in a study, (wall({n}) − wall(1)) / {n - 1}",
                marginal, "s", plain, statistics.median(marginal) / p),
            row("actor engine: overhead per trial (the row above − plain)", [actor_over], "s",
                goal=f"≤ {GOAL_ACTOR_S:g} s", met=actor_over <= GOAL_ACTOR_S),
            row(f"actor engine: per trial including the run's fixed start-up, wall({n}) / {n}", with_fixed, "s",
                plain, statistics.median(with_fixed) / p),
            row("actor engine: a run's fixed start-up + wind-down, wall(1) − one trial",
                [o - x for o, x in zip(one, marginal, strict=True)], "s"),
            row("TorchTrainer engine (Train V2): per trial (one trial per run)", tt, "s", plain,
                statistics.median(tt) / p),
            row("TorchTrainer engine: overhead per trial (the row above − plain)", [tt_over], "s",
                goal=f"≤ {GOAL_TORCHTRAINER_S:g} s", met=tt_over <= GOAL_TORCHTRAINER_S),
        ],
    }
