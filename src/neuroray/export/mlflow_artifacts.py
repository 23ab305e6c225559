"""An export of a run that had ``tracking.mlflow``: the ONNX model and its card as artifacts of the chosen
trial's MLflow run (run ids from the run folder's ``mlflow.json``). Needs mlflow, not Ray."""

from __future__ import annotations

import json
from pathlib import Path

from neuroray.errors import first_line

MLFLOW_FILE = "mlflow.json"  # written by run/mlflow_tracking.py during the run


def log_export(run_dir: Path, trial_id: str, out: Path) -> str | None:
    """Log every file of the export folder ``out`` under ``onnx/`` of trial ``trial_id``'s MLflow run; returns
    a one-line account (None when the run did not use MLflow). A server that is gone does not fail the export."""
    path = run_dir / MLFLOW_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    run_id = record.get("runs", {}).get(str(trial_id))
    if not run_id:
        return f"mlflow: trial {trial_id} has no MLflow run in {path}; the export was not logged"
    try:
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=record["uri"]).log_artifacts(run_id, str(out), artifact_path="onnx")
    except Exception as e:  # noqa: BLE001 — any MLflow/transport failure: the export itself is done
        return f"mlflow: logging the export to run {run_id} at {record['uri']} failed ({first_line(e)})"
    return f"mlflow: export logged as artifacts onnx/ of run {run_id} at {record['uri']}"
