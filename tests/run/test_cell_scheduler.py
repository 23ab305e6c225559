"""Pruning within a cell (verdicts issue, item 1) on real Ray Tune: arm b learns slowly but ends better than
arm a (planted curves). Ray's ASHA over all trials stops b at its first rung; routed per cell, b's trials are
compared only with each other, one reaches the last epoch, and b wins."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from neuroray.cli import main
from neuroray.run.cell_scheduler import CellScheduler, cell_key

MAX_T = 6


def _run(tmp_path: Path, scheduler: Any) -> dict[str, list[int]]:
    def curve(config: dict[str, Any]) -> None:  # nested: shipped to the trial actor by value
        """a: fast start, plateau (1.0 → 0.52); b: slow start, better end (2.0 → 0.2); tiny per-trial offsets."""
        for t in range(1, MAX_T + 1):
            base = 1.0 - 0.08 * t if config["arm"] == "a" else 2.0 - 0.3 * t
            tune.report({"loss": base + 0.01 * config["i"]})

    tuner = tune.Tuner(
        curve,
        param_space={"arm": tune.grid_search(["a", "b"]), "seed": 0, "i": tune.grid_search([0, 1])},
        tune_config=tune.TuneConfig(metric="loss", mode="min", scheduler=scheduler, max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="curves", verbose=0),
    )
    grid = tuner.fit()
    epochs: dict[str, list[int]] = {"a": [], "b": []}
    for i in range(len(grid)):
        result = grid[i]
        epochs[result.config["arm"]].append(int(result.metrics["training_iteration"]))
    return epochs


def _asha() -> partial[ASHAScheduler]:
    return partial(ASHAScheduler, time_attr="training_iteration", max_t=MAX_T, grace_period=1, reduction_factor=2)


def test_cell_keys() -> None:
    config = {"arm": "b", "seed": 3, "params": {"lr": 0.1}}
    assert cell_key(config, "cell") == ("b", 3, None) and cell_key(config, "arm") == ("b",)
    assert cell_key(config, "global") == ()


@pytest.mark.usefixtures("ray_session")
def test_pruning_within_a_cell_lets_the_slow_arm_finish(tmp_path: Path) -> None:
    across = _run(tmp_path / "global", _asha()())
    within = _run(tmp_path / "cell", CellScheduler(_asha(), "cell"))
    # Across arms, at most the very first trial escapes a rung unopposed: b's are stopped early.
    assert sum(e < MAX_T for e in across["b"]) >= 1 and max(across["a"]) == MAX_T, across
    # Within cells, b's first trial runs to the end (0.2 beats a's 0.52 plateau).
    assert max(within["b"]) == MAX_T and max(within["a"]) == MAX_T, within


@pytest.fixture(scope="module")
def slow_learner_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 planted alpha-power subjects (8 ch × 100 samples): the set the arms below were measured on."""
    from neuroray.datasets.synthetic import write_synthetic_eeg

    out = tmp_path_factory.mktemp("slow") / "eeg"
    write_synthetic_eeg(out, n_subjects=12, windows_per_subject=40, n_chans=8, n_times=100, sfreq=100)
    return out


def _slow_learner_run(shards: Path, tmp_path: Path, scope: str) -> tuple[pd.DataFrame, str]:
    """Arm fast: the conv encoder (val NRMSE ~0.7 after one epoch, plateau ~0.24); arm slow: the band-power
    encoder held frozen for 4 of 10 epochs (~1.1 for four epochs, then ~0.20): slower, and better at the end."""
    raw = {
        "name": f"slow-{scope}", "data": {"shards": str(shards)},
        "phases": [{"name": "fit", "trainable": "eeg_regressor", "target": "y", "epochs": 10, "batch_size": 32,
                    "hparams": {"lr": 0.01}}],
        "matrix": {"arm": {"fast": {"phases.fit.hparams.encoder": "conv", "phases.fit.hparams.lr": 0.005},
                           "slow": {"phases.fit.hparams.encoder": "shallow", "phases.fit.hparams.freeze_epochs": 4}},
                   "seed": [0, 1]},
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2, "scope": scope},
        "resources": {"max_concurrent_trials": 2},
    }
    path = tmp_path / f"{scope}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["run", str(path), "--storage", str(tmp_path / "runs"), "--quiet"]) == 0
    run = tmp_path / "runs" / f"slow-{scope}"
    return pd.read_csv(run / "results.csv"), (run / "report.md").read_text()


@pytest.mark.slow  # two 4-trial runs, ~1 min; test_pruning_within_a_cell_lets_the_slow_arm_finish stays in the default run
@pytest.mark.usefixtures("ray_session")
def test_the_slow_arm_wins_on_test_within_cells_and_is_cut_across_arms(slow_learner_shards: Path,
                                                                       tmp_path: Path) -> None:
    cell, cell_md = _slow_learner_run(slow_learner_shards, tmp_path, "cell")
    assert (cell["epochs"] == 10).all()  # one trial per cell: nothing to compare it with, nothing stopped
    means = cell.groupby("arm")["test/nrmse"].mean()
    assert means["slow"] < means["fast"], means  # held-out subjects: the slow learner is the better model
    assert "Pruned across arms" not in cell_md and "Stopped early" not in cell_md
    across, across_md = _slow_learner_run(slow_learner_shards, tmp_path, "global")
    assert (across.loc[across["arm"] == "slow", "epochs"] < 10).all(), across[["arm", "seed", "epochs"]]
    assert "**Pruned across arms**" in across_md and "slow: 2 of 2 chosen trials ended before epoch 10" in across_md
    worse = across.groupby("arm")["test/nrmse"].mean()
    assert worse["slow"] > worse["fast"], worse  # the verdict flips: it measured the pruner
