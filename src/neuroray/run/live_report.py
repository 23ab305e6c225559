"""The live report: report.md/.csv/.html rebuilt in the run folder as trials finish, while the run goes on.

A Tune callback in the driver (the process that runs `neuroray run`). It keeps each trial's reported epochs
(Tune hands every result to its callbacks) and, when a trial ends, rebuilds the report from the trials that
have ended, at most once every ``every`` seconds counted from the start: a burst of trials ending costs one
rebuild, and one that ends inside the window is picked up by the first controller step after it. Trials
only ever wait for a rebuild through the results Tune holds for them meanwhile; a rebuild that fails is one
warning line and the run goes on. The epochs are part of the callback state Tune saves, so after `--resume`
the trials that ended before the interruption are listed again. The live page reloads itself; the final
report (written by runner.py once the test split is scored) has no reload, so a browser left open stops on
it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
from ray import tune

from neuroray.reports import build as report_build
from neuroray.reports.folder import HISTORY_KEYS, METRIC_PREFIXES
from neuroray.reports.source import RunInfo, Source
from neuroray.run.results import as_table, history_frame, trial_row
from neuroray.run.train import TRAIN_ROWS
from neuroray.run_folder.full_disk import is_no_space

__all__ = ["LiveReport"]

_KEPT = ("training_iteration", "phase", "phase_epoch", TRAIN_ROWS)


def _cell(trial: Any) -> dict[str, Any]:
    """What a trial row needs of the trial's config: its cell and search params."""
    return {k: trial.config.get(k) for k in ("arm", "seed", "fold", "params")}


class LiveReport(tune.Callback):
    """Rebuilds ``run_dir``'s report from the ended trials (``total``: trials the run will have)."""

    def __init__(self, run_dir: Path, info: RunInfo, total: int, every: float) -> None:
        self.run_dir, self.info, self.total, self.every = run_dir, info, total, every
        self.epochs: dict[str, list[dict[str, Any]]] = {}
        self.configs: dict[str, dict[str, Any]] = {}
        self.ended: dict[str, bool] = {}  # trial id → it failed
        # the first rebuild waits ``every`` too: a run shorter than that only gets the final report
        self.built_at = time.time()  # wall clock, so a resumed run (another process) keeps the spacing
        self.due = False
        self.warned = False

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        """Keep the epoch's metrics (only what the report reads)."""
        kept = {k: v for k, v in result.items() if k in _KEPT or str(k).startswith(METRIC_PREFIXES)}
        self.epochs.setdefault(trial.trial_id, []).append(kept)
        self.configs[trial.trial_id] = _cell(trial)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ended(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ended(trial, failed=True)

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if self.due and time.time() - self.built_at >= self.every:
            self.rebuild()

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        """An interrupted run's page stops reloading (a finished run's final report follows in runner.py)."""
        if self.ended and len(self.ended) < self.total:
            self.rebuild(status=f"stopped after {len(self.ended)} of {self.total} trials ended, at "
                                f"{time.strftime('%H:%M:%S')}; `neuroray run … --resume` continues it")

    def get_state(self) -> dict[str, Any] | None:
        """Saved with Tune's experiment state: the epochs seen so far (for `--resume`)."""
        return {"epochs": self.epochs, "configs": self.configs, "ended": self.ended} if self.epochs else None

    def set_state(self, state: dict[str, Any]) -> None:
        """Back from Tune's saved state on `--resume`."""
        self.epochs, self.configs, self.ended = state["epochs"], state["configs"], state["ended"]

    def _ended(self, trial: Any, failed: bool) -> None:
        self.ended[trial.trial_id] = failed
        self.configs.setdefault(trial.trial_id, _cell(trial))
        self.due = True
        if time.time() - self.built_at >= self.every:
            self.rebuild()

    def source(self, status: str) -> Source:
        """The report's inputs from the ended trials (``status``: the live line; empty = still running)."""
        metric, mode = self.info.metric, self.info.mode
        rows, frames = [], []
        for tid, failed in self.ended.items():
            h = pd.DataFrame(self.epochs.get(tid, []))
            cfg = self.configs.get(tid, {})
            rows.append({**trial_row(tid, cfg, h, metric, mode, failed), "checkpoint": None, "error": ""})
            if not h.empty:
                frames.append(history_frame(tid, cfg, h))
        history = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=HISTORY_KEYS)
        live = status or f"{len(self.ended)} of {self.total} trials ended at {time.strftime('%H:%M:%S')}"
        refresh = 0 if status else max(5, round(self.every))
        info = self.info.model_copy(update={"live": live, "refresh_s": refresh, "test": False})
        return Source(self.run_dir, info, as_table(rows, metric), history)  # no test scores yet

    def rebuild(self, status: str = "") -> None:
        """Write the report now; a failure is one warning (the run matters more than its live page)."""
        self.built_at, self.due = time.time(), False
        try:
            report_build.build(self.source(status), self.run_dir, self.info.baseline or None)
        except Exception as e:  # noqa: BLE001 — any failure here must leave the trials running
            if not self.warned and not is_no_space(e):  # a full disk is the run's one error line (full_disk.py)
                print(f"warning: live report not updated ({type(e).__name__}: {e}); the final report is still "
                      "written when the run ends", flush=True)
                self.warned = True
