"""Pruning within a cell (verdicts issue, item 1) on real Ray Tune: arm b learns slowly but ends better than
arm a (planted curves). Ray's ASHA over all trials stops b at its first rung; routed per cell, b's trials are
compared only with each other, one reaches the last epoch, and b wins."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest
from ray import tune
from ray.tune.schedulers import ASHAScheduler

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
