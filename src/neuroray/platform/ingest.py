"""Shard set → Ray datasets: numeric columns only (strings cannot become tensors), cached when small."""

from __future__ import annotations

import os
from collections.abc import Sequence

import ray.data

from neuroray.datasets.shards import ShardSet

# Below this many bytes a split is materialized once in the object store and shared by every trial.
CACHE_BYTES = 1 << 30
_NUMERIC = ("float", "double", "int", "uint", "bool", "halffloat")


def tensor_columns(shard_set: ShardSet) -> list[str]:
    return [name for name, desc in shard_set.manifest["columns"].items()
            if str(desc["dtype"]).startswith(_NUMERIC)]


def split_bytes(shard_set: ShardSet, split: str) -> int:
    return sum(os.path.getsize(f) for f in shard_set.files(split))


def load_datasets(shard_set: ShardSet, splits: Sequence[str] = ("train", "val"),
                  cache: str = "auto") -> dict[str, ray.data.Dataset]:
    """One Ray dataset per split, streaming Parquet; materialized when ``cache`` says so."""
    columns = tensor_columns(shard_set)
    out: dict[str, ray.data.Dataset] = {}
    for split in splits:
        ds = ray.data.read_parquet(shard_set.files(split)).select_columns(columns)
        if cache == "memory" or (cache == "auto" and split_bytes(shard_set, split) < CACHE_BYTES):
            ds = ds.materialize()
        out[split] = ds
    return out
