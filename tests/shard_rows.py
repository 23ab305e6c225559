"""Test helper: a shard set's splits as numpy arrays (imported by the spectrogram tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neuroray.datasets.shards import open_shard_set, tensor_column_to_numpy
from neuroray.datasets.splits import SPLITS


def read_rows(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """split → column → array (``x`` as an n-d array), for every split that has rows."""
    ss = open_shard_set(root)
    out = {}
    for split in SPLITS:
        if ss.rows(split):
            t = ss.read_split(split)
            out[split] = {"x": tensor_column_to_numpy(t["x"]),
                          **{c: t[c].to_numpy(zero_copy_only=False) for c in t.column_names if c != "x"}}
    return out
