"""`neuroray run --resume` continues only the run it was started as: one clear line otherwise, nothing touched."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

NAME = "resume-guard"


def _write(path: Path, shards: Path, lr: str = "loguniform(1e-3, 1e-2)") -> Path:
    raw: dict[str, Any] = {
        "name": NAME, "data": {"shards": str(shards)},
        "phases": [{"name": "fit", "trainable": "eeg_regressor", "target": "y", "epochs": 1, "batch_size": 16}],
        "search": {"num_samples": 1, "space": {"lr": lr}},
    }
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _started_run(runs: Path, experiment: Path, smoke: bool = False) -> Path:
    """The folder an interrupted `neuroray run` leaves: its experiment.json (Tune's state is not reached)."""
    from neuroray.run.runner import EXPERIMENT_FILE, _identity
    from neuroray.search_spaces.experiment import load

    run = runs / NAME
    run.mkdir(parents=True)
    (run / EXPERIMENT_FILE).write_text(json.dumps(_identity(load(experiment, smoke=smoke))))
    (run / "tuner.pkl").write_bytes(b"state")
    return run


def test_resume_of_a_changed_experiment_file_is_refused(small_eeg: Path, tmp_path: Path,
                                                        expect_exit2: Callable[..., str]) -> None:
    runs = tmp_path / "runs"
    run = _started_run(runs, _write(tmp_path / "a.yaml", small_eeg))
    edited = _write(tmp_path / "b.yaml", small_eeg, lr="loguniform(1e-4, 1e-2)")
    expect_exit2(["run", str(edited), "--storage", str(runs), "--resume"], str(run), "differs from the experiment",
                 "search", "--overwrite", untouched=[run])


def test_resume_of_a_folder_with_no_started_run_is_refused(small_eeg: Path, tmp_path: Path,
                                                           expect_exit2: Callable[..., str]) -> None:
    runs = tmp_path / "runs"
    (runs / NAME).mkdir(parents=True)
    (runs / NAME / "notes.txt").write_text("someone else's folder")
    expect_exit2(["run", str(_write(tmp_path / "a.yaml", small_eeg)), "--storage", str(runs), "--resume"],
                 "no interrupted neuroray run", untouched=[runs / NAME])
    expect_exit2(["run", str(_write(tmp_path / "a.yaml", small_eeg)), "--storage", str(tmp_path / "none"),
                  "--resume"], "does not exist", "no run of")


def test_resume_and_overwrite_exclude_each_other(small_eeg: Path, tmp_path: Path,
                                                 expect_exit2: Callable[..., str]) -> None:
    runs = tmp_path / "runs"
    run = _started_run(runs, _write(tmp_path / "a.yaml", small_eeg))
    expect_exit2(["run", str(tmp_path / "a.yaml"), "--storage", str(runs), "--resume", "--overwrite"],
                 "--resume and --overwrite", untouched=[run])
