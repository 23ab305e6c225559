"""Read Neurosynth coordinate/metadata tables, join on ``id``, bring every peak to MNI space.

Space handling: ``space`` lives in the metadata (MNI, TAL or UNKNOWN). TAL peaks are converted with
Lancaster's tal2icbm transform; UNKNOWN studies are dropped (``unknown="drop"``, the default) or kept
as if MNI and flagged in the ``space`` column (``unknown="keep"``). Repeated peaks of one study (the
same x, y, z reported in several tables) are counted once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from neuroray.errors import NeurorayError

UNKNOWN_POLICIES = ("drop", "keep")
COORDINATE_COLUMNS = ("id", "x", "y", "z")
METADATA_COLUMNS = ("id", "space", "year", "journal")

# Lancaster JL, Tordesillas-Gutiérrez D, Martinez M, et al. (2007). Bias between MNI and Talairach coordinates
# analyzed using the ICBM-152 brain template. Human Brain Mapping 28(11):1194-1205. doi:10.1002/hbm.20345
# This is the published icbm_other → Talairach matrix ("other"/SPM-normalised data; BrainMap's
# icbm_other2tal.m, also used by NiMARE's utils.tal2mni). tal2icbm is its inverse.
ICBM_OTHER_TO_TAL = np.array([
    [0.9357, 0.0029, -0.0072, -1.0423],
    [-0.0065, 0.9396, -0.0726, -1.3940],
    [0.0103, 0.0752, 0.8967, 3.6475],
    [0.0, 0.0, 0.0, 1.0],
])
TAL_TO_ICBM_OTHER = np.linalg.inv(ICBM_OTHER_TO_TAL)


def tal2mni(xyz: np.ndarray) -> np.ndarray:
    """(N, 3) Talairach mm → (N, 3) MNI (ICBM-152) mm with Lancaster's tal2icbm_other."""
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    homo = np.c_[xyz, np.ones(len(xyz))]
    return (homo @ TAL_TO_ICBM_OTHER.T)[:, :3]


@dataclass(frozen=True)
class NeurosynthFiles:
    """The coordinates and metadata tables of one Neurosynth release folder."""

    coordinates: Path
    metadata: Path


def find_files(folder: str | Path) -> NeurosynthFiles:
    """``coordinates.tsv.gz`` / ``metadata.tsv.gz``, plain or with the v7 prefix
    (``data-neurosynth_version-7_coordinates.tsv.gz``)."""
    root = Path(folder)
    if not root.is_dir():
        raise NeurorayError(f"--neurosynth {root}: not a folder; expected one with coordinates.tsv.gz "
                            "and metadata.tsv.gz (Neurosynth v7)")
    found: dict[str, Path] = {}
    for kind in ("coordinates", "metadata"):
        matches = sorted(root.glob(f"*{kind}.tsv.gz")) or sorted(root.glob(f"*{kind}.tsv"))
        if len(matches) != 1:
            what = "no" if not matches else f"{len(matches)}"
            raise NeurorayError(f"--neurosynth {root}: {what} *{kind}.tsv[.gz] file(s); expected exactly one "
                                f"(e.g. {kind}.tsv.gz)")
        found[kind] = matches[0]
    return NeurosynthFiles(coordinates=found["coordinates"], metadata=found["metadata"])


def _read_table(path: Path, needed: tuple[str, ...]) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, sep="\t", dtype={"id": str})
    except (OSError, ValueError, EOFError) as e:
        raise NeurorayError(f"{path}: cannot read as a tab-separated table ({type(e).__name__}: {e})") from None
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise NeurorayError(f"{path}: missing column(s) {', '.join(missing)}; columns: {', '.join(table.columns)}")
    return table


def read_neurosynth(files: NeurosynthFiles, unknown: str = "drop") -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """→ ``(peaks, studies, counts)``.

    ``peaks``: ``id, x, y, z`` in MNI mm (TAL converted, duplicates removed). ``studies``: one row per
    study with peaks: ``id, space, year, journal, doi, title, n_peaks``. ``counts``: what was removed.
    """
    if unknown not in UNKNOWN_POLICIES:
        raise NeurorayError(f"--unknown {unknown!r}; allowed: {', '.join(UNKNOWN_POLICIES)}")
    coords = _read_table(files.coordinates, COORDINATE_COLUMNS)
    meta = _read_table(files.metadata, METADATA_COLUMNS)
    meta = meta.drop_duplicates("id")
    meta["space"] = meta["space"].fillna("UNKNOWN").astype(str).str.upper()
    counts = {"peaks_read": len(coords), "studies_read": len(meta)}
    peaks = coords.loc[:, list(COORDINATE_COLUMNS)].merge(meta[["id", "space"]], on="id", how="inner")
    counts["peaks_without_metadata"] = len(coords) - len(peaks)
    peaks = peaks.dropna(subset=["x", "y", "z"])
    if unknown == "drop":
        counts["studies_unknown_space_dropped"] = int(meta["space"].eq("UNKNOWN").sum())
        peaks = peaks[peaks["space"] != "UNKNOWN"]
    tal = peaks["space"].eq("TAL").to_numpy()
    xyz = peaks[["x", "y", "z"]].to_numpy(dtype=np.float64)
    xyz[tal] = tal2mni(xyz[tal])
    peaks = peaks.assign(x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2])
    counts["peaks_tal_converted"] = int(tal.sum())
    before = len(peaks)
    peaks = peaks.drop_duplicates(["id", "x", "y", "z"]).reset_index(drop=True)
    counts["peaks_duplicate_dropped"] = before - len(peaks)
    n_peaks = peaks.groupby("id").size().rename("n_peaks")
    studies = meta.merge(n_peaks, left_on="id", right_index=True, how="inner")
    keep = [c for c in ("id", "space", "year", "journal", "doi", "title") if c in studies.columns]
    studies = studies[[*keep, "n_peaks"]].sort_values("id").reset_index(drop=True)
    studies["journal"] = studies["journal"].fillna("").astype(str)
    return peaks[["id", "x", "y", "z"]], studies, counts
