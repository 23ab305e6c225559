"""D5: a full disk under --storage (reliability issue). A 2 MB tmpfs stands in for it (skipped where this
process may not mount one, e.g. without root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _run(exp: Path, storage: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "neuroray", "run", str(exp), "--storage", str(storage), "--quiet",
                           *extra], capture_output=True, text=True, timeout=600, env={**os.environ, "RAY_ADDRESS": ""})


@pytest.mark.slow
def test_full_disk_is_one_line_and_the_run_resumes_after_space_is_freed(small_eeg: Path, small_disk: Path,
                                                                        tmp_path: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({
        "name": "full", "data": {"shards": str(small_eeg)},
        "phases": [{"name": "fit", "trainable": "eeg_regressor", "target": "y", "epochs": 6, "batch_size": 16,
                    "hparams": {"n_filters": 64}}],
        "search": {"num_samples": 4, "space": {"lr": "loguniform(1e-3, 1e-2)"}}}))
    sentinel = small_disk / "sentinel.txt"
    sentinel.write_text("beside the storage\n")
    storage = small_disk / "runs"
    first = _run(exp, storage)
    assert first.returncode == 2, first.stderr[-3000:]
    own = [line for line in first.stderr.splitlines() if line.startswith("error: ")]
    assert own == [own[-1]] and f"--storage {storage}: no space left on device" in own[0], first.stderr[-3000:]
    # Ray's records of the same ENOSPC (each trial's, the state syncer's) are kept out of the log: one line
    assert "Traceback" not in first.stderr and " ERROR " not in first.stderr, first.stderr[-3000:]
    driver_lines = [line for line in first.stderr.splitlines() if line and "pid=" not in line]  # not workers' logs
    assert driver_lines[-1] == own[0], driver_lines[-5:]
    assert sentinel.read_text() == "beside the storage\n"
    run = storage / "full"
    (state,) = run.glob("experiment_state-*.json")
    # the worst a full disk leaves: Tune's state cut short (a backup of it was kept atomically)
    state.write_bytes(state.read_bytes()[:1000])
    with pytest.raises(json.JSONDecodeError):
        json.loads(state.read_text())
    subprocess.run(["mount", "-o", "remount,size=300m", str(small_disk)], check=True)  # space freed
    second = _run(exp, storage, "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    trials = pd.read_csv(run / "results.csv")
    assert len(trials) == 4 and (trials["status"] == "OK").all() and (trials["epochs"] == 6).all(), trials
    assert sentinel.read_text() == "beside the storage\n"


def test_only_full_disk_records_are_kept_out_of_the_log(capsys: pytest.CaptureFixture[str]) -> None:
    import errno
    import logging

    from neuroray.run_folder.full_disk import is_no_space, quiet_full_disk

    class Wrapped(Exception):  # stands in for Ray's RayTaskError around a trial's OSError
        pass

    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise Wrapped("ray::ImplicitFunc.train()") from inner
    except Wrapped as e:
        wrapped = e
    assert is_no_space(wrapped) and not is_no_space(ValueError("bad lr"))
    log = logging.getLogger("ray.tune.execution.tune_controller")
    handler = logging.StreamHandler(sys.stderr)
    logging.getLogger("ray").addHandler(handler)
    try:
        with quiet_full_disk():
            log.error("Trial task failed for trial t1", exc_info=(Wrapped, wrapped, wrapped.__traceback__))
            logging.getLogger("ray.tune.tune").error("Trials did not complete: [t1]")
            log.error("Trial task failed for trial t2: ValueError: bad lr")
        logging.getLogger("ray.tune.tune").error("Trials did not complete: [t3]")  # after the block: shown
    finally:
        logging.getLogger("ray").removeHandler(handler)
    err = capsys.readouterr().err
    assert "t1" not in err and "Traceback" not in err
    assert "bad lr" in err and "Trials did not complete: [t3]" in err
