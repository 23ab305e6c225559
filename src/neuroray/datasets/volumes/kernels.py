"""Peaks → one study's volume: Gaussian (ALE-style modelled activation) or MKDA sphere.

Both are evaluated at voxel centres from the continuous MNI position of each peak, and a study's map is
the voxel-wise maximum over its peaks (as in ALE's MA maps and MKDA's indicator maps), so values lie in
[0, 1] and overlapping peaks of one study do not add up.

Default FWHM 10 mm: ALE (Eickhoff et al. 2009, NeuroImage 45:1085) derives the FWHM from each study's
sample size, which gives about 8–12 mm for typical fMRI samples; NiMARE's ALEKernel takes either that or a
fixed ``fwhm``. With no sample sizes in Neurosynth we use a fixed 10 mm, the middle of that range.
MKDA: binary sphere of radius 10 mm (Wager et al. 2007, SCAN 2:150; NiMARE MKDAKernel r=10).
"""

from __future__ import annotations

import numpy as np

from neuroray.datasets.volumes.grid import Grid
from neuroray.errors import NeurorayError

KERNELS = ("gaussian", "mkda")
DEFAULT_FWHM_MM = 10.0
DEFAULT_RADIUS_MM = 10.0
FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def check_kernel(kernel: str, fwhm_mm: float, radius_mm: float) -> None:
    """Refuse an unknown ``kernel`` or a non-positive FWHM/radius (NeurorayError naming the flag)."""
    if kernel not in KERNELS:
        raise NeurorayError(f"--kernel {kernel!r}; allowed: {', '.join(KERNELS)}")
    if fwhm_mm <= 0 or radius_mm <= 0:
        raise NeurorayError(f"--fwhm {fwhm_mm} / --radius {radius_mm}: must be > 0 mm")


def reach_mm(kernel: str, fwhm_mm: float = DEFAULT_FWHM_MM, radius_mm: float = DEFAULT_RADIUS_MM) -> float:
    """How far from its peak a kernel is non-zero: 3 sigma (Gaussian, truncated there) or the sphere radius."""
    return 3.0 * fwhm_mm * FWHM_TO_SIGMA if kernel == "gaussian" else radius_mm


def render(grid: Grid, xyz_mm: np.ndarray, kernel: str = "gaussian", fwhm_mm: float = DEFAULT_FWHM_MM,
           radius_mm: float = DEFAULT_RADIUS_MM, out: np.ndarray | None = None) -> np.ndarray:
    """(N, 3) MNI mm peaks → float32 (X, Y, Z) map. Only a local box around each peak is touched."""
    check_kernel(kernel, fwhm_mm, radius_mm)
    vol = np.zeros(grid.shape, dtype=np.float32) if out is None else out
    sigma = fwhm_mm * FWHM_TO_SIGMA
    reach = reach_mm(kernel, fwhm_mm, radius_mm)
    scale = np.abs(np.diag(grid.affine)[:3])  # mm per voxel (diagonal MNI affine)
    half = np.ceil(reach / scale).astype(int) + 1
    shape = np.array(grid.shape)
    for ijk in grid.mm_to_voxel(xyz_mm):
        lo = np.maximum(np.floor(ijk).astype(int) - half, 0)
        hi = np.minimum(np.ceil(ijk).astype(int) + half + 1, shape)
        if np.any(hi <= lo):
            continue
        axes = [(np.arange(lo[d], hi[d]) - ijk[d]) * scale[d] for d in range(3)]
        d2 = axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2
        if kernel == "gaussian":
            # truncated at reach (3 sigma), as the manifest's truncate_sigma records: the box is a cube, so
            # without the cut its corners would carry tails out to 3·sqrt(3) sigma
            values = np.where(d2 <= reach * reach, np.exp(-d2 / (2.0 * sigma * sigma)), 0.0)
        else:
            values = (d2 <= radius_mm * radius_mm).astype(np.float64)
        box = vol[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        np.maximum(box, values.astype(np.float32), out=box)
    return vol
