"""Data loss found by hostile use (reliability issue D1–D3): users' files and other runs must survive.

D1: ``data.prepare`` (or ``prepare … --overwrite``) at a path that holds the user's files or a file.
D2: experiment names that are not one safe path component ('.', '..', hidden, with a slash), and
    ``--overwrite`` of a folder that is not a neuroray run.
D3: a second run of one experiment into one storage while the first still runs.
Each case: exit 2, one line, and a sentinel beside the storage / shard set survives byte for byte.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from neuroray.run_folder.run_lock import RunLock
from neuroray.run_folder.storage import LOCK_FILE

REPO = Path(__file__).resolve().parents[2]


def _experiment(path: Path, shards: Path | str, name: str = "loss", epochs: int = 1,
                prepare: dict[str, Any] | None = None, samples: int = 1) -> Path:
    raw: dict[str, Any] = {
        "name": name, "data": {"shards": str(shards), **({"prepare": prepare} if prepare else {})},
        "phases": [{"name": "fit", "trainable": "eeg_regressor", "target": "y", "epochs": epochs, "batch_size": 16}],
        "search": {"num_samples": samples, "space": {"lr": "loguniform(1e-3, 1e-2)"}},
    }
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _users_folder(root: Path) -> Path:
    (root / "precious" / "chapter1").mkdir(parents=True)
    (root / "precious" / "thesis.txt").write_text("four years of work\n")
    (root / "precious" / "chapter1" / "fig.csv").write_text("a,b\n1,2\n")
    (root / "sentinel.txt").write_text("beside it\n")
    return root / "precious"


SYNTHETIC = {"kind": "synthetic_eeg", "n_subjects": 4, "windows_per_subject": 8, "n_chans": 4, "n_times": 50,
             "sfreq": 100}
VOLUMES = {"kind": "volumes", "synthetic": 12, "voxel_mm": 8}


# ---- D1: a prepare never replaces what is not a shard set ------------------------------------------------

@pytest.mark.parametrize("prepare", [SYNTHETIC, VOLUMES], ids=["synthetic_eeg", "volumes"])
def test_data_prepare_refuses_a_folder_of_the_users_files(tmp_path: Path, prepare: dict[str, Any],
                                                         expect_exit2: Callable[..., str]) -> None:
    folder = _users_folder(tmp_path)
    exp = _experiment(tmp_path / "exp.yaml", folder, prepare=prepare)
    expect_exit2(["run", str(exp), "--storage", str(tmp_path / "runs")], "data.shards", str(folder),
                 "holds no shard set", untouched=[folder, tmp_path / "sentinel.txt"])
    assert not (tmp_path / "runs" / "loss").exists()


@pytest.mark.parametrize("prepare", [SYNTHETIC, VOLUMES], ids=["synthetic_eeg", "volumes"])
def test_data_prepare_refuses_a_file(tmp_path: Path, prepare: dict[str, Any],
                                     expect_exit2: Callable[..., str]) -> None:
    target = tmp_path / "notes.yaml"
    target.write_text("a: 1\n")
    (tmp_path / "sentinel.txt").write_text("beside it\n")
    exp = _experiment(tmp_path / "exp.yaml", target, prepare=prepare)
    expect_exit2(["run", str(exp), "--storage", str(tmp_path / "runs")], "is a file",
                 untouched=[target, tmp_path / "sentinel.txt"])


def test_prepare_overwrite_refuses_a_folder_that_is_not_a_shard_set(tmp_path: Path,
                                                                     expect_exit2: Callable[..., str]) -> None:
    folder = _users_folder(tmp_path)
    expect_exit2(["prepare", "volumes", "--synthetic", "12", "--voxel-mm", "8", "--out", str(folder),
                  "--overwrite"], "holds no shard set", untouched=[folder, tmp_path / "sentinel.txt"])
    expect_exit2(["prepare", "spectrograms", "--synthetic-lfp", "--out", str(folder), "--overwrite"],
                 "holds no shard set", untouched=[folder, tmp_path / "sentinel.txt"])


def test_prepare_eeg_refuses_a_non_shard_out_before_reading_any_recording(
        hbn_tree: Path, tmp_path: Path, expect_exit2: Callable[..., str]) -> None:
    folder = _users_folder(tmp_path)
    expect_exit2(["prepare", "eeg", "--bids", str(hbn_tree), "--out", str(folder), "--quiet"],
                 "holds no shard set", untouched=[folder, tmp_path / "sentinel.txt"])
    assert not list(tmp_path.glob(".*work*"))  # no work folder: refused before any recording was read


def test_synthetic_inputs_overwrite_keeps_a_folder_it_did_not_write(tmp_path: Path,
                                                                   expect_exit2: Callable[..., str]) -> None:
    inputs = _users_folder(tmp_path)
    expect_exit2(["prepare", "spectrograms", "--synthetic-lfp", "--inputs", str(inputs), "--out",
                  str(tmp_path / "lfp"), "--overwrite"], "not a folder of neuroray's synthetic inputs",
                 untouched=[inputs])


def test_data_prepare_into_an_empty_folder_still_prepares(tmp_path: Path) -> None:
    from neuroray.run.runner import _prepare
    from neuroray.search_spaces.schema import SyntheticEEG

    (tmp_path / "eeg").mkdir()
    _prepare(SyntheticEEG(**SYNTHETIC), tmp_path / "eeg", None)
    assert (tmp_path / "eeg" / "manifest.json").is_file()


# ---- D2: one safe path component; only neuroray's own run folders are removed -----------------------------

@pytest.mark.parametrize("name", [".", "..", ".hidden", "a/b", "../up", "..."])
def test_unsafe_experiment_names_are_refused(name: str, small_eeg: Path, tmp_path: Path,
                                             expect_exit2: Callable[..., str]) -> None:
    runs = tmp_path / "runs"
    (runs / "other").mkdir(parents=True)
    (runs / "other" / "results.csv").write_text("another experiment's results\n")
    (tmp_path / "sentinel.txt").write_text("beside the storage\n")
    exp = _experiment(tmp_path / "exp.yaml", small_eeg, name=name)
    expect_exit2(["validate", str(exp)], "name", "names the run folder")
    expect_exit2(["run", str(exp), "--storage", str(runs), "--overwrite"], "names the run folder",
                 untouched=[runs, tmp_path / "sentinel.txt"])


def test_overwrite_removes_only_a_neuroray_run_folder(small_eeg: Path, tmp_path: Path,
                                                      expect_exit2: Callable[..., str]) -> None:
    runs = tmp_path / "runs"
    folder = runs / "loss"
    folder.mkdir(parents=True)
    (folder / "my-analysis.ipynb").write_text("{}")
    exp = _experiment(tmp_path / "exp.yaml", small_eeg)
    expect_exit2(["run", str(exp), "--storage", str(runs), "--overwrite"], "not a neuroray run folder",
                 untouched=[runs])


# ---- D3: one live run per run folder ----------------------------------------------------------------------

def _wait_for(predicate: Callable[[], bool], seconds: float, what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the first run ended (exit {proc.returncode}) before {what}")
        time.sleep(0.2)
    raise AssertionError(f"no {what} after {seconds} s")


def test_a_second_concurrent_run_is_refused_within_seconds(small_eeg: Path, tmp_path: Path,
                                                           expect_exit2: Callable[..., str]) -> None:
    runs = tmp_path / "runs"
    exp = _experiment(tmp_path / "exp.yaml", small_eeg, epochs=30)
    log = (tmp_path / "first.log").open("wb")
    first = subprocess.Popen([sys.executable, "-m", "neuroray", "run", str(exp), "--storage", str(runs), "--quiet"],
                             cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                             env={**os.environ, "RAY_ADDRESS": ""})
    lock = runs / "loss" / LOCK_FILE
    try:
        _wait_for(lock.is_file, 60, "lock file", first)
        holder = json.loads(lock.read_text())
        assert holder["pid"] == first.pid and holder["host"] == socket.gethostname()
        started = time.time()
        for extra in ([], ["--overwrite"], ["--resume"]):
            line = expect_exit2(["run", str(exp), "--storage", str(runs), *extra], "another neuroray run",
                                f"pid {first.pid}")
            assert str(runs / "loss") in line
        assert time.time() - started < 10  # refused before Ray starts, three times over
        assert json.loads(lock.read_text())["pid"] == first.pid  # the first run's lock and folder stand
        # once Tune runs, SIGTERM takes the CLI's way out (Tune saves its state), which releases the lock
        _wait_for((runs / "loss" / "experiment.json").is_file, 120, "experiment.json", first)
        time.sleep(2)
    finally:
        # SIGTERM to the driver alone, as `kill PID` would: signalling the whole group would also end its Ray
        # head, and a driver whose GCS is gone aborts (its lock is then stale, taken over by the next run)
        first.send_signal(signal.SIGTERM)
        try:
            first.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(30)
        log.close()
    assert not lock.exists(), (tmp_path / "first.log").read_text()[-3000:]  # released on the way out


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    run_dir = tmp_path / "runs" / "loss"
    run_dir.mkdir(parents=True)
    (run_dir / LOCK_FILE).write_text(json.dumps({"pid": gone.pid, "host": socket.gethostname(),
                                                 "start_ticks": 1, "since": "then"}))
    with RunLock(run_dir) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not (run_dir / LOCK_FILE).exists()
    # a live holder on another host cannot be judged from here: refused, with the way out named
    (run_dir / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": "now"}))
    from neuroray.errors import NeurorayError

    with pytest.raises(NeurorayError, match="If that run is gone, delete"):
        RunLock(run_dir).acquire()
