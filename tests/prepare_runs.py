"""Helpers for tests that interrupt a real `python -m neuroray prepare eeg` process and resume it
(tests/datasets/eeg/test_prepare.py: SIGKILL; tests/reliability/test_interrupted_prepare.py: SIGINT, SIGTERM)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from neuroray.datasets.shards import open_shard_set, tensor_column_to_numpy


def start_prepare(bids: Path, out: Path, args: list[str]) -> subprocess.Popen[bytes]:
    """The CLI in its own process group, joined to the test session's Ray (no second Ray to start)."""
    import ray

    cmd = [sys.executable, "-m", "neuroray", "prepare", "eeg", "--bids", str(bids), "--out", str(out), *args,
           "--address", ray.get_runtime_context().gcs_address]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                            env={**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token")})


def finished(work: Path) -> int:
    """Recordings the work folder holds as finished (their ``<key>.json`` marker is written last)."""
    return len(list(work.glob("sub-*.json")))


def wait_until_finished(proc: subprocess.Popen[bytes], work: Path, n: int, timeout_s: float = 180) -> None:
    deadline = time.time() + timeout_s
    while finished(work) < n:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.time() < deadline, "prepare made no progress"
        time.sleep(0.2)


def assert_same_shard_sets(resumed: Path, uninterrupted: Path) -> None:
    """Rows, samples and normalization identical: a resumed prepare equals an uninterrupted one."""
    a_set, b_set = open_shard_set(resumed), open_shard_set(uninterrupted)
    assert a_set.manifest["rows"] == b_set.manifest["rows"]
    for split in ("train", "val", "test"):
        a, b = a_set.read_split(split), b_set.read_split(split)
        assert a.drop_columns(["x"]).equals(b.drop_columns(["x"]))
        np.testing.assert_array_equal(tensor_column_to_numpy(a.column("x")), tensor_column_to_numpy(b.column("x")))
    assert json.dumps(a_set.manifest["normalization"]) == json.dumps(b_set.manifest["normalization"])
