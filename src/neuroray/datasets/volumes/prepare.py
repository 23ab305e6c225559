"""Volumes → shard set: Neurosynth peaks, a folder of NIfTI maps, or a planted-signal synthetic set.

Every row is one study (or one NIfTI map): ``x`` is float32 (1, X, Y, Z) on the MNI152 grid; conditioning
columns ``study_id, space, year, journal, n_peaks`` (Neurosynth, synthetic) or ``study_id, path`` (NIfTI).
Splits are by study id (seeded). Values are kernel maps in [0, 1] and are written as they are; the
manifest's ``normalization`` records the train split's voxel mean/std with ``applied: false``.
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
from neuroray.datasets.volumes.grid import Grid, ellipsoid_mask, mni152
from neuroray.datasets.volumes.kernels import check_kernel, render
from neuroray.datasets.volumes.neurosynth import UNKNOWN_POLICIES, find_files, read_neurosynth
from neuroray.datasets.volumes.nifti import NiftiSkip, find_nifti, load_nifti, nifti_key
from neuroray.errors import NeurorayError

MASKS = ("none", "ellipsoid")


@dataclass(frozen=True)
class VolumePrepareConfig:
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

    def __post_init__(self) -> None:
        mni152(self.voxel_mm)  # validates the voxel size
        check_kernel(self.kernel, self.fwhm_mm, self.radius_mm)
        if self.mask not in MASKS:
            raise NeurorayError(f"--mask {self.mask!r}; allowed: {', '.join(MASKS)}")
        if self.unknown not in UNKNOWN_POLICIES:
            raise NeurorayError(f"--unknown {self.unknown!r}; allowed: {', '.join(UNKNOWN_POLICIES)}")
        if self.subset is not None and self.subset < 3:
            raise NeurorayError(f"--subset {self.subset}: must be >= 3 (train/val/test each need a study)")

    @property
    def grid(self) -> Grid:
        return mni152(self.voxel_mm)

    def kernel_step(self) -> dict[str, Any]:
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


Row = tuple[str, np.ndarray]  # (study id, (X, Y, Z) volume)


def _write_set(out: Path, cfg: VolumePrepareConfig, keys: list[str], columns: pd.DataFrame,
               volumes: Callable[[list[str]], Iterator[np.ndarray]], preprocessing: list[dict[str, Any]],
               sources: list[dict[str, Any]], skipped: list[dict[str, Any]], extra: dict[str, Any],
               overwrite: bool) -> dict[str, Any]:
    """Split ``keys`` by study, write each split in files of ``rows_per_file`` rows, commit the manifest."""
    if len(keys) < 3:
        raise NeurorayError(f"{out}: only {len(keys)} usable studies/maps ({len(skipped)} skipped"
                            + (f"; first: {skipped[0]['reason']}" if skipped else "") + "); need at least 3")
    grid = cfg.grid
    assignment = split_groups(keys, cfg.fractions, seed=cfg.seed)
    spec = VolumeSpec(shape=grid.shape, voxel_mm=grid.voxel_mm)
    writer = ShardSetWriter(out, spec, preprocessing=preprocessing, sources=sources,
                               rows_per_file=cfg.rows_per_file, overwrite=overwrite)
    total = sq = 0.0
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
                    count += x.size
        mean = total / max(count, 1)
        std = float(np.sqrt(max(sq / max(count, 1) - mean * mean, 0.0)))
        return writer.commit(
            normalization={"from": "train", "per": "voxel-global", "mean": mean, "std": std, "applied": False},
            skipped=skipped,
            extra={"grid": grid.header_like(), "splits": {"by": "study_id", "seed": cfg.seed,
                                                          "fractions": list(cfg.fractions)},
                   "prepare": asdict(cfg), **extra},
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
                   mask: np.ndarray | None) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]]]:
    """Drop peaks whose nearest voxel is off the grid (or outside the mask); a study left with none is skipped."""
    grid = cfg.grid
    ijk = grid.nearest_voxel(peaks[["x", "y", "z"]].to_numpy())
    ok = grid.inside(ijk)
    if mask is not None:
        inside = np.flatnonzero(ok)
        ok[inside] = mask[ijk[inside, 0], ijk[inside, 1], ijk[inside, 2]]
    kept = peaks[ok]
    n_total = peaks.groupby("id").size()
    n_kept = kept.groupby("id").size().reindex(studies["id"], fill_value=0)
    region = "the brain mask" if mask is not None else f"the {grid.voxel_mm:g} mm MNI152 grid"
    skipped = [{"path": f"{where}#id={k}", "reason": f"all {int(n_total.get(k, 0))} peaks outside {region}"}
               for k, n in n_kept.items() if n == 0]
    studies = studies.assign(n_peaks=n_kept.to_numpy()).loc[n_kept.to_numpy() > 0].reset_index(drop=True)
    return kept, studies, skipped


def _study_columns(studies: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "study_id": studies["id"].astype(str).to_numpy(dtype=object),
        "space": studies["space"].astype(str).to_numpy(dtype=object),
        "year": studies["year"].astype(np.int32).to_numpy(),
        "journal": studies["journal"].astype(str).to_numpy(dtype=object),
        "n_peaks": studies["n_peaks"].astype(np.int32).to_numpy(),
    })


def prepare_neurosynth(folder: str | Path, out: str | Path, cfg: VolumePrepareConfig,
                       overwrite: bool = False) -> dict[str, Any]:
    files = find_files(folder)
    peaks, studies, counts = read_neurosynth(files, unknown=cfg.unknown)
    mask = ellipsoid_mask(cfg.grid) if cfg.mask == "ellipsoid" else None
    peaks, studies, skipped = _peaks_on_grid(cfg, peaks, studies, str(files.coordinates), mask)
    eligible = len(studies)
    if cfg.subset is not None:
        studies = stratified_subset(studies, cfg.subset, seed=cfg.seed)
    peaks = peaks[peaks["id"].isin(set(studies["id"]))]
    preprocessing: list[dict[str, Any]] = [
        {"step": "join", "on": "id", "space_from": "metadata"},
        {"step": "space", "unknown": cfg.unknown, "tal_to_mni": "lancaster2007_tal2icbm_other"},
        {"step": "deduplicate", "on": ["id", "x", "y", "z"]},
        {"step": "grid", "template": "MNI152", "voxel_mm": cfg.voxel_mm, "drop": "peaks off grid"},
        *([{"step": "mask", "kind": "ellipsoid"}] if mask is not None else []),
        *([{"step": "subset", "n": cfg.subset, "strata": "year quartile x n_peaks quartile", "seed": cfg.seed}]
          if cfg.subset is not None else []),
        cfg.kernel_step(),
    ]
    sources = [{"path": str(p.resolve()), "sha256": sha256_file(p)} for p in (files.coordinates, files.metadata)]
    columns = _study_columns(studies)
    return _write_set(Path(out), cfg, columns["study_id"].tolist(), columns, _render_peaks(cfg, peaks, mask),
                      preprocessing, sources, skipped,
                      {"source": "neurosynth", "counts": {**counts, "studies_eligible": eligible},
                       "conditioning": ["year", "n_peaks", "journal"], "subset": _strata_summary(studies)},
                      overwrite)


def prepare_nifti(folder: str | Path, out: str | Path, cfg: VolumePrepareConfig,
                  overwrite: bool = False) -> dict[str, Any]:
    """A folder of maps already on the chosen MNI152 grid; maps on another grid are skipped with the reason."""
    root = Path(folder)
    grid = cfg.grid
    mask = ellipsoid_mask(grid) if cfg.mask == "ellipsoid" else None
    paths: dict[str, Path] = {}
    skipped: list[dict[str, Any]] = []
    for path in find_nifti(root):
        try:
            load_nifti(path, grid)
        except NiftiSkip as e:
            skipped.append({"path": str(path), "reason": str(e)})
            continue
        paths[nifti_key(path, root)] = path

    def volumes(batch: list[str]) -> Iterator[np.ndarray]:
        for key in batch:
            vol = load_nifti(paths[key], grid)
            if mask is not None:
                vol[~mask] = 0.0
            yield vol

    columns = pd.DataFrame({"study_id": np.array(sorted(paths), dtype=object),
                            "path": np.array([str(paths[k]) for k in sorted(paths)], dtype=object)})
    sources = [{"path": str(p.resolve()), "sha256": sha256_file(p)} for p in paths.values()]
    preprocessing: list[dict[str, Any]] = [{"step": "nifti", "require_grid": "MNI152", "voxel_mm": cfg.voxel_mm},
                     *([{"step": "mask", "kind": "ellipsoid"}] if mask is not None else [])]
    return _write_set(Path(out), cfg, sorted(paths), columns, volumes, preprocessing, sources, skipped,
                      {"source": "nifti"}, overwrite)


# --- synthetic -------------------------------------------------------------------------------------------------

SYNTHETIC_YEARS = (2000, 2017)
SYNTHETIC_JOURNALS = ("NeuroImage", "Human Brain Mapping", "Cerebral Cortex")


def synthetic_studies(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Planted signal: every study's first peak sits at x = -50 + 100·(year - 2000)/17 mm, y = -20, z = 20
    (jitter sd 2 mm, clipped to ±3 mm), so a model conditioned on ``year`` can place it; 0–4 more peaks lie
    at random inside the brain ellipsoid (distractors)."""
    if n < 3:
        raise NeurorayError(f"--synthetic {n}: need at least 3 studies")
    rng = np.random.default_rng(seed)
    lo, hi = SYNTHETIC_YEARS
    years = rng.integers(lo, hi + 1, size=n)
    rows: list[tuple[str, float, float, float]] = []
    n_peaks = np.zeros(n, dtype=np.int32)
    ids = [f"synth-{i:05d}" for i in range(n)]
    for i, (key, year) in enumerate(zip(ids, years, strict=True)):
        jitter = np.clip(rng.normal(0, 2.0, 3), -3.0, 3.0)
        planted = np.array([-50.0 + 100.0 * (year - lo) / (hi - lo), -20.0, 20.0]) + jitter
        extra = rng.integers(0, 5)
        direction = rng.normal(size=(extra, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        radius = rng.uniform(0, 0.7, size=(extra, 1)) ** (1 / 3)
        distractors = np.array([0.0, -16.0, 12.0]) + direction * radius * np.array([70.0, 88.0, 68.0])
        for p in (planted, *distractors):
            rows.append((key, float(p[0]), float(p[1]), float(p[2])))
        n_peaks[i] = 1 + extra
    peaks = pd.DataFrame(rows, columns=["id", "x", "y", "z"])
    studies = pd.DataFrame({"id": ids, "space": "MNI", "year": years.astype(np.int32),
                            "journal": rng.choice(SYNTHETIC_JOURNALS, size=n), "n_peaks": n_peaks})
    return peaks, studies


def write_synthetic_volumes(out: str | Path, n: int, cfg: VolumePrepareConfig,
                            overwrite: bool = False) -> dict[str, Any]:
    peaks, studies = synthetic_studies(n, seed=cfg.seed)
    mask = ellipsoid_mask(cfg.grid) if cfg.mask == "ellipsoid" else None
    peaks, studies, skipped = _peaks_on_grid(cfg, peaks, studies, "synthetic", mask)
    columns = _study_columns(studies)
    preprocessing: list[dict[str, Any]] = [{"step": "synthetic", "n": n, "seed": cfg.seed,
                      "planted": "first peak at x = -50 + 100*(year-2000)/17 mm, y=-20, z=20 "
                                                 "(jitter sd 2 mm, clip 3 mm)"},
                     *([{"step": "mask", "kind": "ellipsoid"}] if mask is not None else []),
                     cfg.kernel_step()]
    return _write_set(Path(out), cfg, columns["study_id"].tolist(), columns, _render_peaks(cfg, peaks, mask),
                      preprocessing, [], skipped,
                      {"source": "synthetic", "conditioning": ["year", "n_peaks", "journal"]}, overwrite)
