"""Hangs turned into errors (reliability issue D10): resources Ray cannot give, an address nobody answers."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml


def _write(path: Path, shards: Path, resources: dict[str, Any]) -> Path:
    raw = {"name": "hang", "data": {"shards": str(shards)},
           "phases": [{"name": "fit", "trainable": "eeg_regressor", "target": "y", "epochs": 1, "batch_size": 16}],
           "resources": resources}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.parametrize(("resources", "fragments"), [
    ({"cpus_per_worker": 64}, ["resources: a trial needs CPU 64 (Ray has ", "would wait forever"]),
    ({"gpus_per_worker": 1}, ["resources: a trial needs GPU 1 (Ray has 0)"]),
    ({"workers": 2, "cpus_per_worker": 3, "engine": "torchtrainer"}, ["a trial needs CPU 6.01"]),
    ({"driver_resources": {"trial_driver": 1}}, ["trial_driver 1 (Ray has 0)"]),
], ids=["cpus-64", "gpu-without-gpu", "torchtrainer-workers", "custom-resource"])
def test_resources_embedded_ray_lacks_are_refused(resources: dict[str, Any], fragments: list[str],
                                                  ray_session: None, small_eeg: Path, tmp_path: Path,
                                                  expect_exit2: Callable[..., str]) -> None:
    started = time.time()
    expect_exit2(["run", str(_write(tmp_path / "exp.yaml", small_eeg, resources)), "--storage",
                  str(tmp_path / "runs")], *fragments)
    assert time.time() - started < 30
    assert not (tmp_path / "runs" / "hang").exists()


def test_an_address_nobody_answers_is_one_line_in_seconds(small_eeg: Path, tmp_path: Path,
                                                          expect_exit2: Callable[..., str]) -> None:
    with socket.socket() as s:  # a free port on 127.0.0.1 that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.time()
    expect_exit2(["run", str(_write(tmp_path / "exp.yaml", small_eeg, {})), "--storage", str(tmp_path / "runs"),
                  "--address", f"127.0.0.1:{port}"], f"--address 127.0.0.1:{port}", "no Ray head answers")
    assert time.time() - started < 15
    expect_exit2(["run", str(tmp_path / "exp.yaml"), "--storage", str(tmp_path / "runs"), "--address", "nonsense"],
                 "not HOST:PORT")


def test_on_a_joined_cluster_the_pending_demand_is_said_once(ray_session: None, small_eeg: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A joined cluster may still grow (the autoscaler adds nodes for pending demand): no refusal, one note that
    names what is pending and where to watch it. Checked on the session's Ray, taken as a joined cluster."""
    from neuroray.run.tune import check_resources
    from neuroray.search_spaces.experiment import load

    loaded = load(_write(tmp_path / "exp.yaml", small_eeg, {"gpus_per_worker": 1}))
    check_resources(loaded, embedded=False)  # no error
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("note: resources: a trial needs GPU 1 (Ray has 0)"), out
    assert "autoscaler" in out[0] and "ray status" in out[0]
    check_resources(load(_write(tmp_path / "ok.yaml", small_eeg, {})), embedded=False)
    assert capsys.readouterr().out == ""  # what the cluster has: nothing said
