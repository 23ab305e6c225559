"""Dashboards: W&B through Ray's own callback (offline unless the user opts in), tagged by arm/seed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ray.air.integrations.wandb import WandbLoggerCallback


class ArmTaggedWandb(WandbLoggerCallback):
    """Ray's W&B callback, one W&B run per trial, grouped by experiment and tagged by arm, seed and the
    arm's phase chain (``phase:pretrain`` …; each logged result also carries its ``phase``)."""

    def __init__(self, *args: Any, phase_chains: dict[str, list[str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.phase_chains = phase_chains or {}

    def _start_logging_actor(self, trial: Any, exclude_results: list[str], **wandb_init_kwargs: Any) -> None:
        cfg = trial.config or {}
        phases = self.phase_chains.get(str(cfg.get("arm")), [])
        wandb_init_kwargs["tags"] = [f"arm:{cfg.get('arm')}", f"seed:{cfg.get('seed')}",
                                     *(f"phase:{p}" for p in phases)]
        wandb_init_kwargs["name"] = trial_label(cfg, trial.trial_id)
        super()._start_logging_actor(trial, exclude_results, **wandb_init_kwargs)

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        # A trial whose actor died while starting (OOM, killed worker) never got a W&B run; Ray's callback
        # would raise KeyError here and take the whole Tuner, every other trial included, down with it.
        if trial in self._trial_queues:
            super().log_trial_end(trial, failed)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        # An interrupted run leaves trials unfinished, and their logging actors would wait for a trial end
        # that never comes (Ray then waits upload_timeout, 30 min): end them first.
        for trial in list(self._trial_queues):
            self._signal_logging_actor_stop(trial=trial)
        super().on_experiment_end(trials, **info)


def trial_label(config: dict[str, Any], trial_id: str) -> str:
    return f"{config.get('arm', 'trial')}-s{config.get('seed', 0)}-{trial_id}"


def wandb_callback(experiment: str, run_dir: Path,
                   phase_chains: dict[str, list[str]] | None = None) -> WandbLoggerCallback | None:
    mode = os.environ.get("WANDB_MODE", "offline")
    if mode == "disabled":
        return None
    run_dir.mkdir(parents=True, exist_ok=True)  # wandb itself adds the wandb/ folder
    return ArmTaggedWandb(project=os.environ.get("WANDB_PROJECT", "neuroray"), group=experiment,
                          mode=mode, dir=str(run_dir), log_config=True,
                          excludes=["checkpoint_path", "config"], phase_chains=phase_chains)
