"""Shard sets on s3:// (moto's S3 server on 127.0.0.1): prepare --out s3://…, a run that reads only from the
bucket, predict over it, and an object store that stops answering in the middle of a prepare's upload.

The fault is a real one: the client talks to moto through a TCP relay (store_cut.py) that the test cuts the
moment the client starts uploading the second part, the way a store that goes away mid-upload looks from
the client; the relay then refuses every connection until it is opened again.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from cluster_driver import run_driver
from store_cut import StoreRelay

from neuroray.cli import main
from neuroray.datasets.remote_shards import staging_folder
from neuroray.datasets.shards import open_shard_set

PREPARE = ["prepare", "spectrograms", "--synthetic-lfp", "--n-trials", "4"]


@pytest.fixture(scope="module")
def s3(s3_server: Any) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as mp:  # this process finds the server the way pyarrow does
        for key, value in s3_server.env.items():
            mp.setenv(key, value)
        yield s3_server


@pytest.fixture(scope="module")
def lfp_uri(s3: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = f"s3://{s3.bucket}/sets/lfp"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("s3prep"))
        assert main([*PREPARE, "--out", uri]) == 0
    return uri


def _rows(uri: str) -> dict[str, pd.DataFrame]:
    s = open_shard_set(uri, verify="sha256")
    return {split: s.read_split(split, ["y" if "y" in s.manifest.columns else "label", "session"]).to_pandas()
            for split in ("train", "val", "test")}


def test_prepare_publishes_parts_then_the_manifest_and_refuses_a_second_time(
        s3: Any, lfp_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    keys = s3.keys(f"{s3.bucket}/sets/lfp")
    manifest = json.loads(s3.fs.open_input_stream(f"{s3.bucket}/sets/lfp/manifest.json").read())
    assert sorted(keys) == sorted([f"{s3.bucket}/sets/lfp/{rel}" for rel in manifest["files"]]
                                  + [f"{s3.bucket}/sets/lfp/manifest.json"])
    assert not staging_folder(lfp_uri).parent.exists()  # the local staging folder is gone once published
    shards = open_shard_set(lfp_uri)  # size + footers by default for a URI
    assert shards.remote and shards.rows("train") == manifest["rows"]["train"] > 0
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main([*PREPARE, "--out", lfp_uri]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --out {lfp_uri}: a shard set already exists; pass --overwrite to replace it"


def test_a_run_reads_the_set_only_from_the_bucket_and_predict_scores_it(
        s3: Any, lfp_uri: str, ray_session: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    exp = {"name": "lfp-s3", "data": {"shards": lfp_uri},
           "phases": [{"name": "fit", "trainable": "spectrogram_cnn", "target": "label", "epochs": 2,
                       "batch_size": 16, "hparams": {"width": 8, "lr": 3e-3}}],
           "metric": {"name": "val/auroc", "mode": "max"},
           "resources": {"workers": 1, "cpus_per_worker": 1, "engine": "actor"}}
    (tmp_path / "lfp-s3.yaml").write_text(yaml.safe_dump(exp))
    assert main(["run", "lfp-s3.yaml", "--quiet", "--storage", f"s3://{s3.bucket}/runs"]) == 0
    out = capsys.readouterr().out
    assert "data: train (" in out, out[-2000:]  # the cache choice, per split
    run_dir = tmp_path / "runs" / "lfp-s3"
    trials = pd.read_csv(run_dir / "results.csv")
    assert len(trials) == 1 and trials.loc[0, "status"] == "OK", trials.loc[0, "error"]
    assert json.loads((run_dir / "run.json").read_text())["shards"] == lfp_uri
    assert not list(tmp_path.rglob("part-*.parquet"))  # no local copy of the shard set
    keys = s3.keys(f"{s3.bucket}/runs/lfp-s3")
    assert f"{s3.bucket}/runs/lfp-s3/run.json" in keys
    # the trial's TensorBoard files were copied to the bucket when it ended
    assert any("/runs/lfp-s3/tensorboard/" in k and "events.out.tfevents" in k for k in keys), keys
    # report and export read the run folder from the bucket and put what they write back there
    shutil.rmtree(run_dir)
    remote = f"s3://{s3.bucket}/runs/lfp-s3"
    capsys.readouterr()
    assert main(["report", remote]) == 0
    assert f"report: {remote}/report.md" in capsys.readouterr().out
    with s3.fs.open_input_stream(f"{s3.bucket}/runs/lfp-s3/report.md") as f:
        assert "val/auroc" in f.read().decode()
    assert main(["export", remote]) == 0
    assert f"{s3.bucket}/runs/lfp-s3/export/model.onnx" in s3.keys(f"{s3.bucket}/runs/lfp-s3/export")
    model = f"{remote}/export/model.onnx"  # predict and bench-model take the model from the bucket too
    preds = tmp_path / "preds.parquet"
    assert main(["predict", model, lfp_uri, "--out", str(preds)]) == 0
    assert main(["bench-model", model, "--runs", "5", "--warmup", "1", "--batch", "4"]) == 0
    assert len(pd.read_parquet(preds)) == open_shard_set(lfp_uri).rows("test")
    assert not list(tmp_path.rglob("part-*.parquet"))  # still no local copy of the shard set


def test_a_store_cut_mid_upload_publishes_nothing_and_resume_finishes_it(
        s3: Any, lfp_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    host = s3.endpoint.removeprefix("http://")
    with StoreRelay(host, cut_on=b"/sets/cut/train/part-") as relay:
        uri = f"s3://{s3.bucket}/sets/cut?endpoint_override={relay.address}&scheme=http"
        capsys.readouterr()
        assert main([*PREPARE, "--out", uri]) == 2
        err = capsys.readouterr().err.strip()
        assert relay.was_cut
        assert err.startswith(f"error: --out s3://{s3.bucket}/sets/cut?") and "\n" not in err, err
        assert "uploading train/part-00000.parquet failed" in err and "--resume" in err, err
        keys = s3.keys(f"{s3.bucket}/sets/cut")
        assert keys and not any(k.endswith("manifest.json") for k in keys), keys  # some parts, no manifest
        with pytest.raises(Exception, match="an unfinished shard set"):
            open_shard_set(f"s3://{s3.bucket}/sets/cut")
        # a run whose data.shards no longer answers: one line naming the set and the operation, before Ray
        exp = {"name": "cut", "data": {"shards": uri},
               "phases": [{"name": "fit", "trainable": "spectrogram_cnn", "target": "label", "epochs": 1}],
               "metric": {"name": "val/auroc", "mode": "max"}}
        (tmp_path / "cut.yaml").write_text(yaml.safe_dump(exp))
        assert main(["run", "cut.yaml", "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: s3://{s3.bucket}/sets/cut?endpoint_override=") and "\n" not in err, err
        assert "looking for manifest.json failed (" in err and "object store reachable" in err, err
        assert not (tmp_path / "runs" / "cut").exists()
        relay.reopen()
        assert main([*PREPARE, "--out", uri]) == 2  # without --resume: refused, nothing touched
        assert "unfinished shard set" in capsys.readouterr().err
        assert main([*PREPARE, "--out", uri, "--resume"]) == 0
    cut, whole = _rows(f"s3://{s3.bucket}/sets/cut"), _rows(lfp_uri)
    for split in whole:  # exactly the rows of the uninterrupted prepare, none twice
        pd.testing.assert_frame_equal(cut[split], whole[split])


# ~35 s: a head and a worker node of their own (ray.cluster_utils.Cluster), as in test_node_loss.py
def test_a_trial_on_a_worker_node_reads_only_from_s3_and_its_logs_outlive_the_node(
        s3: Any, lfp_uri: str, tmp_path: Path) -> None:
    exp = {"name": "lfp-node", "data": {"shards": lfp_uri, "cache": "stream"},
           "phases": [{"name": "fit", "trainable": "spectrogram_cnn", "target": "label", "epochs": 2,
                       "batch_size": 16, "hparams": {"width": 8}}],
           "metric": {"name": "val/auroc", "mode": "max"},
           # the trial only on the worker node (trial_slot); the head's CPU serves Ray Data's reads
           "resources": {"workers": 1, "cpus_per_worker": 1, "engine": "actor",
                         "driver_resources": {"trial_slot": 1}}}
    path = tmp_path / "lfp-node.yaml"
    path.write_text(yaml.safe_dump(exp))
    out = run_driver(Path(__file__).with_name("s3_node_driver.py"), [str(path), f"s3://{s3.bucket}/node-runs"],
                     env=s3.env)
    assert out["error"] is None, out["error"]
    assert [r["status"] for r in out["results"]] == ["OK"]
    assert not list(Path(out["cwd"]).rglob("part-*.parquet"))  # the set was never copied to the driver's disk
    keys = s3.keys(f"{s3.bucket}/node-runs/lfp-node")
    progress = [k for k in keys if k.endswith("/progress.csv")]
    assert len(progress) == 1, keys
    with s3.fs.open_input_stream(progress[0]) as f:
        nodes = set(pd.read_csv(f)["node_id"])
    assert nodes == {out["worker"]} != {out["head"]}  # every epoch ran on the worker node
    # the worker node is gone; its trial's TensorBoard files are in the bucket
    assert any("/tensorboard/" in k and "events.out.tfevents" in k for k in keys), keys
