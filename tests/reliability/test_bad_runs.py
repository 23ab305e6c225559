"""Bad experiment files, storage and shard sets given to `neuroray run`: exit 2, one line naming the
file/key/value and what is allowed, and no run folder (a config error writes nothing at all).

Shard-set cases corrupt a copy of the session's planted-signal set (conftest ``small_eeg``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from neuroray.cli import main

NAME = "rel"


def _experiment(shards: Path, edit: Callable[[dict[str, Any]], object] | None = None) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": NAME, "data": {"shards": str(shards)},
        "phases": [{"name": "fit", "trainable": "eeg_regressor", "target": "y", "epochs": 1, "batch_size": 16}],
        "search": {"num_samples": 1, "space": {"lr": "loguniform(1e-3, 1e-2)"}},
    }
    if edit is not None:
        edit(raw)
    return raw


def _write(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture
def shards(small_eeg: Path, tmp_path: Path) -> Path:
    """A private copy of the session's shard set, to break."""
    return Path(shutil.copytree(small_eeg, tmp_path / "shards"))


def test_the_base_experiment_is_valid(tmp_path: Path, small_eeg: Path) -> None:
    # Every case below is this file with one thing broken.
    assert main(["validate", str(_write(tmp_path, _experiment(small_eeg)))]) == 0


# ---- the experiment file: refused before Ray starts or anything is written --------------------------------

CONFIGS = [  # (id, edit of the base experiment, fragments of the error line)
    ("unknown-key", lambda r: r["phases"][0].update(epochz=3),
     ["unknown key 'phases.fit.epochz'; allowed here: name, trainable, epochs"]),
    ("unknown-trainable", lambda r: r["phases"][0].update(trainable="eeg_regresor"),
     ["unknown trainable 'eeg_regresor'; available: ", "eeg_regressor"]),
    ("bounds-low-above-high", lambda r: r["search"]["space"].update(lr="uniform(0.1, 0.01)"),
     ["search.space.lr: low 0.1 > high 0.01", "the lower bound comes first"]),
    ("loguniform-bound-not-positive", lambda r: r["search"]["space"].update(lr="loguniform(0, 0.1)"),
     ["search.space.lr: loguniform bounds must be > 0; got low=0"]),
    ("from-missing-phase", lambda r: r["phases"][0].update({"from": "pretrain"}),
     ["phases.fit.from: 'pretrain' is not an earlier phase"]),
    ("wrong-type", lambda r: r["phases"][0].update(epochs="many"),
     ["phases.fit.epochs: Input should be a valid integer"]),
    ("unknown-distribution", lambda r: r["search"]["space"].update(lr="lognormal(1, 2)"),
     ["search.space.lr: unknown distribution 'lognormal'; allowed: "]),
    # optuna refuses a step <= 0 with a ValueError; 2.5 used to be truncated to 2 without a word
    ("int-step-zero", lambda r: r["search"]["space"].update(n_filters="int(8, 32, 0)"),
     ["search.space.n_filters: the step of int(low, high, step) must be a whole number >= 1; got 0"]),
    ("int-step-negative", lambda r: r["search"]["space"].update(n_filters="int(8, 32, -4)"),
     ["search.space.n_filters: the step of int(low, high, step) must be a whole number >= 1; got -4"]),
    ("int-step-fraction", lambda r: r["search"]["space"].update(n_filters="int(8, 32, 2.5)"),
     ["search.space.n_filters: the step of int(low, high, step) must be a whole number >= 1; got 2.5"]),
    # Ray's own resource names there would double-book the trial; refused by the schema, before Ray starts
    ("driver-resources-cpu", lambda r: r.update(resources={"driver_resources": {"cpu": 1, "trial_driver": 1}}),
     ["resources.driver_resources: cpu is not a custom resource; set cpus_per_worker / gpus_per_worker instead"]),
    ("one-fold", lambda r: r.update(matrix={"folds": 1}), ["matrix.folds", "greater than or equal to 2"]),
    ("scheduler-scope", lambda r: r.update(scheduler={"type": "asha", "scope": "foo"}),
     ["scheduler.scope", "'cell', 'arm' or 'global'"]),
]


@pytest.mark.parametrize(("edit", "fragments"), [c[1:] for c in CONFIGS], ids=[c[0] for c in CONFIGS])
def test_bad_experiment_file(edit: Callable[[dict[str, Any]], object], fragments: list[str], small_eeg: Path,
                             tmp_path: Path, expect_exit2: Callable[..., str]) -> None:
    path = _write(tmp_path, _experiment(small_eeg, edit))
    storage = tmp_path / "runs"
    expect_exit2(["run", str(path), "--storage", str(storage)], f"{path}", *fragments, untouched=[storage])


@pytest.mark.parametrize(("edit", "fragments"), [c[1:] for c in CONFIGS if c[0].startswith(("int-step", "driver"))],
                         ids=[c[0] for c in CONFIGS if c[0].startswith(("int-step", "driver"))])
def test_validate_refuses_them_too(edit: Callable[[dict[str, Any]], object], fragments: list[str], small_eeg: Path,
                                   tmp_path: Path, expect_exit2: Callable[..., str]) -> None:
    """`neuroray validate` reports what `run` would fail on later (these once got past it)."""
    path = _write(tmp_path, _experiment(small_eeg, edit))
    expect_exit2(["validate", str(path)], f"{path}", *fragments)


def test_yaml_syntax_error(tmp_path: Path, expect_exit2: Callable[..., str]) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(f"name: {NAME}\nphases: [\n  {{name: fit\n")
    storage = tmp_path / "runs"
    expect_exit2(["run", str(path), "--storage", str(storage)], f"{path}:", "YAML syntax error", untouched=[storage])


def test_yaml_python_tags_are_refused(tmp_path: Path, expect_exit2: Callable[..., str]) -> None:
    """Safe loading: a `!!python/...` tag is never constructed (no code runs), the file is refused."""
    marker = tmp_path / "pwned"
    path = tmp_path / "exp.yaml"
    path.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\ndata: {{shards: x}}\n")
    storage = tmp_path / "runs"
    expect_exit2(["run", str(path), "--storage", str(storage)], f"{path}:1:", "YAML tag not allowed",
                 "python/object/apply:os.system", "experiment files are plain YAML", untouched=[storage])
    assert not marker.exists()


def test_experiment_file_missing(tmp_path: Path, expect_exit2: Callable[..., str]) -> None:
    expect_exit2(["run", str(tmp_path / "nope.yaml")], f"{tmp_path / 'nope.yaml'}: experiment file not found")


def test_storage_not_writable(small_eeg: Path, tmp_path: Path, expect_exit2: Callable[..., str]) -> None:
    blocker = tmp_path / "a-file"  # a folder below a regular file cannot be made, even by root
    blocker.write_text("not a folder")
    path = _write(tmp_path, _experiment(small_eeg))
    expect_exit2(["run", str(path), "--storage", str(blocker / "runs")],
                 f"--storage {blocker / 'runs'}: not writable", "choose a folder you can write", untouched=[blocker])


def test_cli_process_exits_2_without_traceback(small_eeg: Path, tmp_path: Path) -> None:
    """The same contract from a real `python -m neuroray` process (exit status, stderr)."""
    path = _write(tmp_path, _experiment(small_eeg, lambda r: r["phases"][0].update(epochz=3)))
    proc = subprocess.run([sys.executable, "-m", "neuroray", "run", str(path), "--storage", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: unknown key 'phases.fit.epochz'; allowed here: ")
    assert not (tmp_path / "runs").exists()


# ---- the shard set: verified before any trial starts -------------------------------------------------------


def _first_part(shards: Path) -> Path:
    return sorted((shards / "train").glob("*.parquet"))[0]


def _run_on(shards: Path, tmp_path: Path, expect_exit2: Callable[..., str], *fragments: str,
            edit: Callable[[dict[str, Any]], object] | None = None) -> str:
    path = _write(tmp_path, _experiment(shards, edit))
    storage = tmp_path / "runs"
    return expect_exit2(["run", str(path), "--storage", str(storage), "--quiet"], *fragments,
                        untouched=[storage / NAME, shards])


def test_corrupt_parquet_shard(shards: Path, ray_session: None, tmp_path: Path,
                               expect_exit2: Callable[..., str]) -> None:
    part = _first_part(shards)
    data = part.read_bytes()
    part.write_bytes(data[:-8] + b"XXXXXXXX")  # footer damaged, size unchanged
    _run_on(shards, tmp_path, expect_exit2, f"{part}: checksum differs from manifest.json", "Re-run `neuroray prepare`")
    # data.verify: size (no hashing) still refuses it, by reading the Parquet footer
    _run_on(shards, tmp_path, expect_exit2, f"{part}: not a readable Parquet file", "the shard is corrupt",
            edit=lambda r: r["data"].update(verify="size"))
    part.write_bytes(data[: len(data) // 2])  # cut short
    _run_on(shards, tmp_path, expect_exit2, f"{part}: {len(data) // 2} bytes, manifest.json says {len(data)}",
            edit=lambda r: r["data"].update(verify="size"))


def test_manifest_checksum_no_longer_matches(shards: Path, ray_session: None, tmp_path: Path,
                                            expect_exit2: Callable[..., str]) -> None:
    manifest = json.loads((shards / "manifest.json").read_text())
    rel = sorted(manifest["files"])[-1]
    manifest["files"][rel] = "0" * 64
    (shards / "manifest.json").write_text(json.dumps(manifest))
    _run_on(shards, tmp_path, expect_exit2, f"{shards.resolve() / rel}: checksum differs from manifest.json")


def test_shard_file_missing(shards: Path, ray_session: None, tmp_path: Path,
                            expect_exit2: Callable[..., str]) -> None:
    part = _first_part(shards)
    part.unlink()
    _run_on(shards, tmp_path, expect_exit2, f"{part.resolve()}: listed in manifest.json but missing")


def test_manifest_not_json(shards: Path, ray_session: None, tmp_path: Path, expect_exit2: Callable[..., str]) -> None:
    (shards / "manifest.json").write_text('{"schema_version": 1, "files": {')
    _run_on(shards, tmp_path, expect_exit2, f"{shards.resolve() / 'manifest.json'}: not valid JSON")


def test_no_shard_set_and_no_prepare(ray_session: None, tmp_path: Path, expect_exit2: Callable[..., str]) -> None:
    empty = tmp_path / "shards"
    empty.mkdir()
    _run_on(empty, tmp_path, expect_exit2, f"data.shards: {empty} has no shard set and the experiment has no "
            "data.prepare")


def test_shard_spec_differs_from_the_experiment(shards: Path, ray_session: None, tmp_path: Path,
                                               expect_exit2: Callable[..., str]) -> None:
    """data.prepare says 20 channels × 200 samples; the folder holds a set of 8 × 100: refused, not reused."""
    prepare = {"kind": "synthetic_eeg", "n_subjects": 8, "windows_per_subject": 40, "n_chans": 20, "n_times": 200}
    _run_on(shards, tmp_path, expect_exit2, f"data.shards: {shards.resolve()} was prepared differently from "
            "data.prepare: n_chans 8 (data.prepare: 20); n_times 100 (data.prepare: 200)", "Delete that folder",
            edit=lambda r: r["data"].update(prepare=prepare))


def test_shard_set_with_an_empty_val_split(ray_session: None, tmp_path: Path,
                                           expect_exit2: Callable[..., str]) -> None:
    """One ECoG session (the real sample in tests/data/lfp): prepare puts every row in train, val is empty.
    Refused when the shard set is opened, not by Ray Data's "Must provide at least one path" mid-run."""
    shards = tmp_path / "ecog"
    assert main(["prepare", "spectrograms", "--lfp", str(Path(__file__).parents[1] / "data" / "lfp"),
                 "--out", str(shards), "--n-trials", "2", "--nperseg", "250", "--fmax", "120"]) == 0
    assert json.loads((shards / "manifest.json").read_text())["rows"] == {"train": 5, "val": 0, "test": 0}

    def spectrogram_phase(r: dict[str, Any]) -> None:
        r["phases"][0].update(trainable="spectrogram_cnn", target="label")

    _run_on(shards, tmp_path, expect_exit2, f"data.shards: {shards.resolve()} has no rows in val;",
            "training needs rows in both train and val", "more subjects/sessions", edit=spectrogram_phase)


def test_shard_set_without_test_rows(shards: Path, ray_session: None, tmp_path: Path,
                                     expect_exit2: Callable[..., str]) -> None:
    """The report ranks arms on held-out test subjects: a set with none is refused before Ray starts, unless
    the experiment opts out with evaluate.test: false."""
    manifest = json.loads((shards / "manifest.json").read_text())
    for rel in [r for r in manifest["files"] if r.startswith("test/")]:
        (shards / rel).unlink()
        del manifest["files"][rel]
        manifest["sizes"].pop(rel, None)
    manifest["rows"]["test"] = 0
    (shards / "manifest.json").write_text(json.dumps(manifest))
    _run_on(shards, tmp_path, expect_exit2, f"data.shards: {shards.resolve()} has no rows in test;",
            "set evaluate.test: false")
    assert main(["validate", str(_write(tmp_path, _experiment(shards, lambda r: r.update(evaluate={"test": False}))))
                 ]) == 0


def test_more_folds_than_subjects(shards: Path, ray_session: None, tmp_path: Path,
                                  expect_exit2: Callable[..., str]) -> None:
    """8 subjects, one of them in test: 7 can fill at most 7 subject folds; refused before Ray starts."""
    _run_on(shards, tmp_path, expect_exit2, "matrix.folds: 9 folds, but the train+val splits of",
            "hold only 7 distinct subject values; use 2..7", edit=lambda r: r.update(matrix={"folds": 9}))


def test_target_column_not_in_the_shards(shards: Path, ray_session: None, tmp_path: Path,
                                         expect_exit2: Callable[..., str]) -> None:
    _run_on(shards, tmp_path, expect_exit2, f"phases.fit.target: column 'rt' is not in {shards}; columns: y",
            edit=lambda r: r["phases"][0].update(target="rt"))


def test_spectrogram_set_prepared_by_other_args(ray_session: None, tmp_path: Path,
                                                expect_exit2: Callable[..., str]) -> None:
    """A set made from data.prepare {kind: spectrograms, …} records its options (prepared_by.json); a run whose
    data.prepare names other options is refused instead of silently training on the old set. A record of the
    older ``args`` form reads as the same options."""
    from neuroray.run.runner import PREPARED_BY, ensure_shards
    from neuroray.search_spaces.experiment import load

    shards = tmp_path / "lfp"

    def prepare(n_trials: int) -> Callable[[dict[str, Any]], object]:
        def edit(r: dict[str, Any]) -> None:
            r["data"].update(prepare={"kind": "spectrograms", "synthetic_lfp": True, "n_trials": n_trials})
            r["phases"][0].update(trainable="spectrogram_cnn", target="label")
        return edit

    first = _write(tmp_path, _experiment(shards, prepare(2)))
    ensure_shards(load(first))
    recorded = json.loads((shards / PREPARED_BY).read_text())
    assert recorded["command"] == "neuroray prepare spectrograms"
    assert recorded["options"]["n_trials"] == 2 and recorded["options"]["synthetic_lfp"] is True
    assert ensure_shards(load(first)).root == str(shards)  # the same data.prepare: reused as it is
    (shards / PREPARED_BY).write_text(json.dumps(  # as a set prepared before typed keys recorded it
        {"command": "neuroray prepare spectrograms", "args": ["--synthetic-lfp", "--n-trials", "2"]}))
    assert ensure_shards(load(first)).root == str(shards)
    _run_on(shards, tmp_path, expect_exit2, f"data.shards: {shards} was prepared differently from data.prepare: "
            "n_trials 2 (data.prepare: 4)", edit=prepare(4))
