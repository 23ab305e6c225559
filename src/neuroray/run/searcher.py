"""Matrix × search: one Optuna study per matrix cell, behind a single Tune searcher.

Ray's OptunaSearch cannot take grid parameters, so the grid (named arms × seeds) lives here and
each cell gets its own OptunaSearch over the experiment's space. Cells are visited round-robin so
arms run side by side and a scheduler compares them fairly.
"""

from __future__ import annotations

import pickle
from typing import Any

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from neuroray.search_spaces.distributions import DefineByRun, Param
from neuroray.search_spaces.experiment import Cell

OPTUNA_JOURNAL = "optuna.journal"  # in the run folder: every cell's study, for optuna.load_study / optuna-dashboard


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler ``name`` (tpe, random, cmaes) seeded with ``seed``."""
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def study_name(cell: Cell) -> str:
    """A cell's Optuna study name in the run's journal: ``<arm>-s<seed>[-f<fold>]``."""
    return f"{cell.arm}-s{cell.seed}" + (f"-f{cell.fold}" if cell.fold is not None else "")


class MatrixSearcher(Searcher):
    """Tune searcher over the matrix: every (arm, seed) cell gets ``num_samples`` trials from its own Optuna study."""

    def __init__(self, cells: list[Cell], space: dict[str, Param], num_samples: int,
                 metric: str, mode: str, sampler: str = "tpe", seed: int = 0,
                 objectives: list[tuple[str, str]] | None = None, max_t: int | None = None,
                 journal: str | None = None) -> None:
        super().__init__(metric=metric, mode=mode)
        self.max_t = max_t  # the final phase's epochs: a trial that ended before them was stopped by the scheduler
        self.journal = journal  # one Optuna JournalStorage file for every cell's study (None: in memory only)
        self.cells, self.space, self.num_samples = cells, space, num_samples
        self.sampler, self.seed = sampler, seed
        # several (metric, mode) pairs → each cell's Optuna study is multi-objective
        self.objectives = objectives if objectives and len(objectives) > 1 else None
        self.remaining = [num_samples] * len(cells)
        self.trial_cell: dict[str, int] = {}
        self.subs: list[OptunaSearch | None] = []
        self._next = 0
        # Tune only calls set_search_properties when param_space is non-empty; ours is empty (the
        # searcher owns the whole config), so the per-cell studies are built here.
        self.set_search_properties(metric, mode, {})

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict[str, Any],
                              **spec: Any) -> bool:
        """Take the metric and mode Tune sets; True (accepted)."""
        self._metric, self._mode = metric, mode
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        metrics: str | list[str] | None = metric
        modes: str | list[str] | None = mode
        if self.objectives:
            metrics, modes = [m for m, _ in self.objectives], [m for _, m in self.objectives]
        storage = None
        if self.journal and self.space:
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            storage = JournalStorage(JournalFileBackend(self.journal))
        # define-by-run, so a parameter can depend on another's value (conditional spaces)
        self.subs = [
            OptunaSearch(space=DefineByRun(self.space), metric=metrics, mode=modes,
                         sampler=make_sampler(self.sampler, self.seed + i),
                         storage=storage, study_name=study_name(cell) if storage is not None else None)
            if self.space else None
            for i, cell in enumerate(self.cells)
        ]
        return True

    @property
    def total(self) -> int:
        """Trials this searcher will suggest in all: ``num_samples`` per cell."""
        return self.num_samples * len(self.cells)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        if not any(self.remaining):
            return Searcher.FINISHED
        for _ in range(len(self.cells)):
            i, self._next = self._next, (self._next + 1) % len(self.cells)
            if self.remaining[i] <= 0:
                continue
            sub = self.subs[i] if self.subs else None
            params = sub.suggest(trial_id) if sub is not None else {}
            if params is None:
                continue
            self.remaining[i] -= 1
            self.trial_cell[trial_id] = i
            cell = self.cells[i]
            fold = {} if cell.fold is None else {"fold": cell.fold}
            return {"arm": cell.arm, "seed": cell.seed, **fold, "params": dict(params)}
        return None

    def _sub(self, trial_id: str) -> OptunaSearch | None:
        i = self.trial_cell.get(trial_id)
        return self.subs[i] if i is not None and self.subs else None

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if (sub := self._sub(trial_id)) is not None:
            sub.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        """Tell the trial's Optuna study how it ended: COMPLETE with its last value, FAIL, or PRUNED when the
        scheduler stopped it before the last epoch (its reported epochs stay as intermediate values)."""
        if (sub := self._sub(trial_id)) is None:
            return
        stopped = (not error and result is not None and self.max_t is not None
                   and int(result.get("training_iteration", self.max_t)) < self.max_t)
        sub.on_trial_complete(trial_id, result=None if stopped else result, error=error)  # no value → PRUNED

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
