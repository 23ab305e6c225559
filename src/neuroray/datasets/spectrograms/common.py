"""Shared by the LFP and IQ paths: input discovery, group splits and the shard-set write."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from neuroray.datasets.shards import ShardSetWriter, sha256_file
from neuroray.datasets.spec import SpectrogramSpec
from neuroray.datasets.splits import SPLITS, split_groups
from neuroray.errors import NeurorayError


class InputError(NeurorayError):
    """One input file is unusable; the prepare records it in ``skipped`` and goes on."""


def input_files(folder: str | Path, suffixes: tuple[str, ...], flag: str) -> list[Path]:
    """The files directly in ``folder`` with one of ``suffixes``, sorted; errors name ``flag`` if none or no folder."""
    root = Path(folder)
    if not root.is_dir():
        raise NeurorayError(f"{flag} {root}: not a folder")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix in suffixes)
    if not files:
        kinds = " or ".join(filter(None, (", ".join(suffixes[:-1]), suffixes[-1])))
        raise NeurorayError(f"{flag} {root}: no {kinds} files; see `neuroray prepare "
                            "spectrograms --help` for the layout")
    return files


def scalar(value: Any, name: str, path: Path, kind: type) -> Any:
    """One ``kind`` value from an input file's field; InputError (the file is skipped) for an array or bad value."""
    try:
        return kind(np.asarray(value).item())
    except (TypeError, ValueError):
        raise InputError(f"{path}: {name} must be one {kind.__name__}; got {value!r}") from None


def check_out(out: Path, overwrite: bool) -> None:
    """Fail before any work (and before anything is written) when ``out`` is taken."""
    if out.exists() and not overwrite:
        raise NeurorayError(f"--out {out}: already exists; pass --overwrite or choose another folder")


def source(path: Path) -> dict[str, str]:
    """A manifest source entry for ``path``: its path and sha256."""
    return {"path": str(path), "sha256": sha256_file(path)}


def majority(values: list[Any]) -> Any:
    """The most common of ``values`` (the first seen among ties)."""
    return Counter(values).most_common(1)[0][0]


def assign_splits(groups: list[str], seed: int) -> tuple[dict[str, str], str | None]:
    """Group → split via :func:`split_groups`; with fewer than 3 groups everything goes to train (noted)."""
    unique = sorted(set(groups))
    if len(unique) >= 3:
        return split_groups(unique, seed=seed), None
    note = f"only {len(unique)} group(s): all rows in train; val and test are empty"
    return dict.fromkeys(unique, "train"), note


def train_stats(train: np.ndarray) -> dict[str, Any]:
    """Train rows (N, trials|receivers, freqs, frames) → global and per-frequency mean/std (float64 sums).

    Stored, not applied: a model standardizes with them (per frequency, over rows, trials and frames).
    """
    x = train.astype(np.float64)
    freq_mean = x.mean(axis=(0, 1, 3))
    freq_std = x.std(axis=(0, 1, 3))
    return {"from": "train", "mean": float(x.mean()), "std": float(x.std()), "freq_mean": freq_mean.tolist(),
            "freq_std": freq_std.tolist(), "applied": False}


def numeric_target_stats(columns: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Mean/std (population, NaN ignored) of every float column (regression targets such as pos_x, pos_y) over
    the rows given (train only); integer class labels and indices are not standardized."""
    out: dict[str, dict[str, float]] = {}
    for name, values in columns.items():
        if not np.issubdtype(np.asarray(values).dtype, np.floating):
            continue
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v)]
        if len(v):
            out[name] = {"mean": float(v.mean()), "std": float(v.std()), "count": len(v)}
    return out


def write_shard_set(out: Path, x: np.ndarray, columns: dict[str, np.ndarray], groups: np.ndarray,
                    split_by: str, seed: int, preprocessing: list[dict[str, Any]],
                    sources: list[dict[str, str]], skipped: list[dict[str, str]],
                    normalization: dict[str, Any], extra: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """Rows ``x`` (N, trials|receivers, freqs, frames) → split by ``groups`` → a committed shard set."""
    assignment, note = assign_splits([str(g) for g in groups], seed)
    split_of = np.array([assignment[str(g)] for g in groups])
    normalization = {**normalization, **train_stats(x[split_of == "train"])}
    target_stats = numeric_target_stats({k: v[split_of == "train"] for k, v in columns.items()})
    spec = SpectrogramSpec(*(int(v) for v in x.shape[1:]))
    writer = ShardSetWriter(out, spec, preprocessing=preprocessing, sources=sources, overwrite=overwrite)
    try:
        for split in SPLITS:
            rows = np.flatnonzero(split_of == split)
            writer.write(split, x[rows], {k: v[rows] for k, v in columns.items()})
        split_info: dict[str, Any] = {"by": split_by, "seed": seed, "groups": assignment}
        if note:
            split_info["note"] = note
        return writer.commit(normalization=normalization, skipped=skipped,
                             extra={"split": split_info, "target_stats": target_stats, **extra})
    except BaseException:
        writer.abort()
        raise
