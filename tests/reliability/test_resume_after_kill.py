"""D4: after SIGKILL, `--resume` keeps every trial (reliability issue), and D14: no epoch twice in the history.

A real `python -m neuroray run` in its own process group is SIGKILLed (driver, Ray and trials at once, as a
crash would) while its trials train. Tune keeps one checkpoint plus the latest and deletes the older one
when the next registers; its snapshot is written after that, so a kill in between leaves a snapshot that
names a deleted checkpoint. The fast test makes that state for certain (it deletes the checkpoints the
snapshot names); the slow one kills at random moments five times over.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from neuroray.cli import main

NAME = "killed"
EPOCHS = 12


def _experiment(path: Path, shards: Path, samples: int, epochs: int = EPOCHS) -> Path:
    raw = {
        "name": NAME, "data": {"shards": str(shards)},
        "phases": [{"name": "fit", "trainable": "eeg_regressor", "target": "y", "epochs": epochs, "batch_size": 32}],
        "search": {"num_samples": samples, "space": {"lr": "loguniform(1e-3, 1e-2)"}},
        "scheduler": {"type": "none"},
    }
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _epochs_reported(run_dir: Path) -> list[int]:
    return [max(0, len(p.read_text().splitlines()) - 1) for p in run_dir.glob("*/progress.csv")]


def _start_and_kill(exp: Path, runs: Path, cwd: Path, resume: bool, after_epochs: int,
                    sig: signal.Signals = signal.SIGKILL) -> None:
    """Run (or resume) in a new process group; send ``sig`` to the whole group once a trial reported
    ``after_epochs`` more epochs than before (or when it ends by itself). SIGKILL: a crash; SIGINT: Ctrl-C in
    the terminal (the run saves its state and exits by itself)."""
    run_dir = runs / NAME
    before = max(_epochs_reported(run_dir), default=0)
    cmd = [sys.executable, "-m", "neuroray", "run", str(exp), "--storage", str(runs), "--quiet",
           *(["--resume"] if resume else [])]
    with (cwd / "killed.log").open("ab") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "RAY_ADDRESS": ""})
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if max(_epochs_reported(run_dir), default=0) >= before + after_epochs:
                break
            time.sleep(0.1)
        ended = proc.poll()
        if ended is None:
            os.killpg(proc.pid, sig)
            code = proc.wait(120)
            if sig == signal.SIGINT:
                assert code == 130, (cwd / "killed.log").read_text()[-3000:]
            if sig != signal.SIGKILL:  # what the run left behind dies with it, as it would with the terminal
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        assert ended in (None, 0), (cwd / "killed.log").read_text()[-3000:]


def _snapshot_checkpoints(run_dir: Path) -> list[Path]:
    """The "latest checkpoint" of each unfinished trial in Tune's newest snapshot."""
    import pyarrow.fs as pafs

    from neuroray.run import ray_compat

    newest = ray_compat.newest_experiment_state(str(run_dir), pafs.LocalFileSystem())
    assert newest is not None, "no Tune snapshot was written before the kill"
    found = []
    for trial_json, meta_json in json.loads(Path(newest).read_text())["trial_data"]:
        if json.loads(trial_json)["status"] == "TERMINATED":
            continue
        manager = ray_compat.load_run_metadata(meta_json).checkpoint_manager
        latest = manager.latest_checkpoint_result if manager else None
        if latest is not None and latest.checkpoint is not None:
            found.append(Path(latest.checkpoint.path))
    return found


def _check_every_trial_finished(run_dir: Path, n_trials: int, epochs: int = EPOCHS) -> None:
    trials = pd.read_csv(run_dir / "results.csv")
    assert len(trials) == n_trials, trials
    assert (trials["status"] == "OK").all(), trials[["trial_id", "status", "error"]].to_string()
    assert (trials["epochs"] == epochs).all(), trials[["trial_id", "epochs"]]
    history = pd.read_parquet(run_dir / "history.parquet")
    per_trial = history.groupby("trial_id")["training_iteration"]
    assert (per_trial.nunique() == per_trial.size()).all(), "an epoch appears twice in history.parquet"
    assert (per_trial.max() == epochs).all()
    _check_study_holds_each_trial_once(run_dir, trials)


def _check_study_holds_each_trial_once(run_dir: Path, trials: pd.DataFrame) -> None:
    """optuna.journal: the cell's study has exactly the run's trials, each COMPLETE with its lr, none twice."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(run_dir / "optuna.journal")))
    study = optuna.load_study(study_name="default-s0", storage=storage)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE"] * len(trials), states
    assert sorted(t.params["lr"] for t in study.trials) == pytest.approx(sorted(trials["param.lr"]))


def test_resume_recovers_a_trial_whose_snapshot_checkpoint_was_deleted(
        ray_session: None, small_eeg: Path, tmp_path: Path) -> None:
    exp = _experiment(tmp_path / "exp.yaml", small_eeg, samples=2)
    runs = tmp_path / "runs"
    _start_and_kill(exp, runs, tmp_path, resume=False, after_epochs=4)
    named = [p for p in _snapshot_checkpoints(runs / NAME) if p.exists()]
    assert named, (tmp_path / "killed.log").read_text()[-3000:]
    for path in named:  # the state a kill between Tune's delete and its snapshot leaves
        shutil.rmtree(path)
    assert main(["run", str(exp), "--storage", str(runs), "--resume", "--quiet"]) == 0
    _check_every_trial_finished(runs / NAME, 2)


@pytest.mark.slow  # ~75 s; the SIGKILL test above checks the journal the same way in the default run
def test_ctrl_c_then_resume_keeps_every_trial_and_each_study_trial_once(small_eeg: Path, tmp_path: Path) -> None:
    """SIGINT to the run's process group (Ctrl-C) mid-training: exit 130 with Tune's state saved; --resume
    finishes every trial, and the cell's Optuna study holds each of them exactly once, COMPLETE."""
    exp = _experiment(tmp_path / "exp.yaml", small_eeg, samples=2)
    runs = tmp_path / "runs"
    _start_and_kill(exp, runs, tmp_path, resume=False, after_epochs=3, sig=signal.SIGINT)
    done = subprocess.run([sys.executable, "-m", "neuroray", "run", str(exp), "--storage", str(runs), "--resume",
                           "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "RAY_ADDRESS": ""})
    assert done.returncode == 0, done.stderr[-3000:]
    _check_every_trial_finished(runs / NAME, 2)


@pytest.mark.slow  # keeps the default run under 20 minutes on 2 cores; `make test-all` runs it
def test_resume_that_cannot_recover_a_trial_says_so(ray_session: None, small_eeg: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A checkpoint that exists but cannot be loaded: the trial ends in ERROR and the resume exits 1."""
    exp = _experiment(tmp_path / "exp.yaml", small_eeg, samples=1)
    runs = tmp_path / "runs"
    _start_and_kill(exp, runs, tmp_path, resume=False, after_epochs=3)
    named = [p for p in _snapshot_checkpoints(runs / NAME) if p.exists()]
    assert named, (tmp_path / "killed.log").read_text()[-3000:]
    for path in runs.rglob("lightning.ckpt"):
        path.write_bytes(b"not a checkpoint")
    capsys.readouterr()
    assert main(["run", str(exp), "--storage", str(runs), "--resume", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "could not be recovered" in err, err[-2000:]


@pytest.mark.slow
def test_five_sigkill_and_resume_cycles_keep_every_trial(small_eeg: Path, tmp_path: Path) -> None:
    exp = _experiment(tmp_path / "exp.yaml", small_eeg, samples=4, epochs=30)
    runs = tmp_path / "runs"
    rng = random.Random(7)
    for cycle in range(5):
        _start_and_kill(exp, runs, tmp_path, resume=cycle > 0, after_epochs=rng.randint(1, 3))
    done = subprocess.run([sys.executable, "-m", "neuroray", "run", str(exp), "--storage", str(runs), "--resume",
                           "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "RAY_ADDRESS": ""})
    assert done.returncode == 0, done.stderr[-3000:]
    _check_every_trial_finished(runs / NAME, 4, epochs=30)
