"""The options of `neuroray prepare volumes` and of ``data.prepare: {kind: volumes, …}``, once."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from neuroray.datasets.options import PrepareOptions

__all__ = ["VolumePrepareOptions"]


class VolumePrepareOptions(PrepareOptions):
    """Neurosynth coordinates, a folder of NIfTI maps, or a planted-signal synthetic set → MNI152 volumes."""

    sources: ClassVar[tuple[str, ...]] = ("neurosynth", "nifti", "synthetic")
    metavars: ClassVar[dict[str, str]] = {"neurosynth": "DIR", "nifti": "DIR", "synthetic": "N", "terms": "FILE"}

    neurosynth: str | None = Field(None, description="folder with Neurosynth coordinates.tsv.gz + metadata.tsv.gz")
    nifti: str | None = Field(None, description="folder of 3-D *.nii[.gz] maps; maps on another grid are "
                              "resampled onto the MNI152 grid (see --resample)")
    synthetic: int | None = Field(None, ge=3, description="N planted-signal studies (peak x depends on year)")
    voxel_mm: float = Field(2.0, description="MNI152 grid: 2 (91x109x91) or 4 (46x55x46)")
    kernel: str = Field("gaussian", description="gaussian | mkda (binary sphere)")
    fwhm: float = Field(10.0, description="Gaussian FWHM in mm")
    radius: float = Field(10.0, description="MKDA sphere radius in mm")
    mask: str = Field("none", description="none | brain (the MNI152 whole-brain mask shipped with nilearn; "
                      "nothing is downloaded) | ellipsoid (rough stand-in)")
    resample: str = Field("linear", description="--nifti maps on another grid: linear | nearest (label maps) | "
                          "none (skip them)")
    terms: str | None = Field(None, description="term/topic weights to add as term_* columns: a Neurosynth "
                              "*features.npz (its *vocabulary.txt beside it) or a TSV with an id column")
    term_names: list[str] | None = Field(None, description="labels to keep from --terms (default: all)")
    min_journal_count: int = Field(10, description="journals with fewer train studies are coded 0 = other in "
                                   "journal_code")
    unknown: str = Field("drop", description="studies whose space is UNKNOWN: drop | keep (as MNI)")
    subset: int | None = Field(None, description="stratified subset of N studies (year x peak-count bins)")
    seed: int = Field(0, description="seed of the subset, the split and the synthetic set")
    rows_per_file: int = Field(256, ge=1, description="rows per Parquet file")
