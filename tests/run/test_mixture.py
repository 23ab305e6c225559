"""Corpus mixtures (studies issue, item 2): `data.mix` reads several shard sets of one spec as one training
stream in proportion to their weights, every epoch drawn afresh; unlike specs are refused naming both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from neuroray.cli import main
from neuroray.datasets.shards import open_shard_set
from neuroray.datasets.synthetic import write_synthetic_eeg
from neuroray.run import ingest

SPEC = {"n_chans": 8, "n_times": 100, "sfreq": 100.0}


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A: a small corpus, B: a large one (same windows), F: the finetune set, C: 4-channel windows."""
    root = tmp_path_factory.mktemp("mix")
    write_synthetic_eeg(root / "A", n_subjects=8, windows_per_subject=40, seed=1, **SPEC)
    write_synthetic_eeg(root / "B", n_subjects=10, windows_per_subject=100, seed=2, **SPEC)
    write_synthetic_eeg(root / "F", n_subjects=6, windows_per_subject=10, seed=3, **SPEC)
    write_synthetic_eeg(root / "C", n_subjects=6, windows_per_subject=4, **{**SPEC, "n_chans": 4})
    return {p.name: p for p in root.iterdir()}


@pytest.mark.usefixtures("ray_session")
def test_each_epoch_holds_the_weighted_shares(sets: dict[str, Path]) -> None:
    a, b = open_shard_set(sets["A"]), open_shard_set(sets["B"])
    assert a.rows("train") < 0.3 * (a.rows("train") + b.rows("train"))  # A must be drawn from more than once
    data = ingest.mixture([a, b], [0.3, 0.7])
    epochs = []
    for _ in range(3):
        sources = np.concatenate([batch[ingest.MIX_SOURCE] for batch in
                                  data["train"].iter_batches(batch_size=256, batch_format="numpy")])
        epochs.append(sources)
    total = a.rows("train") + b.rows("train")
    for sources in epochs:
        share = float((sources == 0).mean())
        assert abs(share - 0.3) <= 0.05, share  # by windows, within ±5 percentage points
        assert abs(len(sources) - total) <= 0.1 * total
    assert not np.array_equal(epochs[0], epochs[1]) or len(epochs[0]) != len(epochs[1])  # drawn afresh
    val = np.concatenate([b[ingest.MIX_SOURCE] for b in data["val"].iter_batches(batch_format="numpy")])
    assert (val == 0).sum() == a.rows("val") and (val == 1).sum() == b.rows("val")  # pooled, every window once


def _experiment(tmp_path: Path, mix: list[dict[str, Any]], finetune: Path) -> Path:
    raw = {"name": "mixture", "data": {"shards": str(finetune)},
           "phases": [{"name": "pretrain", "trainable": "eeg_masked_pretrain", "epochs": 1, "batch_size": 64,
                       "data": {"mix": mix}, "hparams": {"encoder": "conv"}},
                      {"name": "finetune", "trainable": "eeg_regressor", "target": "y", "from": "pretrain",
                       "epochs": 1, "batch_size": 16, "hparams": {"encoder": "conv"}}]}
    path = tmp_path / "mixture.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.usefixtures("ray_session")
def test_a_pretraining_mixture_runs_and_is_recorded(sets: dict[str, Path], tmp_path: Path) -> None:
    path = _experiment(tmp_path, [{"shards": str(sets["A"]), "weight": 0.3},
                                  {"shards": str(sets["B"]), "weight": 0.7}], sets["F"])
    assert main(["run", str(path), "--storage", str(tmp_path / "runs"), "--quiet"]) == 0
    run = tmp_path / "runs" / "mixture"
    assert (pd.read_csv(run / "results.csv")["status"] == "OK").all()
    mix = json.loads((run / "data.json").read_text())["phases"]["default: pretrain"]["mix"]
    assert [(Path(m["shards"]).name, m["weight"]) for m in mix] == [("A", 0.3), ("B", 0.7)]
    assert [m["rows"]["train"] for m in mix] == [open_shard_set(sets[n]).rows("train") for n in "AB"]
    # validated pooled and per source: each source's own val score in the pretrain phase's record
    (meta,) = run.glob("checkpoints/*/pretrain/meta.json")
    metrics = json.loads(meta.read_text())["metrics"]
    assert {"val/recon", "val_source0/recon", "val_source1/recon"} <= set(metrics), sorted(metrics)


def test_a_mixture_of_unlike_specs_is_refused_naming_both(sets: dict[str, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = _experiment(tmp_path, [{"shards": str(sets["A"]), "weight": 0.5},
                                  {"shards": str(sets["C"]), "weight": 0.5}], sets["F"])
    assert main(["run", str(path), "--storage", str(tmp_path / "runs"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "phases.pretrain.data.mix[1]" in err, err
    assert str(sets["A"]) in err and str(sets["C"]) in err and "a mixture reads one spec" in err
    assert not (tmp_path / "runs").exists()


DATA = Path(__file__).resolve().parents[1] / "data" / "eeg"


@pytest.mark.slow  # two EEG prepares, ~45 s; the shares are tested above on synthetic sets
def test_a_tuh_style_edf_corpus_mixes_with_hbn(hbn_tree: Path, ray_session: None, tmp_path: Path) -> None:
    """The real clinical EDF (TUH-style 10-20 labels, 200 Hz) as a 4-subject BIDS corpus, brought to HBN's
    129 sensors through its own electrodes (`--channels hbn129 --channel-mode interpolate`), mixed 30/70
    with HBN windows of every task: one spec, the shares held."""
    tuh = tmp_path / "tuh"
    for i in range(1, 5):
        (tuh / f"sub-T{i:02d}" / "eeg").mkdir(parents=True)
        (tuh / f"sub-T{i:02d}" / "eeg" / f"sub-T{i:02d}_task-rest_eeg.edf").write_bytes(
            (DATA / "edf" / "chtypes_edf.edf").read_bytes())
    common = ["--target", "pretrain", "--sfreq", "100", "--h-freq", "40", "--quiet"]
    assert main(["prepare", "eeg", "--bids", str(tuh), "--out", str(tmp_path / "tuh-pre"), "--channels", "hbn129",
                 "--channel-mode", "interpolate", *common]) == 0
    subjects = sorted(p.name[4:] for p in hbn_tree.glob("sub-*"))[:6]
    assert main(["prepare", "eeg", "--bids", str(hbn_tree), "--out", str(tmp_path / "hbn-pre"), "--subjects",
                 ",".join(subjects), *common]) == 0
    t, h = open_shard_set(tmp_path / "tuh-pre"), open_shard_set(tmp_path / "hbn-pre")
    assert t.spec.sample_shape == h.spec.sample_shape == (129, 200) and t.spec.sfreq == h.spec.sfreq
    from neuroray.datasets.shards import tensor_column_to_numpy

    x = tensor_column_to_numpy(t.read_split("train", ["x"])["x"])
    assert (np.abs(x).reshape(len(x), 129, -1).max(axis=2) > 0).mean() > 0.95  # interpolated, not zero-padded
    data = ingest.mixture([t, h], [0.3, 0.7])
    for _ in range(3):
        sources = np.concatenate([b[ingest.MIX_SOURCE] for b in
                                  data["train"].iter_batches(batch_size=256, batch_format="numpy")])
        assert abs(float((sources == 0).mean()) - 0.3) <= 0.05
