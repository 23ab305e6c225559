"""Twelve hparam/column mistakes across the trainables (layout issue, item 3): `neuroray validate` and `neuroray
run` exit 2 with one line naming the file, the arm and phase, and the key; no Ray process is started, and a
fresh process says so within seconds. Model-construction mistakes (a patch larger than the spectrogram, more
trials than the sequences hold) are found by building each resolved arm once for the shard set's windows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fresh_process import refused_in_a_fresh_process

SEARCH = {"num_samples": 1, "space": {"lr": "loguniform(1e-3, 1e-2)"}}
EEG = {"name": "fit", "trainable": "eeg_regressor", "target": "y", "epochs": 1, "batch_size": 16}
VIT = {"name": "fit", "trainable": "temporal_vit", "target": "label", "epochs": 1, "batch_size": 8,
       "hparams": {"embed_dim": 16, "depth": 1, "n_heads": 2, "freq_patch": 3, "time_patch": 2}}
VAE = {"name": "fit", "trainable": "vae3d", "epochs": 1, "batch_size": 4,
       "hparams": {"latent_dim": 4, "base_channels": 4, "depth": 1}}


def _hp(base: dict[str, Any], **values: Any) -> dict[str, Any]:
    return {**base, "hparams": {**base.get("hparams", {}), **values}}


# (id, data fixture, phase, search space extra, fragments of the error line besides the file name)
CASES: list[tuple[str, str, dict[str, Any], dict[str, str], list[str]]] = [
    ("n_filters-0", "small_eeg", _hp(EEG, n_filters=0), {}, ["phases.fit (arm a).hparams.n_filters: 0 must be >= 1"]),
    ("dropout-1.5", "small_eeg", _hp(EEG, dropout=1.5), {}, ["phases.fit (arm a).hparams.dropout: 1.5 must be >= 0 and < 1"]),
    ("lr-negative", "small_eeg", _hp(EEG, lr=-0.01), {}, ["phases.fit (arm a).hparams.lr: -0.01 must be > 0"]),
    ("depth-0", "volumes", _hp(VAE, depth=0), {}, ["phases.fit (arm a).hparams.depth: 0 must be >= 1"]),
    ("embed-dim-not-divisible", "spectrograms", _hp(VIT, embed_dim=30, n_heads=4), {},
     ["phases.fit (arm a).hparams", "embed_dim", "not divisible by n_heads"]),
    ("patch-larger-than-input", "spectrograms", _hp(VIT, freq_patch=64), {},
     ["phases.fit (arm a).hparams.freq_patch 64", "larger than the axis it patches (51)"]),
    ("aux-target-unknown", "small_eeg", {**EEG, "aux": {"target": "p_factr"}}, {},
     ["phases.fit (arm a).hparams.aux_target: column 'p_factr' is not in"]),
    ("cond-column-unknown", "volumes", _hp(VAE, cond_columns="year,nope"), {},
     ["phases.fit (arm a).hparams.cond_columns: column 'nope' is not in"]),
    ("target-string-column", "small_eeg", {**EEG, "target": "subject"}, {},
     ["phases.fit (arm a).target: column 'subject' holds string"]),
    ("n-trials-beyond-the-shards", "spectrograms", _hp(VIT, n_trials=12), {},
     ["phases.fit (arm a).hparams.n_trials 12", "sequences of 8 trials"]),
    ("encoder-misspelled", "small_eeg", _hp(EEG, encoder="eegnexx"), {},
     ["phases.fit (arm a).hparams.encoder: 'eegnexx' is not one of"]),
    ("search-key-not-taken", "small_eeg", EEG, {"n_filterz": "int(8, 16)"},
     ["search.space.n_filterz: no phase's trainable has a hyper-parameter"]),
]


@pytest.fixture(scope="module")
def spectrograms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from neuroray.cli import main

    root = tmp_path_factory.mktemp("spec")
    assert main(["prepare", "spectrograms", "--synthetic-lfp", "--inputs", str(root / "in"),
                 "--out", str(root / "lfp")]) == 0
    return root / "lfp"


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from neuroray.cli import main

    out = tmp_path_factory.mktemp("vol") / "v"
    assert main(["prepare", "volumes", "--synthetic", "12", "--voxel-mm", "4", "--out", str(out)]) == 0
    return out


def _raylets() -> set[int]:
    """Pids of the raylet processes on this machine (Linux /proc)."""
    found = set()
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "raylet":
                found.add(int(comm.parent.name))
        except OSError:  # the process ended meanwhile
            continue
    return found


def _write(path: Path, shards: Path, phase: dict[str, Any], space: dict[str, str]) -> Path:
    raw = {"name": "mistake", "data": {"shards": str(shards)}, "phases": [phase],
           "matrix": {"arm": {"a": {}, "b": {"phases.fit.epochs": 2}}},
           "search": {**SEARCH, "space": {**SEARCH["space"], **space}}}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.parametrize(("data", "phase", "space", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_mistake_is_one_line_before_ray(data: str, phase: dict[str, Any], space: dict[str, str],
                                        fragments: list[str], request: pytest.FixtureRequest, tmp_path: Path,
                                        expect_exit2: Callable[..., str]) -> None:
    shards = request.getfixturevalue(data)
    exp = _write(tmp_path / "exp.yaml", shards, phase, space)
    runs = tmp_path / "runs"
    raylets = _raylets()
    for argv in (["validate", str(exp)], ["run", str(exp), "--storage", str(runs)]):
        line = expect_exit2(argv, str(exp), *fragments)
        assert "(arm a)" in line or "(arm b)" in line or "search.space" in line, line  # names the arm
    assert _raylets() <= raylets, "a Ray process was started"
    assert not (runs / "mistake").exists()


def test_construction_mistake_in_a_fresh_process_within_seconds(spectrograms: Path, tmp_path: Path) -> None:
    """A fresh `neuroray run`: exit 2 in under 15 s, one line, and no raylet came up."""
    exp = _write(tmp_path / "vit.yaml", spectrograms, _hp(VIT, freq_patch=64), {})
    raylets = _raylets()
    lines = refused_in_a_fresh_process(exp, tmp_path / "runs")
    assert len(lines) == 1 and "phases.fit (arm a).hparams.freq_patch 64" in lines[0], lines
    assert _raylets() <= raylets


def test_an_encoder_too_big_for_the_windows_is_one_line(tmp_path: Path, expect_exit2: Callable[..., str]) -> None:
    """braindecode's EEGNeX on 1-channel, 8-sample windows: its own shape error, caught at build time."""
    from neuroray.datasets.synthetic import write_synthetic_eeg

    write_synthetic_eeg(tmp_path / "tiny", n_subjects=4, windows_per_subject=8, n_chans=1, n_times=8)
    exp = _write(tmp_path / "exp.yaml", tmp_path / "tiny", _hp(EEG, encoder="eegnex"), {})
    expect_exit2(["validate", str(exp)], str(exp), "phases.fit (arm a).hparams.encoder 'eegnex'",
                 "cannot take windows of 1 channels x 8 samples")
