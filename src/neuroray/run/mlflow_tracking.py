"""MLflow (``tracking.mlflow`` in the experiment file): one MLflow run per trial through Ray's
``MLflowLoggerCallback``, tagged by arm, seed and phase chain, with per-epoch metrics and the best epoch's
metrics (``best/<metric>``) logged when the trial ends; the held-out test scores join them after the search.

The callback runs in the Tune driver, so nothing reaches trial processes. Params are the trial's config (arm,
seed, search params, fold) and nothing else: no environment variable, hence no secret, is ever logged.
``mlflow.json`` in the run folder maps trial ids to MLflow run ids, for ``neuroray export`` (which logs the
ONNX model as an artifact of the chosen trial's run; ``export/mlflow_artifacts.py``).
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
from ray.air.constants import TRAINING_ITERATION
from ray.air.integrations.mlflow import MLflowLoggerCallback

from neuroray.errors import ConfigError
from neuroray.export.mlflow_artifacts import MLFLOW_FILE  # {uri, experiment, runs: {trial_id: run_id}}
from neuroray.outputs import atomic_write
from neuroray.reports.folder import METRIC_PREFIXES
from neuroray.run.trial_names import trial_label
from neuroray.search_spaces.experiment import LoadedExperiment
from neuroray.search_spaces.schema import MLflowTracking

_EPOCH_KEYS = ("phase_epoch", "epoch")


def check_mlflow(cfg: MLflowTracking | None) -> None:
    """Before Ray starts: mlflow importable and an ``http(s)://`` server answering; else one line."""
    if cfg is None:
        return
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ConfigError("tracking.mlflow: mlflow is not installed; pip install 'neuroray[mlflow]' (or remove "
                          "tracking.mlflow)") from None
    if cfg.uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{cfg.uri.rstrip('/')}/health", timeout=10) as r:
                r.read()
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ConfigError(f"tracking.mlflow.uri: {cfg.uri} does not answer ({reason}); start the server "
                              "(`mlflow server --host 127.0.0.1 --port 5000`) or fix the URI") from None


def _numeric(result: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in result.items()
            if (k.startswith(METRIC_PREFIXES) or k in _EPOCH_KEYS) and isinstance(v, int | float)
            and not isinstance(v, bool) and math.isfinite(v)}


class ArmTaggedMLflow(MLflowLoggerCallback):
    """Ray's MLflow callback with neuroray's tags, numeric metrics only, and each trial's best epoch."""

    def __init__(self, cfg: MLflowTracking, experiment: str, run_dir: Path, metric: str, mode: str,
                 phase_chains: dict[str, list[str]]) -> None:
        super().__init__(tracking_uri=cfg.uri, experiment_name=cfg.experiment or experiment,
                         tags={"neuroray.experiment": experiment})
        self.cfg = cfg
        self.experiment = experiment
        self.run_file = run_dir / MLFLOW_FILE
        self.metric, self.mode = metric, mode
        self.phase_chains = phase_chains
        self._best: dict[str, dict[str, float]] = {}
        self._ids: dict[str, str] = {}

    def log_trial_start(self, trial: Any) -> None:
        if trial in self._trial_runs:
            return
        cfg = trial.config or {}
        arm, seed = str(cfg.get("arm")), str(cfg.get("seed"))
        phases = self.phase_chains.get(arm, [])
        tags = {**(self.tags or {}), "arm": arm, "seed": seed, "phases": " → ".join(phases),
                **{f"phase.{i}": p for i, p in enumerate(phases)},
                **({"fold": str(cfg["fold"])} if cfg.get("fold") is not None else {})}
        label = trial_label(cfg, trial.trial_id)
        run = self.mlflow_util.start_run(tags={**tags, "trial_name": label}, run_name=label)
        self._trial_runs[trial] = run.info.run_id
        self._ids[trial.trial_id] = run.info.run_id
        self.mlflow_util.log_params(run_id=run.info.run_id, params_to_log=dict(cfg))
        self._save()

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        if trial not in self._trial_runs:
            self.log_trial_start(trial)
        values = _numeric(result)
        if not values:
            return
        self.mlflow_util.log_metrics(run_id=self._trial_runs[trial], metrics_to_log=values,
                                     step=int(result.get(TRAINING_ITERATION) or 0))
        score = values.get(self.metric)
        best = self._best.get(trial.trial_id)
        if score is not None and (best is None or (score < best[self.metric] if self.mode == "min"
                                                   else score > best[self.metric])):
            self._best[trial.trial_id] = values

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        if trial not in self._trial_runs:  # its actor died while starting: no run was opened
            return
        best = self._best.get(trial.trial_id)
        if best:  # the run summary: the best epoch by the experiment's metric, what export would ship
            self.mlflow_util.log_metrics(run_id=self._trial_runs[trial],
                                         metrics_to_log={f"best/{k}": v for k, v in best.items()}, step=0)
        super().log_trial_end(trial, failed)

    def _save(self) -> None:
        record = {"uri": self.cfg.uri, "experiment": self.cfg.experiment or self.experiment, "runs": self._ids}
        atomic_write(self.run_file, lambda p: p.write_text(json.dumps(record, indent=2)))


def mlflow_callback(loaded: LoadedExperiment, run_dir: Path, metric: str, mode: str,
                    phase_chains: dict[str, list[str]]) -> ArmTaggedMLflow:
    """The MLflow callback of an experiment file with ``tracking.mlflow``."""
    cfg = loaded.model.tracking.mlflow
    if cfg is None:
        raise ValueError(f"{loaded.name}: no tracking.mlflow")
    callback = ArmTaggedMLflow(cfg, loaded.name, run_dir, metric, mode, phase_chains)
    if (run_dir / MLFLOW_FILE).is_file():  # --resume: trials keep their runs' ids for export
        callback._ids = dict(json.loads((run_dir / MLFLOW_FILE).read_text()).get("runs", {}))
    return callback


def log_test_scores(run_dir: Path, trials: pd.DataFrame) -> int:
    """The held-out ``test/…`` scores of each trial into its MLflow run (after the search); returns how many."""
    path = run_dir / MLFLOW_FILE
    test_cols = [c for c in trials.columns if c.startswith("test/")]
    if not path.is_file() or not test_cols:
        return 0
    from mlflow.tracking import MlflowClient

    record = json.loads(path.read_text())
    client = MlflowClient(tracking_uri=record["uri"])
    done = 0
    for _, row in trials.iterrows():
        run_id = record["runs"].get(str(row["trial_id"]))
        scores = {c: float(row[c]) for c in test_cols if pd.notna(row[c])}
        if run_id and scores:
            for key, value in scores.items():
                client.log_metric(run_id, key, value)
            done += 1
    return done
