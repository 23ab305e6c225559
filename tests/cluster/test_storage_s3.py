"""`neuroray run --storage s3://…` against moto's S3 server on 127.0.0.1 (no AWS, no mocks of storage).

The run uses the session's embedded Ray: the trial actors get the S3 filesystem (endpoint included) from
Tune, pickled; the driver reads AWS_ENDPOINT_URL and fake credentials from the environment, as pyarrow does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.fs as pafs
import pytest
import yaml

from neuroray.cli import main

REPO = Path(__file__).resolve().parents[2]
BUCKET = "neuroray-test"  # made by the s3_server fixture (tests/cluster/conftest.py)


@pytest.fixture(scope="module")
def s3(s3_server: Any) -> Iterator[pafs.S3FileSystem]:
    with pytest.MonkeyPatch.context() as mp:  # this process (the Tune driver) finds the server like pyarrow does
        for key, value in s3_server.env.items():
            mp.setenv(key, value)
        assert s3_server.bucket == BUCKET
        yield s3_server.fs


@pytest.fixture(scope="module")
def s3_run(s3: pafs.S3FileSystem, ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("s3run")
    cwd = os.getcwd()
    os.chdir(work)  # data/ and the local summary (runs/) land in the temp folder
    try:
        assert main(["run", str(REPO / "experiments" / "demo.yaml"), "--smoke", "--quiet",
                     "--storage", f"s3://{BUCKET}/runs"]) == 0
    finally:
        os.chdir(cwd)
    return work


def _keys(fs: pafs.S3FileSystem, prefix: str) -> list[str]:
    return [f.path for f in fs.get_file_info(pafs.FileSelector(prefix, recursive=True)) if f.is_file]


def test_checkpoints_results_and_state_are_in_the_bucket(s3_run: Path, s3: pafs.S3FileSystem) -> None:
    keys = _keys(s3, f"{BUCKET}/runs/demo-smoke")
    trials = pd.read_csv(s3_run / "runs" / "demo-smoke" / "results.csv")  # the local summary
    assert len(trials) == 4 and (trials["status"] == "OK").all()
    for ckpt in trials["checkpoint"]:
        assert ckpt.startswith(f"s3://{BUCKET}/runs/demo-smoke/")
        path = ckpt.removeprefix("s3://")
        assert {f"{path}/model.pt", f"{path}/meta.json"} <= set(keys)
    # Tune's per-trial results and its restorable experiment state
    assert sum(k.endswith("/result.json") for k in keys) == 4
    assert f"{BUCKET}/runs/demo-smoke/tuner.pkl" in keys
    # the summary is copied next to the trial folders, identical to the local one
    for name in ("results.csv", "results.parquet", "report.md", "run.json"):
        assert f"{BUCKET}/runs/demo-smoke/{name}" in keys
    with s3.open_input_stream(f"{BUCKET}/runs/demo-smoke/results.csv") as f:
        assert f.read().decode() == (s3_run / "runs" / "demo-smoke" / "results.csv").read_text()
    # nothing but the summary, TensorBoard and W&B files stays local
    local = {p.name for p in (s3_run / "runs" / "demo-smoke").iterdir()}
    assert not any(n.startswith(("shallow-", "conv-", "experiment_state")) for n in local), local
    assert "tuner.pkl" not in local


def test_export_downloads_the_checkpoint(s3_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = s3_run / "runs" / "demo-smoke"
    assert main(["export", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert (run_dir / "export" / "model.onnx").is_file()
    assert [p.name for p in (run_dir / "checkpoints").glob("*/model.pt")]  # the local copy of the S3 checkpoint
    assert float(out.split("max |Δ| = ")[1].split()[0]) <= 1e-4


def test_bad_storage_is_one_line_and_exit_2(s3: pafs.S3FileSystem, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    demo = str(REPO / "experiments" / "demo.yaml")
    for storage, expected in [(f"s3://{BUCKET}-missing/runs", "not writable"),
                              ("nosuchfs://x/y", "pyarrow cannot open this URI")]:
        assert main(["run", demo, "--storage", storage]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: --storage {storage}: {expected}") and "\n" not in err, err
    # an earlier run of the same experiment in the bucket is not silently mixed with a new one
    with s3.open_output_stream(f"{BUCKET}/old/demo/result.json") as f:
        f.write(b"{}")
    assert main(["run", demo, "--storage", f"s3://{BUCKET}/old"]) == 2
    err = capsys.readouterr().err
    assert f"s3://{BUCKET}/old/demo: a run of 'demo' already exists" in err
    assert not (tmp_path / "runs").exists()  # nothing written locally before the refusal


def test_resume_and_export_with_the_endpoint_in_the_uri(s3_run: Path, s3_server: Any,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The server named only in the URI (``?endpoint_override=…&scheme=http``, no AWS_ENDPOINT_URL): `--resume`
    finds Tune's state there, and the summary's checkpoint URIs keep the query, so export reaches it too."""
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.chdir(s3_run)
    host = s3_server.endpoint.removeprefix("http://")
    storage = f"s3://{BUCKET}/runs?endpoint_override={host}&scheme=http"
    assert main(["run", str(REPO / "experiments" / "demo.yaml"), "--smoke", "--quiet", "--resume",
                 "--storage", storage]) == 0  # a finished run: nothing left to train, the summary is rebuilt
    trials = pd.read_csv(s3_run / "runs" / "demo-smoke" / "results.csv")
    assert len(trials) == 4 and (trials["status"] == "OK").all()
    assert all(c.startswith(f"s3://{BUCKET}/runs/demo-smoke/") and c.endswith(f"?endpoint_override={host}&scheme=http")
               for c in trials["checkpoint"])
    capsys.readouterr()
    out_dir = s3_run / "export-query"
    assert main(["export", str(s3_run / "runs" / "demo-smoke"), "--out", str(out_dir)]) == 0
    assert (out_dir / "model.onnx").is_file()


# ~70 s of Train V2 start-up for one 2-worker trial: slow-marked like the local TorchTrainer case
@pytest.mark.slow
def test_torchtrainer_checkpoints_are_in_the_bucket(s3: pafs.S3FileSystem, ray_session: None, small_eeg: Path,
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The TorchTrainer engine (2 workers) reads its shard set from the bucket and writes its checkpoints and Train
    state under the run's storage URI, nothing under the local run folder; export fetches the chosen checkpoint
    from the bucket."""
    monkeypatch.chdir(tmp_path)
    pafs.copy_files(str(small_eeg), f"{BUCKET}/sets/tt-eeg", source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=s3)  # a finished set, manifest included
    exp = {"name": "tt-s3", "data": {"shards": f"s3://{BUCKET}/sets/tt-eeg"},
           "phases": [{"name": "fit", "trainable": "eeg_regressor", "target": "y", "epochs": 2, "batch_size": 16,
                       "hparams": {"lr": 5e-3}}],
           "metric": {"name": "val/nrmse", "mode": "min"},
           "resources": {"workers": 2, "cpus_per_worker": 0.5, "engine": "torchtrainer"}}
    path = tmp_path / "tt-s3.yaml"
    path.write_text(yaml.safe_dump(exp))
    assert main(["run", str(path), "--quiet", "--storage", f"s3://{BUCKET}/tt"]) == 0
    trials = pd.read_csv(tmp_path / "runs" / "tt-s3" / "results.csv")
    assert len(trials) == 1 and trials.loc[0, "status"] == "OK", trials.loc[0, "error"]
    ckpt = trials.loc[0, "checkpoint"]
    assert ckpt.startswith(f"s3://{BUCKET}/tt/tt-s3/train/"), ckpt
    keys = set(_keys(s3, f"{BUCKET}/tt/tt-s3/train"))
    assert {f"{ckpt.removeprefix('s3://')}/model.pt", f"{ckpt.removeprefix('s3://')}/meta.json"} <= keys
    assert not (tmp_path / "runs" / "tt-s3" / "train").exists()
    # rank 0 copied its TensorBoard files to the bucket when the fit ended
    assert any("/tt/tt-s3/tensorboard/" in k and "events.out.tfevents" in k for k in _keys(s3, f"{BUCKET}/tt/tt-s3"))
    capsys.readouterr()
    assert main(["export", str(tmp_path / "runs" / "tt-s3")]) == 0
    assert (tmp_path / "runs" / "tt-s3" / "export" / "model.onnx").is_file()
