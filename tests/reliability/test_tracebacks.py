"""Cases that used to end in a traceback (reliability issue D9): now one line and exit 2, nothing written."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from neuroray.datasets.shards import sha256_file


def _experiment(path: Path, shards: Path) -> Path:
    raw = {"name": "tb", "data": {"shards": str(shards)},
           "phases": [{"name": "fit", "trainable": "eeg_regressor", "target": "y", "epochs": 1, "batch_size": 16}]}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _manifest(shards: Path) -> dict[str, Any]:
    return json.loads((shards / "manifest.json").read_text())


MANIFEST_CASES = [  # (id, edit of the manifest (returns the new JSON value), fragments)
    ("a-list", lambda m: [m], ["manifest.json: a JSON list, not an object"]),
    ("no-modality", lambda m: {k: v for k, v in m.items() if k != "modality"}, ["manifest.json: lacks modality"]),
    ("empty-spec", lambda m: {**m, "spec": {}}, ["spec {} is not a eeg spec"]),
    ("rows-not-counts", lambda m: {**m, "rows": {**m["rows"], "train": "many"}},  # the typed Manifest
     ["manifest.json: rows.train: Input should be a valid integer"]),
    ("files-a-list", lambda m: {**m, "files": sorted(m["files"])}, ["manifest.json: files: Input should be a valid"]),
    ("spec-disagrees-with-data", lambda m: {**m, "spec": {**m["spec"], "n_times": 99}},  # issue 21 D8
     ["samples of shape (8, 100), the manifest's spec says (8, 99)"]),
]


@pytest.mark.parametrize(("edit", "fragments"), [c[1:] for c in MANIFEST_CASES], ids=[c[0] for c in MANIFEST_CASES])
def test_a_broken_manifest_is_one_line(edit: Callable[[dict[str, Any]], Any], fragments: list[str], small_eeg: Path,
                                       tmp_path: Path, expect_exit2: Callable[..., str]) -> None:
    shards = Path(shutil.copytree(small_eeg, tmp_path / "shards"))
    (shards / "manifest.json").write_text(json.dumps(edit(_manifest(shards))))
    expect_exit2(["run", str(_experiment(tmp_path / "exp.yaml", shards)), "--storage", str(tmp_path / "runs")],
                 *fragments, untouched=[shards])
    assert not (tmp_path / "runs").exists()


def _rewrite_parts(shards: Path, split: str, change: Callable[[pa.Table], pa.Table]) -> None:
    manifest = _manifest(shards)
    for rel in [r for r in manifest["files"] if r.startswith(f"{split}/")]:
        pq.write_table(change(pq.read_table(shards / rel)), shards / rel)
        manifest["files"][rel] = sha256_file(shards / rel)
        manifest["sizes"][rel] = (shards / rel).stat().st_size
    (shards / "manifest.json").write_text(json.dumps(manifest))


def test_x_of_another_dtype_is_one_line(small_eeg: Path, tmp_path: Path, expect_exit2: Callable[..., str]) -> None:
    shards = Path(shutil.copytree(small_eeg, tmp_path / "shards"))

    def as_float64(table: pa.Table) -> pa.Table:
        x = np.asarray(table.column("x").combine_chunks().to_numpy_ndarray(), dtype=np.float64)
        typ = pa.fixed_shape_tensor(pa.float64(), list(x.shape[1:]))
        arr = pa.ExtensionArray.from_storage(typ, pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)),
                                                                                    int(np.prod(x.shape[1:]))))
        return table.set_column(table.schema.get_field_index("x"), "x", arr)

    _rewrite_parts(shards, "train", as_float64)
    expect_exit2(["run", str(_experiment(tmp_path / "exp.yaml", shards)), "--storage", str(tmp_path / "runs")],
                 "column x is", "float32 tensor column")


def test_a_target_with_no_value_in_val_is_one_line(small_eeg: Path, tmp_path: Path,
                                                   expect_exit2: Callable[..., str]) -> None:
    shards = Path(shutil.copytree(small_eeg, tmp_path / "shards"))
    _rewrite_parts(shards, "val", lambda t: t.set_column(t.schema.get_field_index("y"), "y",
                                                         pa.array([None] * len(t), type=pa.float32())))
    expect_exit2(["run", str(_experiment(tmp_path / "exp.yaml", shards)), "--storage", str(tmp_path / "runs")],
                 "phases.fit.target: column 'y' has no value in the val split")


def test_run_json_that_is_not_an_object(demo_smoke_run: Path, tmp_path: Path,
                                        expect_exit2: Callable[..., str]) -> None:
    run = Path(shutil.copytree(demo_smoke_run, tmp_path / "run", ignore=shutil.ignore_patterns("export*")))
    (run / "run.json").write_text("[1, 2]")
    expect_exit2(["report", str(run)], "run.json: a JSON list, not an object")
    (run / "run.json").write_text('{"name": "demo-smo')
    expect_exit2(["report", str(run)], "run.json: not valid JSON")
    expect_exit2(["export", str(run)], "run.json: not valid JSON")


def test_out_paths_that_cannot_be(demo_smoke_run: Path, tmp_path: Path, expect_exit2: Callable[..., str]) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("in the way\n")
    expect_exit2(["export", str(demo_smoke_run), "--out", str(a_file)], "a file is in the way", untouched=[a_file])
    expect_exit2(["export", str(demo_smoke_run), "--out", str(a_file / "x")], "is a file, not a folder")
    expect_exit2(["report", str(demo_smoke_run), "--out", str(a_file / "x")], "is a file, not a folder")
    expect_exit2(["predict", str(tmp_path / "model.onnx"), str(tmp_path), "--out", str(a_file / "p.parquet")],
                 "is a file, not a folder")
    expect_exit2(["predict", str(tmp_path / "model.onnx"), str(tmp_path), "--out", str(tmp_path)],
                 "is a folder; give a file path")


def test_counts_and_rates_out_of_range(tmp_path: Path, expect_exit2: Callable[..., str]) -> None:
    expect_exit2(["bench-model", str(tmp_path / "model.onnx"), "--batch", "100000000"],
                 "--batch 100000000: must be between 1 and 65536")
    expect_exit2(["prepare", "eeg", "--synthetic-hbn", "4", "--synthetic-sfreq", "-100", "--out",
                  str(tmp_path / "bids")], "--synthetic-sfreq -100.0: must be > 0 Hz")
    assert not (tmp_path / "bids").exists()


def test_run_json_missing_a_key(demo_smoke_run: Path, tmp_path: Path, expect_exit2: Callable[..., str]) -> None:
    """run.json is parsed once into a typed RunInfo: a key removed or of the wrong kind is one line naming it."""
    run = Path(shutil.copytree(demo_smoke_run, tmp_path / "run", ignore=shutil.ignore_patterns("export*")))
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({k: v for k, v in info.items() if k != "metric"}))
    expect_exit2(["report", str(run)], "run.json: metric: Field required")
    (run / "run.json").write_text(json.dumps({**info, "mode": "best"}))
    expect_exit2(["export", str(run)], "run.json: mode: Input should be 'min' or 'max'")
