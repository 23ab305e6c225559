"""Pruning within a cell: a Tune scheduler that gives every (arm, seed) cell — or every arm — its own ASHA or
median-stopping instance (Ray's own schedulers), so a trial is only ever compared with trials of its cell.

ASHA and the median rule rank every running trial against every other. Across arms that measures the
pruner, not the arm: an arm that learns slowly but ends better is stopped at its first rung and can never
win. With ``scheduler.scope: cell`` (the default) the comparison is between the search trials of one cell;
``scope: arm`` pools an arm's seeds; ``scope: global`` is Ray's plain scheduler (and the report says so).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

__all__ = ["SCOPES", "CellScheduler", "cell_key"]

SCOPES = ("cell", "arm", "global")


def cell_key(config: dict[str, Any], scope: str) -> tuple[Any, ...]:
    """Which pruning group a trial's ``config`` belongs to under ``scope``."""
    if scope == "arm":
        return (config.get("arm"),)
    if scope == "cell":
        return (config.get("arm"), config.get("seed"), config.get("fold"))
    return ()


class CellScheduler(FIFOScheduler):
    """Routes each trial's events to the scheduler of its group (made on first use by ``make``); trials are
    started in FIFO order, as each of Ray's schedulers here would start them."""

    def __init__(self, make: Callable[[], TrialScheduler], scope: str) -> None:
        super().__init__()
        self._make, self._scope = make, scope
        self._groups: dict[tuple[Any, ...], TrialScheduler] = {}
        self._group_of: dict[str, tuple[Any, ...]] = {}
        self._props: tuple[str | None, str | None] = (None, None)

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Keep the metric and mode Tune sets; every group's scheduler gets them."""
        self._props = (metric, mode)
        for inner in self._groups.values():
            inner.set_search_properties(metric, mode, **spec)
        return True

    def _inner(self, trial: Trial) -> TrialScheduler:
        key = self._group_of.get(trial.trial_id)
        if key is None:
            key = self._group_of[trial.trial_id] = cell_key(trial.config or {}, self._scope)
        if key not in self._groups:
            inner = self._make()
            inner.set_search_properties(*self._props)
            self._groups[key] = inner
        return self._groups[key]

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        """Hand a new trial to its group's scheduler (made now if it is the group's first)."""
        self._inner(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self._inner(trial).on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        return str(self._inner(trial).on_trial_result(tune_controller, trial, result))

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        self._inner(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        """Tell the trial's group it is gone."""
        self._inner(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        """One line per group: its key and its scheduler's own summary."""
        lines = [f"Pruning within each {self._scope} ({len(self._groups)} groups)"]
        lines += [f"  {key}: {inner.debug_string().splitlines()[0]}" for key, inner in self._groups.items()]
        return "\n".join(lines)
