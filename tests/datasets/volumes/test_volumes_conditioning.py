"""Volumes: the MNI152 brain mask, journal codes and term weights, NIfTI resampling, train-only statistics."""

from __future__ import annotations

import socket
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from neuroray.cli import main
from neuroray.datasets.shards import open_shard_set, tensor_column_to_numpy
from neuroray.datasets.splits import SPLITS
from neuroray.datasets.volumes import grid as grid_module
from neuroray.datasets.volumes.conditioning import read_terms, term_column
from neuroray.datasets.volumes.grid import brain_mask, mni152
from neuroray.datasets.volumes.nifti import load_on_grid, save_nifti
from neuroray.errors import NeurorayError

EXCERPT = Path(__file__).resolve().parents[2] / "data" / "neurosynth"


def _table(root: Path) -> tuple[np.ndarray, pd.DataFrame]:
    shards = open_shard_set(root)
    xs, frames = [], []
    for split in SPLITS:
        t = shards.read_split(split)
        xs.append(tensor_column_to_numpy(t.column("x")))
        frames.append(t.drop_columns(["x"]).to_pandas().assign(split=split))
    return np.concatenate(xs), pd.concat(frames, ignore_index=True)


def test_brain_mask_is_the_mni152_mask_read_without_network(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NILEARN_DATA", str(tmp_path / "nilearn_data"))
    grid_module._brain_mask.cache_clear()
    g2, g4 = mni152(2), mni152(4)
    m2, m4 = brain_mask(g2), brain_mask(g4)
    assert m2.shape == g2.shape and m2.dtype == bool and m4.shape == g4.shape
    volume_mm3 = m2.sum() * 8.0
    assert 1.5e6 < volume_mm3 < 2.0e6  # the adult brain mask: ≈ 1.88 L
    assert abs(m4.sum() * 64.0 - volume_mm3) < 0.03 * volume_mm3

    def inside(mask: np.ndarray, grid: object, xyz: tuple[float, float, float]) -> bool:
        i, j, k = grid.nearest_voxel(np.array([xyz]))[0]  # type: ignore[attr-defined]
        return bool(mask[i, j, k])

    for g, m in ((g2, m2), (g4, m4)):
        assert inside(m, g, (-42, -22, 54))  # left M1 hand knob
        assert inside(m, g, (10, -85, 5))  # calcarine cortex
        assert inside(m, g, (0, 0, 0))
        assert not inside(m, g, (0, 0, -80))  # below the brain
        assert not inside(m, g, (0, 0, 88))  # above the vertex
        assert not inside(m, g, (80, -20, 10))  # lateral to the temporal lobe
    assert list(tmp_path.iterdir()) == []  # nothing fetched or cached in HOME


@pytest.fixture(scope="module")
def masked_excerpt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """The real excerpt at 4 mm, brain-masked, with term weights from a TSV written here.

    The weights are TEST VALUES (a function of the study id), not Neurosynth's; the ids are the excerpt's real ones.
    """
    root = tmp_path_factory.mktemp("volcond")
    meta = pd.read_csv(EXCERPT / "metadata.tsv.gz", sep="\t", dtype={"id": str})
    ids = sorted(meta["id"].unique())
    weighted = ids[::2]  # every other study has weights; the rest get NaN
    terms = pd.DataFrame({"id": [*weighted, "99999999"],
                          "working memory": [int(k) % 7 / 10 for k in weighted] + [0.5],
                          "pain": [int(k) % 3 / 10 for k in weighted] + [0.5]})
    terms.to_csv(root / "terms.tsv", sep="\t", index=False)
    out = root / "ns"
    assert main(["prepare", "volumes", "--neurosynth", str(EXCERPT), "--out", str(out), "--voxel-mm", "4",
                 "--mask", "brain", "--terms", str(root / "terms.tsv"), "--min-journal-count", "3"]) == 0
    return out, terms


def test_masked_volumes_are_zero_outside_the_brain(masked_excerpt: tuple[Path, pd.DataFrame]) -> None:
    out, _ = masked_excerpt
    x, rows = _table(out)
    mask = brain_mask(mni152(4))
    assert np.all(x[:, 0][:, ~mask] == 0.0)
    assert np.all(x[:, 0][:, mask].max(axis=1) > 0.0)  # every kept study has signal inside the brain
    m = open_shard_set(out).manifest
    step = next(s for s in m["preprocessing"] if s["step"] == "mask")
    assert step["kind"] == "brain" and "load_mni152_brain_mask" in step["template"]
    # Peaks a few mm outside the template brain are kept (masked after the kernel, as GingerALE and NiMARE do):
    # TAL study 10557338's only peak, MNI (56.6, 20.9, -2.0) at the lateral IFG surface, is one of them.
    assert m["counts"]["peaks_outside_mask_kept"] > 0
    grid = mni152(4)
    i, j, k = grid.nearest_voxel(np.array([[56.607, 20.877, -2.008]]))[0]
    assert not mask[i, j, k]
    row = rows.index[rows["study_id"] == "10557338"][0]
    assert x[row, 0].max() > 0.3 and x[row, 0, i, j, k] == 0.0
    assert all("farther than the kernel's reach" in s["reason"] for s in m["skipped"])


def test_journal_codes_use_a_train_only_vocabulary(masked_excerpt: tuple[Path, pd.DataFrame]) -> None:
    out, _ = masked_excerpt
    _, rows = _table(out)
    info = open_shard_set(out).manifest["conditioning"]["journal"]
    vocab = info["vocabulary"]
    assert vocab[0] == "other" and info["from"] == "train" and info["min_count"] == 3
    train_counts = rows[rows["split"] == "train"]["journal"].value_counts()
    expected = sorted(train_counts[train_counts >= 3].index, key=lambda j: (-train_counts[j], j))
    assert vocab[1:] == expected and len(expected) >= 3  # recomputed from train rows alone
    code = {j: i for i, j in enumerate(vocab)}
    assert rows["journal_code"].tolist() == [code.get(j, 0) for j in rows["journal"]]
    held_out_only = set(rows[rows["split"] != "train"]["journal"]) - set(train_counts.index)
    assert all(rows.loc[rows["journal"] == j, "journal_code"].eq(0).all() for j in held_out_only)
    assert rows["journal_code"].dtype == np.int32


def test_term_weights_join_on_study_id(masked_excerpt: tuple[Path, pd.DataFrame]) -> None:
    out, terms = masked_excerpt
    _, rows = _table(out)
    info = open_shard_set(out).manifest["conditioning"]["terms"]
    assert info["columns"] == {"term_working_memory": "working memory", "term_pain": "pain"}
    assert info["kind"] == "tsv" and info["sources"][0]["path"].endswith("terms.tsv")
    weights = terms.set_index("id")
    for _, r in rows.iterrows():
        if r["study_id"] in weights.index:
            assert r["term_working_memory"] == pytest.approx(weights.loc[r["study_id"], "working memory"])
            assert r["term_pain"] == pytest.approx(weights.loc[r["study_id"], "pain"])
        else:
            assert np.isnan(r["term_working_memory"]) and np.isnan(r["term_pain"])
    assert info["studies_without_weights"] == int(rows["term_pain"].isna().sum()) > 0


def test_volume_stats_are_train_only(masked_excerpt: tuple[Path, pd.DataFrame]) -> None:
    out, _ = masked_excerpt
    x, rows = _table(out)
    m = open_shard_set(out).manifest
    train = (rows["split"] == "train").to_numpy()
    stats = m["target_stats"]
    for col in ("year", "n_peaks", "term_pain"):
        v = rows.loc[train, col].to_numpy(np.float64)
        v = v[np.isfinite(v)]
        assert stats[col] == {"mean": pytest.approx(v.mean()), "std": pytest.approx(v.std()), "count": len(v)}
    assert stats["year"]["mean"] != pytest.approx(rows["year"].mean(), abs=1e-9)  # all rows would differ
    z = (rows["year"] - stats["year"]["mean"]) / stats["year"]["std"]
    np.testing.assert_allclose(rows["year_z"], z, rtol=1e-5, atol=1e-5)
    norm = m["normalization"]
    xt = x[train].astype(np.float64)
    assert norm["from"] == "train" and norm["applied"] is False
    assert norm["mean"] == pytest.approx(xt.mean()) and norm["std"] == pytest.approx(xt.std(), rel=1e-5)
    assert norm["max_abs"] == pytest.approx(float(np.abs(xt).max()))


def test_read_neurosynth_features_npz(tmp_path: Path) -> None:
    """The release's sparse layout: rows in metadata order, labels in the *vocabulary.txt beside it.
    The matrix values are TEST VALUES written here; the row order comes from the real excerpt metadata."""
    meta_ids = pd.read_csv(EXCERPT / "metadata.tsv.gz", sep="\t", dtype={"id": str})["id"].tolist()
    labels = ["0_network_state_resting", "9_memory_working_wm", "32_pain_somatosensory_stimulation"]
    rng = np.random.default_rng(0)
    dense = np.where(rng.random((len(meta_ids), 3)) < 0.3, rng.random((len(meta_ids), 3)), 0.0)
    features = tmp_path / "data-neurosynth_version-7_vocab-LDA50_source-abstract_type-weight_features.npz"
    sparse.save_npz(features, sparse.csr_matrix(dense))
    (tmp_path / "data-neurosynth_version-7_vocab-LDA50_vocabulary.txt").write_text("\n".join(labels) + "\n")
    (tmp_path / "data-neurosynth_version-7_vocab-terms_vocabulary.txt").write_text("a\nb\n")  # another vocab
    wanted = [meta_ids[5], meta_ids[0], "not-a-study"]
    terms = read_terms(features, wanted, metadata=EXCERPT / "metadata.tsv.gz",
                       names=["9_memory_working_wm", "term_32_pain_somatosensory_stimulation"])
    assert list(terms.weights.columns) == ["term_9_memory_working_wm", "term_32_pain_somatosensory_stimulation"]
    np.testing.assert_allclose(terms.weights.loc[meta_ids[5]].to_numpy(), dense[5, [1, 2]], rtol=1e-6)
    np.testing.assert_allclose(terms.weights.loc[meta_ids[0]].to_numpy(), dense[0, [1, 2]], rtol=1e-6)
    assert "not-a-study" not in terms.weights.index and terms.kind == "neurosynth-npz"
    with pytest.raises(NeurorayError, match="--term-names nope: not in"):
        read_terms(features, wanted, metadata=EXCERPT / "metadata.tsv.gz", names=["nope"])
    with pytest.raises(NeurorayError, match="needs the metadata.tsv.gz"):
        read_terms(features, wanted)
    sparse.save_npz(features, sparse.csr_matrix(dense[:-1]))
    with pytest.raises(NeurorayError, match=f"{len(meta_ids) - 1} rows x 3 columns, but"):
        read_terms(features, wanted, metadata=EXCERPT / "metadata.tsv.gz")
    assert term_column("Working memory (WM)") == "term_working_memory_wm"


@pytest.mark.parametrize(("text", "needle"), [
    ("study\tpain\n1\t0.1\n", "missing column id"),
    ("id\tpain\n1\thigh\n", "column(s) pain are not numeric"),
    ("id\tpain\n1\t0.1\n1\t0.2\n", "id 1 repeats"),
    ("id\tPain\tpain\n1\t0.1\t0.2\n", "all become column 'term_pain'"),
])
def test_bad_terms_tsv_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                             needle: str) -> None:
    (tmp_path / "terms.tsv").write_text(text)
    out = tmp_path / "out"
    code = main(["prepare", "volumes", "--synthetic", "6", "--voxel-mm", "4", "--terms", str(tmp_path / "terms.tsv"),
                 "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0] and str(tmp_path / "terms.tsv") in err[0], err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["terms.tsv"]


def _blob(shape: tuple[int, int, int], affine: np.ndarray, centre_mm: tuple[float, float, float],
          fwhm_mm: float = 12.0) -> np.ndarray:
    ijk = np.indices(shape).reshape(3, -1).T
    d2 = ((nib.affines.apply_affine(affine, ijk) - np.array(centre_mm)) ** 2).sum(axis=1)
    sigma = fwhm_mm / (2 * np.sqrt(2 * np.log(2)))
    return np.exp(-d2 / (2 * sigma**2)).reshape(shape).astype(np.float32)


def test_nifti_maps_on_other_grids_are_resampled_to_mni152(tmp_path: Path) -> None:
    src = tmp_path / "maps"
    src.mkdir()
    centre = (-42.0, -22.0, 54.0)  # a 2 mm voxel centre: voxel (66, 52, 63)
    ras3 = np.diag([3.0, 3.0, 3.0, 1.0])  # 3 mm, RAS storage (ours is LAS), another origin
    ras3[:3, 3] = (-96.0, -132.0, -78.0)
    lps3 = np.diag([-3.0, -3.0, 3.0, 1.0])  # 3 mm, x and y flipped
    lps3[:3, 3] = (93.0, 90.0, -75.0)
    for name, aff in (("ras3mm", ras3), ("lps3mm", lps3)):
        shape = (65, 77, 63)
        nib.save(nib.Nifti1Image(_blob(shape, aff, centre), aff), src / f"{name}.nii.gz")
    g2 = mni152(2)
    on_grid = _blob(g2.shape, g2.affine, (20.0, 10.0, 0.0))
    save_nifti(on_grid, g2, src / "native.nii.gz")
    out = tmp_path / "out"
    assert main(["prepare", "volumes", "--nifti", str(src), "--out", str(out), "--mask", "brain"]) == 0
    x, rows = _table(out)
    m = open_shard_set(out).manifest
    assert m["nifti"] == {"resampled": ["lps3mm", "ras3mm"], "on_grid": 1} and m["skipped"] == []
    assert m["preprocessing"][0]["resample"] == "linear"
    expected = tuple(g2.nearest_voxel(np.array([centre]))[0])
    assert expected == (66, 52, 63)
    by_key = dict(zip(rows["study_id"], x[:, 0], strict=True))
    for name in ("ras3mm", "lps3mm"):
        vol = by_key[name]
        assert np.unravel_index(np.argmax(vol), vol.shape) == expected, name
        assert vol.max() > 0.9
    mask = brain_mask(g2)
    np.testing.assert_array_equal(by_key["native"], np.where(mask, on_grid, 0.0))  # on-grid map: untouched
    nearest, moved = load_on_grid(src / "ras3mm.nii.gz", g2, "nearest")
    source_values = set(np.unique(np.asarray(nib.load(src / "ras3mm.nii.gz").dataobj)).tolist()) | {0.0}
    assert moved and set(np.unique(nearest).tolist()) <= source_values


def test_nifti_stats_ignore_val_and_test_maps(tmp_path: Path) -> None:
    g4 = mni152(4)
    rng = np.random.default_rng(0)
    maps = {f"m{i}": rng.random(g4.shape, dtype=np.float32) for i in range(7)}

    def prepare(folder: Path, scale: dict[str, float]) -> dict[str, object]:
        folder.mkdir()
        for key, vol in maps.items():
            save_nifti(vol * scale.get(key, 1.0), g4, folder / f"{key}.nii.gz")
        pd.DataFrame({"id": list(maps), "topic": [scale.get(k, 1.0) * i for i, k in enumerate(maps)]}).to_csv(
            folder.with_suffix(".tsv"), sep="\t", index=False)
        out = folder.with_name(folder.name + "-out")
        assert main(["prepare", "volumes", "--nifti", str(folder), "--voxel-mm", "4", "--out", str(out),
                     "--terms", str(folder.with_suffix(".tsv"))]) == 0
        return open_shard_set(out).manifest

    m1 = prepare(tmp_path / "a", {})
    rows = _table(tmp_path / "a-out")[1]
    held_out = rows.loc[rows["split"] != "train", "study_id"].tolist()
    assert len(held_out) == 2
    m2 = prepare(tmp_path / "b", dict.fromkeys(held_out, 1000.0))  # val/test maps and weights 1000x
    assert m1["normalization"] == m2["normalization"] and m1["target_stats"] == m2["target_stats"]
    assert set(m1["target_stats"]) == {"term_topic"}
    assert _table(tmp_path / "b-out")[0].max() > 100  # the held-out maps really changed
