import json
from pathlib import Path

import numpy as np
import pytest

from neuroray.datasets.shards import ShardSetWriter, open_shard_set, tensor_column_to_numpy
from neuroray.datasets.spec import EEGWindowSpec
from neuroray.datasets.splits import split_groups
from neuroray.errors import NeurorayError, ShardSetError


def _write(out: Path) -> tuple[np.ndarray, EEGWindowSpec]:
    spec = EEGWindowSpec(n_chans=3, n_times=10, sfreq=50.0)
    x = np.random.default_rng(0).standard_normal((12, 3, 10)).astype(np.float32)
    w = ShardSetWriter(out, spec, rows_per_file=5, preprocessing=[{"step": "filter", "l_freq": 1.0}])
    w.write("train", x[:8], {"y": np.arange(8, dtype=np.float32), "subject": ["a"] * 4 + ["b"] * 4})
    w.write("val", x[8:], {"y": np.arange(4, dtype=np.float32), "subject": ["c"] * 4})
    w.commit(normalization={"from": "train", "mean": [0.0] * 3, "std": [1.0] * 3})
    return x, spec


def test_round_trip_and_manifest(tmp_path: Path) -> None:
    x, spec = _write(tmp_path / "set")
    s = open_shard_set(tmp_path / "set", expect_spec=spec)
    got = tensor_column_to_numpy(s.read_split("train")["x"])
    np.testing.assert_array_equal(got, x[:8])
    m = s.manifest
    assert m["rows"] == {"train": 8, "val": 4, "test": 0}
    assert m["columns"]["x"] == {"dtype": "float", "shape": [3, 10]}
    assert m["preprocessing"] == [{"step": "filter", "l_freq": 1.0}]
    assert m["normalization"]["from"] == "train"
    assert len(s.files("train")) == 2  # 5 rows per file
    assert all(len(d) == 64 for d in m["files"].values())
    assert not list(tmp_path.glob(".set.tmp-*"))  # nothing left half-written


def test_refuses_changed_file_spec_mismatch_and_missing_manifest(tmp_path: Path) -> None:
    _write(tmp_path / "set")
    with pytest.raises(ShardSetError, match="differs from the experiment"):
        open_shard_set(tmp_path / "set", expect_spec=EEGWindowSpec(n_chans=4, n_times=10, sfreq=50.0))
    part = sorted((tmp_path / "set" / "train").glob("*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ShardSetError, match="checksum differs"):
        open_shard_set(tmp_path / "set")
    (tmp_path / "set" / "manifest.json").unlink()
    with pytest.raises(ShardSetError, match="no manifest.json"):
        open_shard_set(tmp_path / "set")


def test_writer_refuses_existing_output_and_wrong_shape(tmp_path: Path) -> None:
    _write(tmp_path / "set")
    with pytest.raises(ShardSetError, match="already exists"):
        ShardSetWriter(tmp_path / "set", EEGWindowSpec(3, 10, 50.0))
    w = ShardSetWriter(tmp_path / "other", EEGWindowSpec(3, 10, 50.0))
    with pytest.raises(ShardSetError, match="differs from the spec"):
        w.write("train", np.zeros((2, 3, 11), np.float32), {})
    w.abort()
    assert not (tmp_path / "other").exists()


def test_split_groups_is_disjoint_reproducible_and_covers_all() -> None:
    groups = [f"s{i}" for i in range(16)]
    a, b = split_groups(groups, seed=1), split_groups(groups, seed=1)
    assert a == b and set(a) == set(groups)
    assert {"train", "val", "test"} == set(a.values())
    assert split_groups(groups, seed=2) != a
    with pytest.raises(NeurorayError, match="at least 3"):
        split_groups(["a", "b"])


def test_manifest_is_plain_json_with_every_design_field(tmp_path: Path) -> None:
    _write(tmp_path / "set")
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    assert {"schema_version", "modality", "spec", "columns", "rows", "preprocessing", "normalization",
            "sources", "skipped", "created_by", "files"} <= set(manifest)
    assert manifest["spec"] == {"n_chans": 3, "n_times": 10, "sfreq": 50.0, "ch_names": []}


def test_relative_root_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray read tasks run in another working directory: file paths handed to them must be absolute."""
    _write(tmp_path / "set")
    monkeypatch.chdir(tmp_path)
    s = open_shard_set("set")
    assert Path(s.root).is_absolute() and all(Path(f).is_absolute() for f in s.files("train"))
