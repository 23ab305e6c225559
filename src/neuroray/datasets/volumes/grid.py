"""The MNI152 voxel grid (nibabel affines) and brain masks (the MNI152 template's, or an ellipsoid).

2 mm: 91×109×91 with the FSL MNI152_T1_2mm affine (voxel (45, 63, 36) is MNI (0, 0, 0); x flipped, so
voxel i grows to the subject's right → left as in radiological storage). 4 mm: 46×55×46 covering the
same box from the same corner (-90/+90, -126, -72 mm), i.e. the 2 mm grid with every other voxel.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import nibabel as nib
import numpy as np

from neuroray.errors import NeurorayError

VOXEL_SIZES = (2.0, 4.0)
_CORNER = np.array([90.0, -126.0, -72.0])  # MNI mm of voxel (0, 0, 0) in FSL's MNI152 templates


@dataclass(frozen=True)
class Grid:
    """A voxel grid: shape, voxel → MNI mm affine and voxel size."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    voxel_mm: float

    def mm_to_voxel(self, xyz: np.ndarray) -> np.ndarray:
        """(N, 3) mm → (N, 3) continuous voxel coordinates."""
        return nib.affines.apply_affine(np.linalg.inv(self.affine), np.asarray(xyz, dtype=np.float64))

    def nearest_voxel(self, xyz: np.ndarray) -> np.ndarray:
        """(N, 3) mm → (N, 3) integer indices of the nearest voxel (possibly off the grid)."""
        return np.rint(self.mm_to_voxel(xyz)).astype(np.int64)

    def inside(self, ijk: np.ndarray) -> np.ndarray:
        """(N,) bool: which of the (N, 3) voxel indices ``ijk`` lie on the grid."""
        return np.all((ijk >= 0) & (ijk < np.array(self.shape)), axis=1)

    def header_like(self) -> dict[str, object]:
        """Manifest form: shape, voxel size and affine as lists."""
        return {"shape": list(self.shape), "voxel_mm": self.voxel_mm, "affine": self.affine.tolist()}


def mni152(voxel_mm: float = 2.0) -> Grid:
    """The MNI152 grid at 2 or 4 mm."""
    if float(voxel_mm) not in VOXEL_SIZES:
        raise NeurorayError(f"--voxel-mm {voxel_mm}; allowed: {', '.join(str(int(v)) for v in VOXEL_SIZES)}")
    v = float(voxel_mm)
    affine = np.diag([-v, v, v, 1.0])
    affine[:3, 3] = _CORNER
    shape = (91, 109, 91) if v == 2.0 else (46, 55, 46)
    return Grid(shape=shape, affine=affine, voxel_mm=v)


# The brain mask (``--mask brain``) is nilearn's MNI152 whole-brain mask: the skull-stripped ICBM152 2009a
# nonlinear T1 template that ships inside the nilearn wheel (nilearn/datasets/data/
# mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz, read from the installed package; nothing is downloaded),
# rescaled to [0, 1] and thresholded at 0.2, at its native 1 mm, then resampled onto our grid by nearest
# neighbour: about 1.88 L (1.88 million mm³) at 2 and 4 mm.
# Template: Fonov et al. 2009, NeuroImage 47:S102; Fonov et al. 2011, NeuroImage 54:313. MNI ICBM152 2009
# © 1993–2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill University;
# use, copying and distribution are permitted provided this copyright notice appears.
BRAIN_MASK_SOURCE = "nilearn.datasets.load_mni152_brain_mask(resolution=1): ICBM152 2009a T1 > 0.2"


@lru_cache(maxsize=len(VOXEL_SIZES))
def _brain_mask(voxel_mm: float) -> np.ndarray:
    from nibabel.processing import resample_from_to
    from nilearn.datasets import load_mni152_brain_mask  # slow import (scikit-learn); only when asked for

    grid = mni152(voxel_mm)
    on_grid = resample_from_to(load_mni152_brain_mask(resolution=1), (grid.shape, grid.affine), order=0)
    mask = np.asarray(on_grid.dataobj) > 0
    mask.setflags(write=False)
    return mask


def brain_mask(grid: Grid) -> np.ndarray:
    """Boolean (X, Y, Z) MNI152 whole-brain mask on ``grid`` (read-only; cached per voxel size)."""
    return _brain_mask(grid.voxel_mm)


# The ellipsoid (``--mask ellipsoid``) is a rough stand-in fitted by eye to the MNI152 brain's extent
# (x ±70 mm, y -104…+72 mm, z -56…+80 mm; centre (0, -16, 12), semi-axes (70, 88, 68) mm, ≈ 1.75 L). It needs no
# template; the synthetic set draws its distractor peaks inside it.
MASK_CENTER_MM = (0.0, -16.0, 12.0)
MASK_SEMI_AXES_MM = (70.0, 88.0, 68.0)


def ellipsoid_mask(grid: Grid) -> np.ndarray:
    """Boolean (X, Y, Z) approximate brain mask."""
    ijk = np.indices(grid.shape).reshape(3, -1).T
    xyz = nib.affines.apply_affine(grid.affine, ijk)
    r = ((xyz - np.array(MASK_CENTER_MM)) / np.array(MASK_SEMI_AXES_MM)) ** 2
    return np.asarray(r.sum(axis=1) <= 1.0).reshape(grid.shape)
