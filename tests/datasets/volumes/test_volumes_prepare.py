"""`neuroray prepare volumes` end to end: real Neurosynth excerpt, NIfTI folder, synthetic set, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neuroray.cli import main
from neuroray.datasets.shards import open_shard_set, tensor_column_to_numpy
from neuroray.datasets.spec import VolumeSpec
from neuroray.datasets.splits import SPLITS
from neuroray.datasets.volumes.grid import Grid, mni152
from neuroray.datasets.volumes.neurosynth import find_files, read_neurosynth, tal2mni
from neuroray.datasets.volumes.nifti import save_nifti
from neuroray.datasets.volumes.prepare import stratified_subset

EXCERPT = Path(__file__).resolve().parents[2] / "data" / "neurosynth"
REAL = Path("/work/shared/data/neurosynth")


def _rows(root: Path) -> pd.DataFrame:
    """All splits: metadata columns plus the voxel of each row's maximum."""
    shards = open_shard_set(root)
    frames = []
    for split in SPLITS:
        table = shards.read_split(split)
        x = tensor_column_to_numpy(table.column("x"))
        frame = table.drop_columns(["x"]).to_pandas()
        frame["split"] = split
        frame["argmax"] = [np.unravel_index(np.argmax(v[0]), v[0].shape) for v in x]
        frame["max"] = x.reshape(len(x), -1).max(axis=1)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def excerpt_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vol") / "ns"
    assert main(["prepare", "volumes", "--neurosynth", str(EXCERPT), "--out", str(out), "--voxel-mm", "2",
                 "--subset", "120", "--seed", "0"]) == 0
    return out


def test_excerpt_subset_prepares_with_manifest(excerpt_set: Path) -> None:
    shards = open_shard_set(excerpt_set, expect_spec=VolumeSpec(shape=(91, 109, 91), voxel_mm=2.0))
    m = shards.manifest
    assert m["modality"] == "volume" and m["columns"]["x"]["shape"] == [1, 91, 109, 91]
    assert sum(m["rows"].values()) == 120 and all(m["rows"][s] > 0 for s in SPLITS)
    assert {s["path"].rsplit("/", 1)[-1] for s in m["sources"]} == {"coordinates.tsv.gz", "metadata.tsv.gz"}
    assert all(len(s["sha256"]) == 64 for s in m["sources"])
    reasons = {s["path"].rsplit("#id=", 1)[-1]: s["reason"] for s in m["skipped"]}
    assert reasons["19013557"] == "all 1 peaks outside the 2 mm MNI152 grid"
    assert [s["step"] for s in m["preprocessing"]] == ["join", "space", "deduplicate", "grid", "subset", "kernel"]
    assert m["preprocessing"][-1] == {"step": "kernel", "kind": "gaussian", "fwhm_mm": 10.0,
                                      "truncate_sigma": 3.0, "combine": "max"}
    rows = _rows(excerpt_set)
    assert rows["study_id"].is_unique and set(rows["space"]) <= {"MNI", "TAL"}
    assert {"year", "n_peaks", "journal"} <= set(rows.columns) and rows["journal"].str.len().min() > 0
    # split by study: every study in exactly one split (is_unique above); the split is reproducible
    assert m["splits"] == {"by": "study_id", "seed": 0, "fractions": [0.7, 0.15, 0.15]}


def test_single_peak_studies_peak_in_their_voxel(excerpt_set: Path) -> None:
    grid = mni152(2)
    rows = _rows(excerpt_set).set_index("study_id")
    coords = pd.read_csv(EXCERPT / "coordinates.tsv.gz", sep="\t", dtype={"id": str})
    checked = 0
    for study, tal in (("10430955", False), ("10686176", False), ("11463481", False),
                       ("10557338", True), ("10639399", True)):
        if study not in rows.index:  # not drawn into the subset
            continue
        xyz = coords[coords["id"] == study][["x", "y", "z"]].to_numpy(dtype=float)
        mni = tal2mni(xyz) if tal else xyz
        assert rows.loc[study, "argmax"] == tuple(grid.nearest_voxel(mni)[0])
        assert rows.loc[study, "max"] > 0.95 and rows.loc[study, "n_peaks"] == 1
        checked += 1
    assert checked >= 2


def test_stratified_subset_is_reproducible_and_keeps_strata() -> None:
    rng = np.random.default_rng(1)
    studies = pd.DataFrame({"id": [f"s{i:04d}" for i in range(400)], "year": rng.integers(1997, 2019, 400),
                            "n_peaks": rng.integers(1, 80, 400)})
    a, b = stratified_subset(studies, 100, seed=3), stratified_subset(studies, 100, seed=3)
    assert len(a) == 100 and a["id"].tolist() == b["id"].tolist()
    assert a["id"].tolist() != stratified_subset(studies, 100, seed=4)["id"].tolist()
    # each year quartile keeps about a quarter of the subset
    edges = studies["year"].quantile([0.25, 0.5, 0.75]).to_numpy()
    share = np.bincount(np.searchsorted(edges, a["year"], side="right"), minlength=4) / 100
    full = np.bincount(np.searchsorted(edges, studies["year"], side="right"), minlength=4) / 400
    np.testing.assert_allclose(share, full, atol=0.06)


def test_synthetic_set_plants_year_dependent_blob(tmp_path: Path) -> None:
    out = tmp_path / "syn"
    assert main(["prepare", "volumes", "--synthetic", "40", "--out", str(out), "--voxel-mm", "4",
                 "--kernel", "mkda", "--mask", "ellipsoid"]) == 0
    rows = _rows(out)
    assert len(rows) == 40 and {"year", "n_peaks", "journal"} <= set(rows.columns)
    shards = open_shard_set(out)
    x = np.concatenate([tensor_column_to_numpy(shards.read_split(s).column("x")) for s in SPLITS])
    years = np.concatenate([shards.read_split(s).column("year").to_numpy() for s in SPLITS])
    # the planted sphere at x = -50 + 100*(year-2000)/17 mm, y=-20, z=20 is on in every volume
    grid = mni152(4)
    ijk = grid.nearest_voxel(np.c_[-50 + 100 * (years - 2000) / 17, np.full(40, -20.0), np.full(40, 20.0)])
    assert all(x[n, 0, i, j, k] == 1.0 for n, (i, j, k) in enumerate(ijk))


def _random_maps(tmp_path: Path, grid: Grid, n: int, seed: int) -> tuple[Path, dict[str, np.ndarray], np.random.Generator]:
    """``n`` random maps on ``grid`` as maps/m<i>.nii.gz; → (folder, name → volume, the generator, for more)."""
    src = tmp_path / "maps"
    src.mkdir()
    rng = np.random.default_rng(seed)
    vols = {f"m{i}": rng.random(grid.shape, dtype=np.float32) for i in range(n)}
    for name, vol in vols.items():
        save_nifti(vol, grid, src / f"{name}.nii.gz")
    return src, vols, rng


def test_nifti_folder_prepares_and_resample_none_skips_other_grids(tmp_path: Path) -> None:
    grid = mni152(4)
    src, vols, rng = _random_maps(tmp_path, grid, 5, seed=0)
    save_nifti(rng.random(mni152(2).shape, dtype=np.float32), mni152(2), src / "wrong.nii")
    out = tmp_path / "out"
    assert main(["prepare", "volumes", "--nifti", str(src), "--out", str(out), "--voxel-mm", "4",
                 "--resample", "none"]) == 0
    shards = open_shard_set(out)
    assert [s["path"].rsplit("/", 1)[-1] for s in shards.manifest["skipped"]] == ["wrong.nii"]
    assert "not the 4 mm MNI152 grid" in shards.manifest["skipped"][0]["reason"]
    for split in SPLITS:
        table = shards.read_split(split)
        x = tensor_column_to_numpy(table.column("x"))
        for key, v in zip(table.column("study_id").to_pylist(), x, strict=True):
            np.testing.assert_array_equal(v[0], vols[key])  # exact through NIfTI and Parquet


@pytest.mark.parametrize(("args", "message"), [
    (["--neurosynth", "{missing}"], "--neurosynth {missing}: not a folder"),
    (["--neurosynth", "{empty}"], "no *coordinates.tsv[.gz] file(s)"),
    (["--neurosynth", str(EXCERPT), "--unknown", "maybe"], "--unknown 'maybe'; allowed: drop, keep"),
    (["--neurosynth", str(EXCERPT), "--kernel", "box"], "--kernel 'box'; allowed: gaussian, mkda"),
    (["--neurosynth", str(EXCERPT), "--voxel-mm", "3"], "--voxel-mm 3.0; allowed: 2, 4"),
    (["--nifti", "{empty}"], "no *.nii or *.nii.gz files"),
])
def test_bad_input_exits_2_with_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               args: list[str], message: str) -> None:
    (tmp_path / "empty").mkdir()
    paths = {"missing": str(tmp_path / "nope"), "empty": str(tmp_path / "empty")}
    out = tmp_path / "out"
    code = main(["prepare", "volumes", *(a.format(**paths) for a in args), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message.format(**paths) in err[0]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


@pytest.mark.skipif(not REAL.is_dir(), reason="the full Neurosynth v7 files live in ../shared/data/neurosynth")
def test_real_v7_thousand_study_subset(tmp_path: Path) -> None:
    out = tmp_path / "ns1000"
    assert main(["prepare", "volumes", "--neurosynth", str(REAL), "--out", str(out), "--voxel-mm", "4",
                 "--subset", "1000"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert sum(manifest["rows"].values()) == 1000
    assert manifest["counts"]["peaks_read"] == 507891 and manifest["counts"]["studies_read"] == 14371
    assert manifest["counts"]["peaks_tal_converted"] > 0
    # every single-peak study's maximum lies in the voxel of its (MNI or TAL-converted) peak. At 4 mm an
    # integer-mm peak can sit exactly between two voxel centres: then both hold the maximum (a tie), so compare
    # values at the peak's nearest voxel (np.rint) rather than np.argmax's first index.
    peaks, _, _ = read_neurosynth(find_files(REAL))
    single_peak = peaks.groupby("id").filter(lambda g: len(g) == 1).set_index("id")
    grid = mni152(4)
    shards = open_shard_set(out)
    checked = 0
    for split in SPLITS:
        table = shards.read_split(split)
        x = tensor_column_to_numpy(table.column("x"))
        for n, study in enumerate(table.column("study_id").to_pylist()):
            if study in single_peak.index:
                i, j, k = grid.nearest_voxel(single_peak.loc[[study], ["x", "y", "z"]].to_numpy())[0]
                assert x[n, 0, i, j, k] == x[n].max() > 0.5, study
                checked += 1
    assert checked > 5


def test_nifti_name_collision_and_truncated_map_are_skipped(tmp_path: Path) -> None:
    grid = mni152(4)
    src, vols, _ = _random_maps(tmp_path, grid, 4, seed=2)
    save_nifti(vols["m0"] + 1.0, grid, src / "m0.nii")  # same study_id "m0" as m0.nii.gz, other values
    data = save_nifti(vols["m1"], grid, src / "cut.nii.gz").read_bytes()
    (src / "cut.nii.gz").write_bytes(data[: len(data) // 2])  # header reads, data block does not
    out = tmp_path / "out"
    assert main(["prepare", "volumes", "--nifti", str(src), "--out", str(out), "--voxel-mm", "4"]) == 0
    shards = open_shard_set(out)
    skipped = {Path(s["path"]).name: s["reason"] for s in shards.manifest["skipped"]}
    assert set(skipped) == {"cut.nii.gz", "m0.nii.gz"}
    assert skipped["m0.nii.gz"] == (f"same study_id 'm0' as {src / 'm0.nii'}; keep one of *.nii / *.nii.gz "
                                    "per map name")
    assert skipped["cut.nii.gz"].startswith(f"{src / 'cut.nii.gz'}: not readable as NIfTI (EOFError")
    got = {}
    for split in SPLITS:
        table = shards.read_split(split)
        got.update(zip(table.column("study_id").to_pylist(), tensor_column_to_numpy(table.column("x")), strict=True))
    assert sorted(got) == ["m0", "m1", "m2", "m3"]
    np.testing.assert_array_equal(got["m0"][0], vols["m0"] + 1.0)  # the first file in sorted order, m0.nii


def test_study_without_year_is_skipped_not_a_crash(tmp_path: Path) -> None:
    src = tmp_path / "ns"
    src.mkdir()
    ids = [f"s{i}" for i in range(7)]
    years = ["2001", "2003", "", "2005", "2007", "2009", "2011"]  # s2 has no year (NaN once read)
    meta = pd.DataFrame({"id": ids, "space": "MNI", "year": years, "journal": "NeuroImage"})
    coords = pd.DataFrame({"id": ids + ids, "x": [-40.0] * 7 + [40.0] * 7, "y": [-20.0] * 14,
                           "z": [10.0 * (i % 3) for i in range(14)]})
    meta.to_csv(src / "metadata.tsv.gz", sep="\t", index=False)
    coords.to_csv(src / "coordinates.tsv.gz", sep="\t", index=False)
    out = tmp_path / "out"
    assert main(["prepare", "volumes", "--neurosynth", str(src), "--out", str(out), "--voxel-mm", "4",
                 "--subset", "5"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["skipped"] == [{"path": f"{src / 'metadata.tsv.gz'}#id=s2",
                             "reason": "year is missing or not a whole number (got nan); the metadata's year "
                                       "column needs a publication year for every study"}]
    assert m["counts"]["studies_without_year"] == 1 and m["counts"]["studies_eligible"] == 6
    rows = _rows(out)
    assert len(rows) == 5 and "s2" not in set(rows["study_id"]) and rows["year"].dtype == np.int32
