"""NIfTI in and out (nibabel). Volumes are stored as float32 with no intensity scaling, so a round trip is exact.

Maps on another grid (voxel size, shape, orientation or origin) are resampled onto the MNI152 target grid with
``nibabel.processing.resample_from_to`` through the two images' affines (world mm → world mm, so orientation and
origin are handled), trilinear (``linear``, for continuous maps) or ``nearest`` (label maps); outside the source's
field of view the value is 0. ``none`` keeps the strict mode: such maps are skipped.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np

from neuroray.datasets.volumes.grid import Grid
from neuroray.errors import NeurorayError, one_line
from neuroray.outputs import atomic_write

SUFFIXES = (".nii", ".nii.gz")
RESAMPLING = {"linear": 1, "nearest": 0, "none": None}


class NiftiSkip(Exception):
    """One map that cannot join the set; the message is the manifest's skipped reason."""


def to_nifti(volume: np.ndarray, grid: Grid) -> nib.Nifti1Image:
    """``volume`` as a float32 NIfTI image on ``grid`` (mm units, no intensity scaling)."""
    data = np.asarray(volume, dtype=np.float32).reshape(grid.shape)
    img = nib.Nifti1Image(data, grid.affine)
    img.header.set_data_dtype(np.float32)
    img.header.set_xyzt_units("mm")
    img.header["scl_slope"], img.header["scl_inter"] = 1.0, 0.0
    return img


def save_nifti(volume: np.ndarray, grid: Grid, path: str | Path) -> Path:
    """Write ``path`` (.nii or .nii.gz) atomically: a reader sees the old file or the whole new one."""
    path = Path(path)
    if not path.name.endswith(SUFFIXES):
        raise NeurorayError(f"{path}: a NIfTI map is written as *.nii or *.nii.gz")

    def write(tmp: Path) -> None:
        # nibabel picks the format from the file name, which the temp name hides: serialise, gzip ourselves
        raw = to_nifti(volume, grid).to_bytes()
        tmp.write_bytes(gzip.compress(raw, mtime=0) if path.name.endswith(".gz") else raw)

    atomic_write(path, write)
    return path


def on_grid(img: nib.spatialimages.SpatialImage, data: np.ndarray, grid: Grid) -> bool:
    """Whether ``img``'s data already lie on ``grid`` (same shape, affine within 1e-3)."""
    return tuple(data.shape) == grid.shape and np.allclose(img.affine, grid.affine, atol=1e-3)


def load_on_grid(path: str | Path, grid: Grid, resample: str = "linear") -> tuple[np.ndarray, bool]:
    """→ (float32 (X, Y, Z) on ``grid``, whether it was resampled). NiftiSkip for an unusable map."""
    if resample not in RESAMPLING:
        raise NeurorayError(f"--resample {resample!r}; allowed: {', '.join(RESAMPLING)}")
    order = RESAMPLING[resample]
    if order is None:
        return load_nifti(path, grid), False
    img, data = read_nifti(Path(path))
    if on_grid(img, data, grid):
        return data, False
    from nibabel.processing import resample_from_to

    moved = resample_from_to(nib.Nifti1Image(data, img.affine), (grid.shape, grid.affine), order=order,
                             mode="constant", cval=0.0)
    return np.asarray(moved.dataobj, dtype=np.float32), True


def load_nifti(path: str | Path, grid: Grid | None = None) -> np.ndarray:
    """→ float32 (X, Y, Z). With ``grid``, the image must already be on it (shape and affine), else NiftiSkip."""
    img, out = read_nifti(Path(path))
    if grid is not None:
        if tuple(out.shape) != grid.shape:
            raise NiftiSkip(f"{path}: shape {tuple(out.shape)} is not the {grid.voxel_mm:g} mm MNI152 grid "
                            f"{grid.shape}; resample it first (or choose --voxel-mm)")
        if not np.allclose(img.affine, grid.affine, atol=1e-3):
            raise NiftiSkip(f"{path}: affine differs from the {grid.voxel_mm:g} mm MNI152 affine "
                            f"{grid.affine.tolist()}; resample it first")
    return out


def read_nifti(path: Path) -> tuple[nib.spatialimages.SpatialImage, np.ndarray]:
    """→ (image, float32 3-D data); NiftiSkip when unreadable, not 3-D or not finite."""
    try:
        img = nib.load(path)
        if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
            raise NiftiSkip(f"{path}: {type(img).__name__}, not a NIfTI image")
        # nib.load reads only the header; a truncated/corrupt data block fails here (EOFError, zlib.error, ...)
        data = np.asanyarray(img.dataobj)
    except NiftiSkip:
        raise
    except Exception as e:  # noqa: BLE001 - nibabel raises many types for a bad file
        raise NiftiSkip(f"{path}: not readable as NIfTI ({one_line(e)})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise NiftiSkip(f"{path}: {data.ndim}-D image; expected a 3-D map")
    out = np.asarray(data, dtype=np.float32)
    if not np.all(np.isfinite(out)):
        raise NiftiSkip(f"{path}: contains NaN/inf values")
    return img, out


def find_nifti(folder: str | Path) -> list[Path]:
    """Every *.nii / *.nii.gz under ``folder`` (recursively), sorted; NeurorayError if none or not a folder."""
    root = Path(folder)
    if not root.is_dir():
        raise NeurorayError(f"--nifti {root}: not a folder; expected a folder of *.nii / *.nii.gz maps")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))
    if not files:
        raise NeurorayError(f"--nifti {root}: no *.nii or *.nii.gz files")
    return files


def nifti_key(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` without its .nii/.nii.gz suffix: the map's study id."""
    rel = str(path.relative_to(root))
    for suffix in (".nii.gz", ".nii"):
        if rel.endswith(suffix):
            return rel[: -len(suffix)]
    return rel
