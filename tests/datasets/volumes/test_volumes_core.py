"""Volumes: tal2icbm, the MNI152 grid, kernels, NIfTI — unit level, on the real Neurosynth excerpt."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from neuroray.datasets.volumes.grid import ellipsoid_mask, mni152
from neuroray.datasets.volumes.kernels import reach_mm, render
from neuroray.datasets.volumes.neurosynth import find_files, read_neurosynth, tal2mni
from neuroray.datasets.volumes.nifti import NiftiSkip, load_nifti, save_nifti
from neuroray.errors import NeurorayError

EXCERPT = Path(__file__).resolve().parents[2] / "data" / "neurosynth"


def test_tal2mni_matches_hand_computed_lancaster_values() -> None:
    # tal2icbm_other = inv(icbm_other2tal) of Lancaster et al. 2007. Its translation column is the MNI image of the
    # Talairach origin: (1.07816, 1.16824, -4.17805). For TAL (52, 18, 4) (study 10557338's only peak):
    #   x = 1.0686*52 - 0.00396*18 + 0.00826*4 + 1.07816 = 56.607
    #   y = 0.0064*52 + 1.05741*18 + 0.08566*4 + 1.16824 = 20.877
    #   z = -0.01281*52 - 0.08863*18 + 1.10792*4 - 4.17805 = -2.008
    np.testing.assert_allclose(tal2mni(np.zeros(3)), [[1.07816, 1.16824, -4.17805]], atol=1e-4)
    np.testing.assert_allclose(tal2mni(np.array([52.0, 18.0, 4.0])), [[56.607, 20.877, -2.008]], atol=2e-3)
    # and the published forward matrix (icbm_other → TAL) takes it back
    fwd = np.array([[0.9357, 0.0029, -0.0072, -1.0423], [-0.0065, 0.9396, -0.0726, -1.3940],
                    [0.0103, 0.0752, 0.8967, 3.6475]])
    back = fwd @ np.r_[tal2mni(np.array([52.0, 18.0, 4.0]))[0], 1.0]
    np.testing.assert_allclose(back, [52.0, 18.0, 4.0], atol=1e-9)


def test_read_excerpt_joins_converts_and_deduplicates() -> None:
    files = find_files(EXCERPT)
    peaks, studies, counts = read_neurosynth(files, unknown="drop")
    assert set(studies["space"]) == {"MNI", "TAL"} and counts["studies_unknown_space_dropped"] == 20
    assert counts["peaks_duplicate_dropped"] > 0
    assert not peaks.duplicated(["id", "x", "y", "z"]).any()
    tal = peaks[peaks["id"] == "10557338"][["x", "y", "z"]].to_numpy()
    np.testing.assert_allclose(tal, [[56.607, 20.877, -2.008]], atol=2e-3)
    mni = peaks[peaks["id"] == "10430955"][["x", "y", "z"]].to_numpy()
    np.testing.assert_array_equal(mni, [[2.0, 4.0, 6.0]])  # MNI peaks untouched
    assert (studies.set_index("id").loc["10430955", "n_peaks"]) == 1
    _, kept, _ = read_neurosynth(files, unknown="keep")
    assert (kept["space"] == "UNKNOWN").sum() == 20
    with pytest.raises(NeurorayError, match="--unknown 'maybe'; allowed: drop, keep"):
        read_neurosynth(files, unknown="maybe")


def test_mni152_affines() -> None:
    g2, g4 = mni152(2), mni152(4)
    assert g2.shape == (91, 109, 91) and g4.shape == (46, 55, 46)
    np.testing.assert_array_equal(nib.affines.apply_affine(g2.affine, [45, 63, 36]), [0, 0, 0])
    np.testing.assert_array_equal(g2.nearest_voxel(np.array([[0.0, 0.0, 0.0]])), [[45, 63, 36]])
    # the 4 mm grid is every other 2 mm voxel
    np.testing.assert_array_equal(nib.affines.apply_affine(g4.affine, [10, 20, 30]),
                                  nib.affines.apply_affine(g2.affine, [20, 40, 60]))
    with pytest.raises(NeurorayError, match="allowed: 2, 4"):
        mni152(3)
    mask = ellipsoid_mask(g4)
    # ellipsoid 4/3·π·70·88·68 mm³ ≈ 1.75 L (the MNI152 brain mask is ≈ 1.8 L) of the 7.2 L box
    assert 0.2 < mask.mean() < 0.3 and mask[tuple(g4.nearest_voxel(np.zeros((1, 3)))[0])]


@pytest.mark.parametrize("voxel_mm", [2.0, 4.0])
@pytest.mark.parametrize("kernel", ["gaussian", "mkda"])
def test_single_peak_maximum_in_the_peak_voxel(voxel_mm: float, kernel: str) -> None:
    grid = mni152(voxel_mm)
    peak = np.array([[-37.3, 21.9, 47.2]])
    vol = render(grid, peak, kernel)
    ijk = tuple(grid.nearest_voxel(peak)[0])
    assert vol[ijk] == vol.max() > 0
    if kernel == "gaussian":
        assert np.unravel_index(np.argmax(vol), vol.shape) == ijk
    else:
        assert set(np.unique(vol)) == {0.0, 1.0}


def test_gaussian_fwhm_and_mkda_radius() -> None:
    grid = mni152(2)
    centre = np.array([[0.0, 0.0, 0.0]])  # exactly on voxel (45, 63, 36)
    vol = render(grid, centre, "gaussian", fwhm_mm=10.0)
    # 5 mm is half the FWHM: not on a voxel centre, but 4 mm and 6 mm bracket 0.5
    assert vol[45, 63, 36] == 1.0 and vol[45 - 2, 63, 36] > 0.5 > vol[45 - 3, 63, 36]
    sphere = render(grid, centre, "mkda", radius_mm=10.0)
    assert sphere[45 + 5, 63, 36] == 1.0 and sphere[45 + 6, 63, 36] == 0.0
    assert sphere.sum() == sum(1 for i in range(-5, 6) for j in range(-5, 6) for k in range(-5, 6)
                               if i * i + j * j + k * k <= 25)


def test_nifti_round_trip_is_exact(tmp_path: Path) -> None:
    grid = mni152(4)
    rng = np.random.default_rng(0)
    vol = rng.standard_normal(grid.shape).astype(np.float32)
    path = save_nifti(vol, grid, tmp_path / "map.nii.gz")
    back = load_nifti(path, grid)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, vol)
    np.testing.assert_array_equal(nib.load(path).affine, grid.affine)
    with pytest.raises(NiftiSkip, match="not the 2 mm MNI152 grid"):
        load_nifti(path, mni152(2))


def test_gaussian_is_zero_beyond_its_three_sigma_reach() -> None:
    grid = mni152(2)
    vol = render(grid, np.zeros((1, 3)), "gaussian", fwhm_mm=10.0)  # peak exactly on voxel (45, 63, 36)
    reach = reach_mm("gaussian", fwhm_mm=10.0)  # 3 sigma = 12.74 mm
    # on the axis: 12 mm is inside, 14 mm beyond; on the diagonal: 10.4 mm inside, 13.9 mm beyond (the box's
    # corner, where the untruncated Gaussian still gave exp(-5.3) ≈ 0.005)
    assert vol[45 + 6, 63, 36] > 0 and vol[45 + 7, 63, 36] == 0.0
    assert vol[45 + 3, 63 + 3, 36 + 3] > 0 and vol[45 + 4, 63 + 4, 36 + 4] == 0.0
    ijk = np.indices(grid.shape).reshape(3, -1).T
    dist = np.linalg.norm(nib.affines.apply_affine(grid.affine, ijk), axis=1).reshape(grid.shape)
    assert np.all(vol[dist > reach] == 0.0) and np.all(vol[dist <= reach] > 0)


def test_truncated_nii_gz_is_a_skip_not_a_crash(tmp_path: Path) -> None:
    grid = mni152(4)
    path = save_nifti(np.ones(grid.shape, dtype=np.float32), grid, tmp_path / "map.nii.gz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # header intact, data block cut: nib.load alone succeeds
    with pytest.raises(NiftiSkip, match="map.nii.gz: not readable as NIfTI") as info:
        load_nifti(path, grid)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_save_nifti_is_atomic(tmp_path: Path) -> None:
    grid = mni152(4)
    vol = np.random.default_rng(1).random(grid.shape, dtype=np.float32)
    for name in ("map.nii", "map.nii.gz"):
        np.testing.assert_array_equal(load_nifti(save_nifti(vol, grid, tmp_path / name), grid), vol)
    with pytest.raises(ValueError):  # fails inside the write: the old file stays whole, no temp is left
        save_nifti(np.zeros(7, dtype=np.float32), grid, tmp_path / "map.nii.gz")
    np.testing.assert_array_equal(load_nifti(tmp_path / "map.nii.gz", grid), vol)
    with pytest.raises(NeurorayError, match=r"map\.img: a NIfTI map is written as \*\.nii or \*\.nii\.gz"):
        save_nifti(vol, grid, tmp_path / "map.img")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.nii", "map.nii.gz"]
