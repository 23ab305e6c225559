"""`tracking.mlflow` against a real `mlflow server` on 127.0.0.1 (sqlite store, served artifacts): one MLflow run
per trial with arm/seed tags, per-epoch metrics, the best epoch's and the held-out test metrics, the ONNX export
as an artifact; secrets in the environment never reach a param, tag or artifact."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from neuroray.cli import main

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

SECRETS = {"WANDB_API_KEY": "wandb-secret-7f3a9c1e", "AWS_SECRET_ACCESS_KEY": "aws-secret-5d2b8e40"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
           "--artifacts-destination", str(root / "artifacts")]
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                if r.read().strip() == b"OK":
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    yield uri
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def _experiment(tmp_path: Path, shards: Path, uri: str) -> Path:
    exp = {"name": "mlflow-run", "data": {"shards": str(shards)},
           "phases": [{"name": "fit", "trainable": "eeg_regressor", "target": "y", "epochs": 3, "batch_size": 16,
                       "hparams": {"lr": 5e-3}}],
           "matrix": {"arm": {"shallow": {"phases.fit.hparams.encoder": "shallow"},
                              "conv": {"phases.fit.hparams.encoder": "conv"}}, "seed": [0]},
           "metric": {"name": "val/nrmse", "mode": "min"},
           "resources": {"workers": 1, "cpus_per_worker": 1},
           "tracking": {"mlflow": {"uri": uri, "experiment": "neuroray-mlflow-test"}}}
    path = tmp_path / "mlflow-run.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


# ~90 s (the server's start, a 2-trial run, test scoring, export): slow-marked to keep the default run under
# 20 minutes on 2 cores; `make test-all` runs it
@pytest.mark.slow
def test_one_mlflow_run_per_trial_with_tags_metrics_and_the_onnx_artifact(
        mlflow_server: str, ray_session: None, small_eeg: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    path = _experiment(tmp_path, small_eeg, mlflow_server)
    assert main(["run", str(path), "--quiet", "--storage", str(tmp_path / "runs")]) == 0
    run_dir = tmp_path / "runs" / "mlflow-run"
    trials = pd.read_csv(run_dir / "results.csv")
    assert len(trials) == 2 and (trials["status"] == "OK").all()
    assert main(["export", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "mlflow: export logged as artifacts onnx/" in out, out

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("neuroray-mlflow-test")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2  # one per trial
    by_trial = {r.data.tags["trial_name"]: r for r in runs}
    for _, row in trials.iterrows():
        label = f"{row['arm']}-s{row['seed']}-{row['trial_id']}"
        run = by_trial[label]
        assert run.info.status == "FINISHED"
        assert run.data.tags["arm"] == row["arm"] and run.data.tags["seed"] == str(row["seed"])
        assert run.data.tags["phase.0"] == "fit"
        assert run.data.params["arm"] == row["arm"] and run.data.params["seed"] == str(row["seed"])
        history = client.get_metric_history(run.info.run_id, "val/nrmse")
        assert sorted(m.step for m in history) == [1, 2, 3]  # every epoch
        best = min(m.value for m in history)
        assert run.data.metrics["best/val/nrmse"] == pytest.approx(best)
        assert run.data.metrics["best/val/nrmse"] == pytest.approx(row["val/nrmse"], rel=1e-6)
        assert run.data.metrics["test/nrmse"] == pytest.approx(row["test/nrmse"], rel=1e-6)

    best_row = trials.loc[trials["val/nrmse"].idxmin()]
    chosen = by_trial[f"{best_row['arm']}-s{best_row['seed']}-{best_row['trial_id']}"]
    artifacts = {a.path for a in client.list_artifacts(chosen.info.run_id, "onnx")}
    assert {"onnx/model.onnx", "onnx/model_card.json"} <= artifacts, artifacts

    # no secret in any param, tag or artifact of any run
    for run in runs:
        texts = [*run.data.params.values(), *run.data.tags.values()]
        for a in client.list_artifacts(run.info.run_id, "onnx"):
            texts.append(Path(client.download_artifacts(run.info.run_id, a.path, str(tmp_path))).read_bytes()
                         .decode("latin-1"))
        for secret in SECRETS.values():
            assert not any(secret in t for t in texts), f"{secret} leaked into MLflow run {run.info.run_id}"


def test_an_unreachable_server_is_one_line_before_ray(small_eeg: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"http://127.0.0.1:{_free_port()}"
    assert main(["run", str(_experiment(tmp_path, small_eeg, uri)), "--storage", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: tracking.mlflow.uri: {uri} does not answer") and "\n" not in err, err
    assert not (tmp_path / "runs" / "mlflow-run").exists()


def test_a_uri_mlflow_cannot_open_is_refused_by_validate(small_eeg: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(_experiment(tmp_path, small_eeg, "localhost:5000"))]) == 2
    err = capsys.readouterr().err.strip()
    assert "tracking.mlflow.uri" in err and "http://HOST:PORT" in err and "\n" not in err, err
