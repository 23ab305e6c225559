"""Planted-signal Neurosynth-like studies: the first peak of every study moves with its publication year."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neuroray.datasets.volumes.grid import MASK_CENTER_MM, MASK_SEMI_AXES_MM
from neuroray.datasets.volumes.prepare import VolumePrepareConfig, prepare_peaks
from neuroray.errors import NeurorayError

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
        distractors = np.array(MASK_CENTER_MM) + direction * radius * np.array(MASK_SEMI_AXES_MM)
        for p in (planted, *distractors):
            rows.append((key, float(p[0]), float(p[1]), float(p[2])))
        n_peaks[i] = 1 + extra
    peaks = pd.DataFrame(rows, columns=["id", "x", "y", "z"])
    studies = pd.DataFrame({"id": ids, "space": "MNI", "year": years.astype(np.int32),
                            "journal": rng.choice(SYNTHETIC_JOURNALS, size=n), "n_peaks": n_peaks})
    return peaks, studies


def synthetic_step(n: int, seed: int) -> dict[str, Any]:
    """The manifest's preprocessing entry for a synthetic set of ``n`` studies and its planted signal."""
    return {"step": "synthetic", "n": n, "seed": seed,
            "planted": "first peak at x = -50 + 100*(year-2000)/17 mm, y=-20, z=20 (jitter sd 2 mm, clip 3 mm)"}


def write_synthetic_volumes(out: str | Path, n: int, cfg: VolumePrepareConfig,
                            overwrite: bool = False) -> dict[str, Any]:
    """``n`` planted-signal studies (:func:`synthetic_studies`) rendered and written as a shard set at ``out``."""
    peaks, studies = synthetic_studies(n, seed=cfg.seed)
    return prepare_peaks(Path(out), cfg, peaks, studies, "synthetic", [synthetic_step(n, cfg.seed)], [],
                         {"source": "synthetic"}, overwrite)
