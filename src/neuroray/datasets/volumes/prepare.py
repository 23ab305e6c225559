"""Volumes → shard set: Neurosynth peaks, a folder of NIfTI maps, or a planted-signal synthetic set.

Every row is one study (or one NIfTI map): ``x`` is float32 (1, X, Y, Z) on the MNI152 grid, optionally masked to
the brain (``mask="brain"``: the MNI152 template's mask, :mod:`.grid`). Columns: ``study_id, space, year, journal,
n_peaks`` (Neurosynth, synthetic) or ``study_id, path`` (NIfTI), plus the conditioning columns of
:mod:`.conditioning` (``journal_code``, ``year_z``, ``n_peaks_z``, ``term_*``). Splits are by study id (seeded).
Values are written as they are (kernel maps lie in [0, 1]); the manifest's ``normalization`` records the train
split's voxel mean/std/max|x| with ``applied: false``, and ``target_stats`` the train split's mean/std of every
numeric column. Val and test rows never enter any statistic or the journal vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neuroray.datasets.shards import ShardSetWriter, sha256_file
from neuroray.datasets.spec import VolumeSpec
from neuroray.datasets.splits import SPLITS, split_groups
from neuroray.datasets.volumes.conditioning import finish_columns, join_terms, read_terms
from neuroray.datasets.volumes.grid import BRAIN_MASK_SOURCE, Grid, brain_mask, ellipsoid_mask, mni152
from neuroray.datasets.volumes.kernels import check_kernel, reach_mm, render
from neuroray.datasets.volumes.neurosynth import UNKNOWN_POLICIES, find_files, read_neurosynth
from neuroray.datasets.volumes.nifti import (
    RESAMPLING,
    NiftiSkip,
    find_nifti,
    load_on_grid,
    nifti_key,
    on_grid,
    read_nifti,
)
from neuroray.errors import NeurorayError

MASKS = ("none", "brain", "ellipsoid")


@dataclass(frozen=True)
class VolumePrepareConfig:
    """Volume prepare settings: grid, kernel, mask, unknown-space policy, subset, split, resampling, conditioning."""

    voxel_mm: float = 2.0
    kernel: str = "gaussian"
    fwhm_mm: float = 10.0
    radius_mm: float = 10.0
    mask: str = "none"
    unknown: str = "drop"
    subset: int | None = None
    seed: int = 0
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    rows_per_file: int = 256
    resample: str = "linear"
    min_journal_count: int = 10
    terms: str | None = None
    term_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        mni152(self.voxel_mm)  # validates the voxel size
        check_kernel(self.kernel, self.fwhm_mm, self.radius_mm)
        if self.mask not in MASKS:
            raise NeurorayError(f"--mask {self.mask!r}; allowed: {', '.join(MASKS)}")
        if self.unknown not in UNKNOWN_POLICIES:
            raise NeurorayError(f"--unknown {self.unknown!r}; allowed: {', '.join(UNKNOWN_POLICIES)}")
        if self.subset is not None and self.subset < 3:
            raise NeurorayError(f"--subset {self.subset}: must be >= 3 (train/val/test each need a study)")
        if self.resample not in RESAMPLING:
            raise NeurorayError(f"--resample {self.resample!r}; allowed: {', '.join(RESAMPLING)}")
        if self.min_journal_count < 1:
            raise NeurorayError(f"--min-journal-count {self.min_journal_count}: must be >= 1")

    @property
    def grid(self) -> Grid:
        """The MNI152 grid at ``voxel_mm``."""
        return mni152(self.voxel_mm)

    def mask_array(self) -> np.ndarray | None:
        """The (X, Y, Z) bool mask chosen by ``mask``; None for ``none``."""
        if self.mask == "brain":
            return brain_mask(self.grid)
        return ellipsoid_mask(self.grid) if self.mask == "ellipsoid" else None

    def mask_steps(self) -> list[dict[str, Any]]:
        """The manifest's preprocessing entry for the mask (empty for ``none``)."""
        if self.mask == "brain":
            return [{"step": "mask", "kind": "brain", "template": BRAIN_MASK_SOURCE, "resample": "nearest"}]
        return [{"step": "mask", "kind": "ellipsoid"}] if self.mask == "ellipsoid" else []

    def kernel_step(self) -> dict[str, Any]:
        """The manifest's preprocessing entry for the kernel and its parameters."""
        if self.kernel == "gaussian":
            return {"step": "kernel", "kind": "gaussian", "fwhm_mm": self.fwhm_mm, "truncate_sigma": 3.0,
                    "combine": "max"}
        return {"step": "kernel", "kind": "mkda", "radius_mm": self.radius_mm, "combine": "max"}


# --- subset ----------------------------------------------------------------------------------------------------


def stratified_subset(studies: pd.DataFrame, n: int, seed: int = 0, bins: int = 4) -> pd.DataFrame:
    """``n`` studies drawn so that every (year quantile bin × peak-count quantile bin) stratum keeps its share.

    Shares are allocated by largest remainder; inside a stratum studies are drawn without replacement by a
    generator seeded with ``seed`` over studies sorted by id, so the same inputs give the same subset.
    """
    if n >= len(studies):
        return studies.sort_values("id").reset_index(drop=True)
    table = studies.sort_values("id").reset_index(drop=True)
    year_bin = pd.qcut(table["year"].rank(method="first"), bins, labels=False)
    peak_bin = pd.qcut(table["n_peaks"].rank(method="first"), bins, labels=False)
    stratum = (year_bin * bins + peak_bin).to_numpy()
    labels, sizes = np.unique(stratum, return_counts=True)
    quota = sizes * n / len(table)
    take = np.floor(quota).astype(int)
    order = np.argsort(-(quota - take), kind="stable")
    take[order[: n - take.sum()]] += 1
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for label, k in zip(labels, take, strict=True):
        members = np.flatnonzero(stratum == label)
        chosen.extend(rng.choice(members, size=int(k), replace=False).tolist())
    return table.iloc[sorted(chosen)].reset_index(drop=True)


def _strata_summary(studies: pd.DataFrame) -> dict[str, Any]:
    return {"rows": len(studies), "year": [int(studies["year"].min()), int(studies["year"].max())],
            "n_peaks": [int(studies["n_peaks"].min()), int(studies["n_peaks"].max())]}


# --- writing ---------------------------------------------------------------------------------------------------


def _with_terms(cfg: VolumePrepareConfig, columns: pd.DataFrame, metadata: Path | None,
                sources: list[dict[str, Any]]) -> tuple[pd.DataFrame, dict[str, Any]]:
    if cfg.terms is None:
        return columns, {}
    ids = columns["study_id"].astype(str).tolist()
    terms = read_terms(cfg.terms, ids, metadata=metadata, names=cfg.term_names)
    info = terms.info(ids)
    sources.extend(info["sources"])
    return join_terms(columns, terms), {"terms": info}


def _write_set(out: Path, cfg: VolumePrepareConfig, columns: pd.DataFrame,
               volumes: Callable[[list[str]], Iterator[np.ndarray]], preprocessing: list[dict[str, Any]],
               sources: list[dict[str, Any]], skipped: list[dict[str, Any]], extra: dict[str, Any],
               overwrite: bool, metadata: Path | None = None) -> dict[str, Any]:
    """Split by study, derive conditioning from train rows, write files of ``rows_per_file``, commit."""
    keys = columns["study_id"].astype(str).tolist()
    if len(keys) < 3:
        raise NeurorayError(f"{out}: only {len(keys)} usable studies/maps ({len(skipped)} skipped"
                            + (f"; first: {skipped[0]['reason']}" if skipped else "") + "); need at least 3")
    columns, terms_info = _with_terms(cfg, columns, metadata, sources)
    grid = cfg.grid
    assignment = split_groups(keys, cfg.fractions, seed=cfg.seed)
    train = np.array([assignment[k] == "train" for k in keys])
    columns, conditioning, target_stats = finish_columns(columns, train, cfg.min_journal_count)
    spec = VolumeSpec(shape=grid.shape, voxel_mm=grid.voxel_mm)
    writer = ShardSetWriter(out, spec, preprocessing=preprocessing, sources=sources,
                            rows_per_file=cfg.rows_per_file, overwrite=overwrite)
    total = sq = peak = 0.0
    count = 0
    try:
        indexed = columns.set_index("study_id", drop=False)
        for split in SPLITS:
            members = sorted(k for k in keys if assignment[k] == split)
            for start in range(0, len(members), cfg.rows_per_file):
                batch = members[start:start + cfg.rows_per_file]
                x = np.stack(list(volumes(batch)))[:, None].astype(np.float32, copy=False)
                cols = {name: indexed.loc[batch, name].to_numpy() for name in columns.columns}
                writer.write(split, x, cols)
                if split == "train":
                    total += float(x.sum(dtype=np.float64))
                    sq += float(np.square(x, dtype=np.float64).sum())
                    peak = max(peak, float(np.abs(x).max()))
                    count += x.size
        mean = total / max(count, 1)
        std = float(np.sqrt(max(sq / max(count, 1) - mean * mean, 0.0)))
        return writer.commit(
            normalization={"from": "train", "per": "voxel-global", "mean": mean, "std": std, "max_abs": peak,
                           "applied": False},
            skipped=skipped,
            extra={"grid": grid.header_like(), "splits": {"by": "study_id", "seed": cfg.seed,
                                                          "fractions": list(cfg.fractions)},
                   "prepare": asdict(cfg), "conditioning": {**conditioning, **terms_info},
                   "target_stats": target_stats, **extra},
        )
    except BaseException:
        writer.abort()
        raise


def _render_peaks(cfg: VolumePrepareConfig, peaks: pd.DataFrame,
                  mask: np.ndarray | None) -> Callable[[list[str]], Iterator[np.ndarray]]:
    by_id = {k: g[["x", "y", "z"]].to_numpy() for k, g in peaks.groupby("id", sort=False)}
    grid = cfg.grid

    def volumes(batch: list[str]) -> Iterator[np.ndarray]:
        for key in batch:
            vol = render(grid, by_id[key], cfg.kernel, cfg.fwhm_mm, cfg.radius_mm)
            if mask is not None:
                vol[~mask] = 0.0
            yield vol

    return volumes


def _peaks_on_grid(cfg: VolumePrepareConfig, peaks: pd.DataFrame, studies: pd.DataFrame, where: str,
                   mask: np.ndarray | None) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]], dict[str, int]]:
    """Drop peaks whose nearest voxel is off the grid, or (with a mask) farther from the mask than the kernel
    reaches; a study left with none is skipped.

    Peaks just outside the mask stay: reported MNI peaks often sit a few mm outside a template's brain (cortical
    surface), and like GingerALE and NiMARE (which mask after convolution) their kernel still counts inside.
    """
    grid = cfg.grid
    ijk = grid.nearest_voxel(peaks[["x", "y", "z"]].to_numpy())
    ok = grid.inside(ijk)
    counts = {"peaks_off_grid": int((~ok).sum())}
    reason = f"outside the {grid.voxel_mm:g} mm MNI152 grid"
    if mask is not None:
        from scipy import ndimage

        reach = reach_mm(cfg.kernel, cfg.fwhm_mm, cfg.radius_mm)
        to_mask = ndimage.distance_transform_edt(~mask, sampling=grid.voxel_mm)
        inside = np.flatnonzero(ok)
        distance = to_mask[ijk[inside, 0], ijk[inside, 1], ijk[inside, 2]]
        ok[inside] = distance <= reach
        counts.update(peaks_outside_mask_kept=int(((distance > 0) & (distance <= reach)).sum()),
                      peaks_beyond_mask_reach=int((distance > reach).sum()))
        reason = f"off the grid or farther than the kernel's reach ({reach:.1f} mm) from the brain mask"
    kept = peaks[ok]
    n_total = peaks.groupby("id").size()
    n_kept = kept.groupby("id").size().reindex(studies["id"], fill_value=0)
    skipped = [{"path": f"{where}#id={k}", "reason": f"all {int(n_total.get(k, 0))} peaks {reason}"}
               for k, n in n_kept.items() if n == 0]
    studies = studies.assign(n_peaks=n_kept.to_numpy()).loc[n_kept.to_numpy() > 0].reset_index(drop=True)
    return kept, studies, skipped, counts


def _drop_studies_without_year(peaks: pd.DataFrame, studies: pd.DataFrame,
                               where: str) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]]]:
    """Studies whose ``year`` is missing or not a whole number are skipped: year feeds the subset strata and the
    ``year``/``year_z`` columns, which cannot hold a gap."""
    year = pd.to_numeric(studies["year"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(year) | (year != np.round(year))
    skipped = [{"path": f"{where}#id={k}", "reason": f"year is missing or not a whole number (got {v}); the "
                "metadata's year column needs a publication year for every study"}
               for k, v in zip(studies["id"][bad], studies["year"][bad], strict=True)]
    studies = studies.loc[~bad].assign(year=year[~bad].astype(np.int32)).reset_index(drop=True)
    return peaks[peaks["id"].isin(set(studies["id"]))], studies, skipped


def _study_columns(studies: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "study_id": studies["id"].astype(str).to_numpy(dtype=object),
        "space": studies["space"].astype(str).to_numpy(dtype=object),
        "year": studies["year"].astype(np.int32).to_numpy(),
        "journal": studies["journal"].astype(str).to_numpy(dtype=object),
        "n_peaks": studies["n_peaks"].astype(np.int32).to_numpy(),
    })


def prepare_peaks(out: Path, cfg: VolumePrepareConfig, peaks: pd.DataFrame, studies: pd.DataFrame, where: str,
                  steps: list[dict[str, Any]], sources: list[dict[str, Any]], extra: dict[str, Any],
                  overwrite: bool, metadata: Path | None = None) -> dict[str, Any]:
    """MNI peaks (``id, x, y, z``) + studies (``id, space, year, journal, n_peaks``) → mask, subset, kernel, write."""
    mask = cfg.mask_array()
    peaks, studies, no_year = _drop_studies_without_year(peaks, studies, str(metadata or where))
    peaks, studies, skipped, peak_counts = _peaks_on_grid(cfg, peaks, studies, where, mask)
    skipped = no_year + skipped
    peak_counts["studies_without_year"] = len(no_year)
    eligible = len(studies)
    if cfg.subset is not None:
        studies = stratified_subset(studies, cfg.subset, seed=cfg.seed)
    peaks = peaks[peaks["id"].isin(set(studies["id"]))]
    preprocessing: list[dict[str, Any]] = [
        *steps,
        {"step": "grid", "template": "MNI152", "voxel_mm": cfg.voxel_mm, "drop": "peaks off grid"},
        *({**step, "peaks": "kept within the kernel's reach of the mask; the map is masked after the kernel"}
          for step in cfg.mask_steps()),
        *([{"step": "subset", "n": cfg.subset, "strata": "year quartile x n_peaks quartile", "seed": cfg.seed}]
          if cfg.subset is not None else []),
        cfg.kernel_step(),
    ]
    extra = {**extra, "counts": {**extra.get("counts", {}), **peak_counts, "studies_eligible": eligible},
             "subset": _strata_summary(studies)}
    return _write_set(out, cfg, _study_columns(studies), _render_peaks(cfg, peaks, mask), preprocessing, sources,
                      skipped, extra, overwrite, metadata=metadata)


def prepare_neurosynth(folder: str | Path, out: str | Path, cfg: VolumePrepareConfig,
                       overwrite: bool = False) -> dict[str, Any]:
    """A Neurosynth v7 folder (coordinates + metadata) → kernel-rendered study volumes as a shard set at ``out``."""
    files = find_files(folder)
    peaks, studies, counts = read_neurosynth(files, unknown=cfg.unknown)
    steps: list[dict[str, Any]] = [
        {"step": "join", "on": "id", "space_from": "metadata"},
        {"step": "space", "unknown": cfg.unknown, "tal_to_mni": "lancaster2007_tal2icbm_other"},
        {"step": "deduplicate", "on": ["id", "x", "y", "z"]},
    ]
    sources = [{"path": str(p.resolve()), "sha256": sha256_file(p)} for p in (files.coordinates, files.metadata)]
    return prepare_peaks(Path(out), cfg, peaks, studies, str(files.coordinates), steps, sources,
                         {"source": "neurosynth", "counts": counts}, overwrite, metadata=files.metadata)


def prepare_nifti(folder: str | Path, out: str | Path, cfg: VolumePrepareConfig,
                  overwrite: bool = False) -> dict[str, Any]:
    """A folder of 3-D maps; maps on another grid are resampled onto the MNI152 grid (``cfg.resample``)."""
    root = Path(folder)
    grid = cfg.grid
    mask = cfg.mask_array()
    paths: dict[str, Path] = {}
    resampled: list[str] = []
    skipped: list[dict[str, Any]] = []
    for path in find_nifti(root):
        key = nifti_key(path, root)
        if key in paths:  # a.nii and a.nii.gz: one study_id, two maps; keep the first (sorted) one
            skipped.append({"path": str(path), "reason": f"same study_id {key!r} as {paths[key]}; keep one of "
                            "*.nii / *.nii.gz per map name"})
            continue
        try:
            img, data = read_nifti(path)
            if not on_grid(img, data, grid):
                if cfg.resample == "none":
                    load_on_grid(path, grid, "none")  # raises NiftiSkip with the reason
                resampled.append(key)
        except NiftiSkip as e:
            skipped.append({"path": str(path), "reason": str(e)})
            continue
        paths[key] = path

    def volumes(batch: list[str]) -> Iterator[np.ndarray]:
        for key in batch:
            vol, _ = load_on_grid(paths[key], grid, cfg.resample)
            if mask is not None:
                vol[~mask] = 0.0
            yield vol

    columns = pd.DataFrame({"study_id": np.array(sorted(paths), dtype=object),
                            "path": np.array([str(paths[k]) for k in sorted(paths)], dtype=object)})
    sources = [{"path": str(p.resolve()), "sha256": sha256_file(p)} for p in paths.values()]
    preprocessing: list[dict[str, Any]] = [
        {"step": "nifti", "target": "MNI152", "voxel_mm": cfg.voxel_mm, "resample": cfg.resample,
         "via": "nibabel.processing.resample_from_to", "outside_fov": 0.0},
        *cfg.mask_steps()]
    return _write_set(Path(out), cfg, columns, volumes, preprocessing, sources, skipped,
                      {"source": "nifti", "nifti": {"resampled": sorted(resampled),
                                                    "on_grid": len(paths) - len(resampled)}}, overwrite)
