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
    root = Path(folder)
    if not root.is_dir():
        raise NeurorayError(f"{flag} {root}: not a folder")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix in suffixes)
    if not files:
        raise NeurorayError(f"{flag} {root}: no {' or '.join(suffixes)} files; see `neuroray prepare "
                            "spectrograms --help` for the layout")
    return files


def check_out(out: Path, overwrite: bool) -> None:
    """Fail before any work (and before anything is written) when ``out`` is taken."""
    if out.exists() and not overwrite:
        raise NeurorayError(f"--out {out}: already exists; pass --overwrite or choose another folder")


def source(path: Path) -> dict[str, str]:
    return {"path": str(path), "sha256": sha256_file(path)}


def majority(values: list[Any]) -> Any:
    return Counter(values).most_common(1)[0][0]


def assign_splits(groups: list[str], seed: int) -> tuple[dict[str, str], str | None]:
    """Group → split via :func:`split_groups`; with fewer than 3 groups everything goes to train (noted)."""
    unique = sorted(set(groups))
    if len(unique) >= 3:
        return split_groups(unique, seed=seed), None
    note = f"only {len(unique)} group(s): all rows in train; val and test are empty"
    return dict.fromkeys(unique, "train"), note


def write_shard_set(out: Path, x: np.ndarray, columns: dict[str, np.ndarray], groups: np.ndarray,
                    split_by: str, seed: int, preprocessing: list[dict[str, Any]],
                    sources: list[dict[str, str]], skipped: list[dict[str, str]],
                    normalization: dict[str, Any], extra: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """Rows ``x`` (N, trials|receivers, freqs, frames) → split by ``groups`` → a committed shard set."""
    assignment, note = assign_splits([str(g) for g in groups], seed)
    split_of = np.array([assignment[str(g)] for g in groups])
    train = x[split_of == "train"]
    normalization = {**normalization, "from": "train",
                     "mean": float(train.mean()), "std": float(train.std()), "applied": False}
    spec = SpectrogramSpec(*(int(v) for v in x.shape[1:]))
    writer = ShardSetWriter(out, spec, preprocessing=preprocessing, sources=sources, overwrite=overwrite)
    try:
        for split in SPLITS:
            rows = np.flatnonzero(split_of == split)
            writer.write(split, x[rows], {k: v[rows] for k, v in columns.items()})
        split_info: dict[str, Any] = {"by": split_by, "seed": seed, "groups": assignment}
        if note:
            split_info["note"] = note
        return writer.commit(normalization=normalization, skipped=skipped, extra={"split": split_info, **extra})
    except BaseException:
        writer.abort()
        raise
