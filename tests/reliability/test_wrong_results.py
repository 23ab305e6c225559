"""Wrong results that used to be reported as success (reliability issue D6)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from neuroray.cli import main
from neuroray.datasets.shards import sha256_file


def _experiment(path: Path, shards: Path) -> Path:
    raw = {"name": "wrong", "data": {"shards": str(shards)},
           "phases": [{"name": "fit", "trainable": "eeg_regressor", "target": "y", "epochs": 1, "batch_size": 16}]}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _rewrite(shards: Path, rel: str, table: pa.Table) -> None:
    """Replace one part and re-record its checksum and size, as an edit outside neuroray would leave it."""
    pq.write_table(table, shards / rel)
    manifest = json.loads((shards / "manifest.json").read_text())
    manifest["files"][rel] = sha256_file(shards / rel)
    manifest["sizes"][rel] = (shards / rel).stat().st_size
    (shards / "manifest.json").write_text(json.dumps(manifest))


def _first(shards: Path, split: str) -> str:
    return next(r for r in json.loads((shards / "manifest.json").read_text())["files"] if r.startswith(split))


def test_a_split_with_fewer_rows_than_the_manifest_says_is_refused(small_eeg: Path, tmp_path: Path,
                                                                  expect_exit2: Callable[..., str]) -> None:
    shards = Path(shutil.copytree(small_eeg, tmp_path / "shards"))
    rel = _first(shards, "val/")
    table = pq.read_table(shards / rel)
    _rewrite(shards, rel, table.slice(0, 0))  # a val part with 0 rows: val/nrmse came out 0.0, ranked best
    expect_exit2(["run", str(_experiment(tmp_path / "exp.yaml", shards)), "--storage", str(tmp_path / "runs")],
                 "split 'val' holds", "rows in its Parquet files", untouched=[shards])
    assert not (tmp_path / "runs" / "wrong").exists()


def test_nan_in_x_fails_the_trial_instead_of_an_ok_without_a_score(ray_session: None, small_eeg: Path,
                                                                    tmp_path: Path) -> None:
    shards = Path(shutil.copytree(small_eeg, tmp_path / "shards"))
    rel = _first(shards, "train/")
    table = pq.read_table(shards / rel)
    x = np.asarray(table.column("x").combine_chunks().to_numpy_ndarray(), dtype=np.float32).copy()
    x[3, 0, 5] = np.nan
    from neuroray.datasets.shards import tensor_array

    _rewrite(shards, rel, table.set_column(table.schema.get_field_index("x"), "x", tensor_array(x)))
    assert main(["run", str(_experiment(tmp_path / "exp.yaml", shards)), "--storage", str(tmp_path / "runs"),
                 "--quiet"]) == 1  # no trial finished
    trials = pd.read_csv(tmp_path / "runs" / "wrong" / "results.csv")
    assert (trials["status"] == "ERROR").all()
    assert trials["error"].str.contains("x holds NaN or inf values").all(), trials["error"].tolist()


def test_prepare_refuses_a_band_stop_posing_as_a_band_pass(hbn_tree: Path, tmp_path: Path,
                                                          expect_exit2: Callable[..., str]) -> None:
    out = tmp_path / "c1"
    expect_exit2(["prepare", "eeg", "--bids", str(hbn_tree), "--out", str(out), "--l-freq", "30", "--h-freq", "10",
                  "--quiet"], "--l-freq 30.0 >= --h-freq 10.0", "band-pass needs l_freq < h_freq")
    expect_exit2(["prepare", "eeg", "--bids", str(hbn_tree), "--out", str(out), "--sfreq", "-100", "--quiet"],
                 "--sfreq -100.0: must be > 0 Hz")
    assert not out.exists() and not list(tmp_path.glob(".*"))
