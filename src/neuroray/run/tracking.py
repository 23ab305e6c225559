"""Dashboards: W&B through Ray's own callback (offline unless the user opts in), tagged by arm/seed/phase.

Ray's ``WandbLoggerCallback`` starts two Ray actors per trial (a queue and a logging actor; each is a new
worker process that imports wandb and starts its own wandb-core), which cost more than the fit of a
small EEG model (benchmarks/RESULTS.md, "Trial overhead"). ``ArmTaggedWandb`` keeps Ray's callback (its
API-key handling, the config it logs, its result cleaning) but logs every trial's W&B run from ONE actor
per experiment, with wandb's multiple runs per process (``reinit="create_new"``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import ray
from ray.air.constants import TRAINING_ITERATION
from ray.air.integrations.wandb import WANDB_ENV_VAR, WandbLoggerCallback
from ray.tune.utils import flatten_dict

from neuroray.run.ray_compat import private
from neuroray.run.trial_names import trial_label


class WandbRuns:
    """Ray actor: one W&B run per trial, all in this process. Calls from the driver run in submission
    order, so a trial's results reach its run in order and ``finish`` comes after its last result."""

    def __init__(self, api_key: str | None = None) -> None:
        os.environ["WANDB_START_METHOD"] = "thread"  # already a separate process: no fork
        if api_key:  # an argument, not runtime_env: a runtime_env shows in Ray's dashboard and State API
            os.environ[WANDB_ENV_VAR] = api_key
        import wandb

        self._wandb = wandb
        self._runs: dict[str, Any] = {}

    def start(self, key: str, logdir: str, init_kwargs: dict[str, Any],
              summary: tuple[str, str] | None = None) -> None:
        """Open the W&B run of trial ``key`` (a restarted trial keeps its run); ``summary`` (metric, min|max):
        the run's summary holds the metric's best value, not its last."""
        if key in self._runs:  # a restarted trial keeps its run
            return
        run = self._wandb.init(**{**init_kwargs, "reinit": "create_new"})
        if summary is not None:
            run.define_metric(summary[0], summary=summary[1])
        run.config.update({"trial_log_path": logdir}, allow_val_change=True)
        self._runs[key] = run

    def log(self, key: str, values: dict[str, Any], config_update: dict[str, Any]) -> None:
        """Log ``values`` (and config updates) to trial ``key``'s run at its training iteration."""
        run = self._runs.get(key)
        if run is None:
            return
        if config_update:
            run.config.update(config_update, allow_val_change=True)
        run.log(values, step=values.get(TRAINING_ITERATION))

    def finish(self, key: str, exit_code: int = 0) -> None:
        """Finish trial ``key``'s run with ``exit_code``."""
        if (run := self._runs.pop(key, None)) is not None:
            run.finish(exit_code=exit_code)

    def finish_all(self, exit_code: int = 0) -> int:
        """Finish every open run; returns how many there were."""
        keys = list(self._runs)
        for key in keys:
            self.finish(key, exit_code)
        # Close wandb-core now: the actor is killed next, and wandb's own atexit teardown would then find its
        # connection gone and print a traceback.
        self._wandb.teardown()
        return len(keys)


class ArmTaggedWandb(WandbLoggerCallback):
    """One W&B run per trial, grouped by experiment and tagged ``arm:``, ``seed:`` and ``phase:`` for each
    phase in the arm's chain (each logged result also carries its ``phase``), logged through one actor."""

    def __init__(self, *args: Any, phase_chains: dict[str, list[str]] | None = None,
                 summary: tuple[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.phase_chains = phase_chains or {}
        self.summary = summary  # (metric, "min"|"max"): each run's summary is its best epoch's value
        self._runs_actor: Any = None
        self._started: dict[str, list[str]] = {}  # trial id → result keys not logged

    def _actor(self) -> Any:
        if self._runs_actor is None:
            here: dict[str, Any] = dict(private("force_on_current_node")())
            self._runs_actor = ray.remote(WandbRuns).options(num_cpus=0, **here).remote(
                os.environ.get(WANDB_ENV_VAR))
        return self._runs_actor

    def _start_logging_actor(self, trial: Any, exclude_results: list[str], **wandb_init_kwargs: Any) -> None:
        cfg = trial.config or {}
        phases = self.phase_chains.get(str(cfg.get("arm")), [])
        wandb_init_kwargs["tags"] = [f"arm:{cfg.get('arm')}", f"seed:{cfg.get('seed')}",
                                     *(f"phase:{p}" for p in phases)]
        wandb_init_kwargs["name"] = trial_label(cfg, trial.trial_id)
        self._started[trial.trial_id] = exclude_results
        self._actor().start.remote(trial.trial_id, trial.local_path, wandb_init_kwargs, self.summary)

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        if trial.trial_id not in self._started:
            self.log_trial_start(trial)
        exclude = self._started[trial.trial_id]
        values: dict[str, Any] = {}
        config_update: dict[str, Any] = {}
        for k, v in flatten_dict(private("wandb_clean_log")(result), delimiter="/").items():
            if any(k == e or k.startswith(e + "/") for e in exclude):
                continue
            if any(k == c or k.startswith(c + "/") for c in self.AUTO_CONFIG_KEYS):
                config_update[k] = v
            elif private("wandb_is_allowed_type")(v):
                values[k] = v
        self._actor().log.remote(trial.trial_id, values, config_update)

    def log_trial_save(self, trial: Any) -> None:
        """Checkpoints stay in the run folder (and its storage); they are not uploaded as W&B artifacts."""

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        # A trial whose actor died while starting (OOM, killed worker) never got a W&B run.
        if self._started.pop(trial.trial_id, None) is not None:
            self._actor().finish.remote(trial.trial_id, 1 if failed else 0)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        # Runs of trials an interrupt left unfinished end too: nothing else would end them.
        if self._runs_actor is None:
            return
        with contextlib.suppress(Exception):  # a lost W&B actor must not fail a finished experiment
            ray.get(self._runs_actor.finish_all.remote(), timeout=self._upload_timeout)
        self._stop_actor()

    def _stop_actor(self) -> None:
        if self._runs_actor is not None and ray.is_initialized():
            with contextlib.suppress(Exception):
                ray.kill(self._runs_actor)
        self._runs_actor = None
        self._started = {}

    def __del__(self) -> None:
        self._stop_actor()

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment state; an actor handle does not survive a restore.
        state = self.__dict__.copy()
        state["_runs_actor"], state["_started"] = None, {}
        return state


def wandb_callback(experiment: str, run_dir: Path, phase_chains: dict[str, list[str]] | None = None,
                   summary: tuple[str, str] | None = None) -> WandbLoggerCallback | None:
    """The W&B callback for this experiment (offline unless ``WANDB_MODE`` says otherwise), or None without wandb."""
    mode = os.environ.get("WANDB_MODE", "offline")
    if mode == "disabled":
        return None
    run_dir.mkdir(parents=True, exist_ok=True)  # wandb itself adds the wandb/ folder
    return ArmTaggedWandb(project=os.environ.get("WANDB_PROJECT", "neuroray"), group=experiment,
                          mode=mode, dir=str(run_dir), log_config=True,
                          excludes=["checkpoint_path", "config"], phase_chains=phase_chains, summary=summary)
