"""Shard set → Ray datasets: numeric columns only (strings cannot become tensors), cached when small."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import ray.data

from neuroray.datasets.shards import ShardSet

# Below this many bytes a split is materialized once in the object store and shared by every trial.
CACHE_BYTES = 1 << 30
_NUMERIC = ("float", "double", "int", "uint", "bool", "halffloat")


def tensor_columns(shard_set: ShardSet) -> list[str]:
    """The shard set's numeric columns (the ones batches carry as tensors)."""
    return [name for name, desc in shard_set.manifest["columns"].items()
            if str(desc["dtype"]).startswith(_NUMERIC)]


def split_bytes(shard_set: ShardSet, split: str) -> int:
    """Bytes on disk of one split's Parquet files."""
    return sum(os.path.getsize(f) for f in shard_set.files(split))


@contextmanager
def parquet_reader_v1() -> Iterator[None]:
    """Read Parquet with Ray Data's V1 datasource unless the user chose (``RAY_DATA_USE_DATASOURCE_V2``).

    Ray 2.60's default V2 reader provisions a pool of 32 ``FooterReader`` actors — new worker processes —
    on every execution of a read (every epoch of a streamed split, every materialize) and kills them
    afterwards, at several times V1's cost per epoch of a small split on 2 cores; V1 reads the footers
    once when the dataset is created (figures: benchmarks/RESULTS.md, "Ingest").
    """
    ctx = ray.data.DataContext.get_current()
    if "RAY_DATA_USE_DATASOURCE_V2" in os.environ:
        yield
        return
    old, ctx.use_datasource_v2 = ctx.use_datasource_v2, False
    try:
        yield
    finally:
        ctx.use_datasource_v2 = old


def load_datasets(shard_set: ShardSet, splits: Sequence[str] = ("train", "val"),
                  cache: str = "auto") -> dict[str, ray.data.Dataset]:
    """One Ray dataset per split, streaming Parquet; materialized when ``cache`` says so."""
    columns = tensor_columns(shard_set)
    out: dict[str, ray.data.Dataset] = {}
    for split in splits:
        files = shard_set.files(split)
        # One block per file (Ray splits blocks above 128 MiB itself): by default V1 cuts a split into
        # >= 200 blocks, ~1 row each for volumes, and every batch then gathers many tiny objects
        # (several times slower; benchmarks/RESULTS.md, "Ingest").
        with parquet_reader_v1():
            ds = ray.data.read_parquet(files, override_num_blocks=len(files)).select_columns(columns)
        if cache == "memory" or (cache == "auto" and split_bytes(shard_set, split) < CACHE_BYTES):
            ds = ds.materialize()
        out[split] = ds
    return out
