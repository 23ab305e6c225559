"""Dashboards: W&B through Ray's own callback (offline unless the user opts in), tagged by arm/seed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ray.air.integrations.wandb import WandbLoggerCallback


class ArmTaggedWandb(WandbLoggerCallback):
    """Ray's W&B callback, one W&B run per trial, grouped by experiment and tagged by arm and seed."""

    def _start_logging_actor(self, trial: Any, exclude_results: list[str], **wandb_init_kwargs: Any) -> None:
        cfg = trial.config or {}
        wandb_init_kwargs["tags"] = [f"arm:{cfg.get('arm')}", f"seed:{cfg.get('seed')}"]
        wandb_init_kwargs["name"] = trial_label(cfg, trial.trial_id)
        super()._start_logging_actor(trial, exclude_results, **wandb_init_kwargs)


def trial_label(config: dict[str, Any], trial_id: str) -> str:
    return f"{config.get('arm', 'trial')}-s{config.get('seed', 0)}-{trial_id}"


def wandb_callback(experiment: str, run_dir: Path) -> WandbLoggerCallback | None:
    mode = os.environ.get("WANDB_MODE", "offline")
    if mode == "disabled":
        return None
    run_dir.mkdir(parents=True, exist_ok=True)  # wandb itself adds the wandb/ folder
    return ArmTaggedWandb(project=os.environ.get("WANDB_PROJECT", "neuroray"), group=experiment,
                          mode=mode, dir=str(run_dir), log_config=True,
                          excludes=["checkpoint_path", "config"])
