"""Shard set → Ray datasets: numeric columns only (strings cannot become tensors), cached when small; per
subject fold, the train+val rows filtered by group."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray.data

from neuroray.datasets.folds import FoldPlan
from neuroray.datasets.shards import ShardSet
from neuroray.run.loop_config import PHASE_SET_PREFIX

# ``data.cache: auto`` materializes a split (once, shared by every trial) when its decoded size is under this
# share of Ray's object store; NEURORAY_CACHE_BYTES sets the bound in bytes instead (tests lower it).
STORE_SHARE = 1 / 3
CACHE_ENV = "NEURORAY_CACHE_BYTES"
_NUMERIC = ("float", "double", "int", "uint", "bool", "halffloat")


def tensor_columns(shard_set: ShardSet) -> list[str]:
    """The shard set's numeric columns (the ones batches carry as tensors)."""
    return [name for name, desc in shard_set.manifest["columns"].items()
            if str(desc["dtype"]).startswith(_NUMERIC)]


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


def decoded_bytes(shard_set: ShardSet, split: str) -> int:
    """What a split takes once decoded in memory: its rows × (the float32 sample + 8 bytes per other numeric
    column). Parquet compresses smooth maps many times over, so the file size says little about this."""
    per_row = 4 * math.prod(shard_set.spec.sample_shape) + 8 * (len(tensor_columns(shard_set)) - 1)
    return shard_set.rows(split) * per_row


def cache_bound() -> int:
    """The decoded size below which ``auto`` materializes a split: ``NEURORAY_CACHE_BYTES``, else a third
    of Ray's object store."""
    if os.environ.get(CACHE_ENV):
        return int(os.environ[CACHE_ENV])
    return int(ray.cluster_resources().get("object_store_memory", 1 << 30) * STORE_SHARE)


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB" if n < 1e9 else f"{n / 1e9:,.2f} GB"


def cache_choice(shard_set: ShardSet, split: str, cache: str) -> tuple[bool, str]:
    """(materialize?, why) for one split under ``data.cache``."""
    if cache != "auto":
        return cache == "memory", f"data.cache: {cache}"
    size, bound = decoded_bytes(shard_set, split), cache_bound()
    verdict = "fits under" if size < bound else "exceeds"
    return size < bound, f"{_mb(size)} decoded {verdict} the {_mb(bound)} bound (data.cache: auto)"


def load_datasets(shard_set: ShardSet, splits: Sequence[str] = ("train", "val"),
                  cache: str = "auto", say: bool = False,
                  extra_columns: Sequence[str] = (), label: str = "") -> dict[str, ray.data.Dataset]:
    """One Ray dataset per split, streaming Parquet; materialized when ``cache`` says so (``say``: print
    which, and why, per split). ``extra_columns``: non-tensor columns to keep too (to filter by; drop them
    before batches become tensors)."""
    columns = [*tensor_columns(shard_set), *extra_columns]
    out: dict[str, ray.data.Dataset] = {}
    for split in splits:
        files = shard_set.files(split)
        # One block per file (Ray splits blocks above 128 MiB itself): by default V1 cuts a split into
        # >= 200 blocks, ~1 row each for volumes, and every batch then gathers many tiny objects
        # (several times slower; benchmarks/RESULTS.md, "Ingest").
        with parquet_reader_v1():
            ds = ray.data.read_parquet(files, filesystem=shard_set.fs,
                                       override_num_blocks=len(files)).select_columns(columns)
        materialize, why = cache_choice(shard_set, split, cache)
        if say:
            where = "in memory" if materialize else "streamed"
            print(f"data: {label}{split} ({shard_set.rows(split)} rows) {where}: {why}", flush=True)
        if materialize:
            ds = ds.materialize()
        out[split] = ds
    return out


def _keep(table: pa.Table, by: str, members: list[str], inside: bool) -> pa.Table:
    """The rows of ``table`` whose ``by`` is (``inside``) or is not among ``members``, without ``by``."""
    mask = pc.is_in(pc.cast(table[by], pa.string()), value_set=pa.array(members, pa.string()))
    return table.filter(mask if inside else pc.invert(mask)).drop_columns([by])


def fold_datasets(shard_set: ShardSet, plan: FoldPlan, cache: str = "auto",
                  say: bool = False) -> dict[str, ray.data.Dataset]:
    """``f<k>/train`` and ``f<k>/val`` for every subject fold: the train+val rows, read (and cached) once, then
    kept or dropped by group with a Ray Data filter, so the shard set is never rewritten per fold."""
    columns = tensor_columns(shard_set)
    files = shard_set.files("train") + shard_set.files("val")
    with parquet_reader_v1():
        base = ray.data.read_parquet(files, filesystem=shard_set.fs,
                                     override_num_blocks=len(files)).select_columns([*columns, plan.by])
    fits = [cache_choice(shard_set, s, cache) for s in ("train", "val")]
    materialize = all(m for m, _ in fits)
    if say:
        rows = shard_set.rows("train") + shard_set.rows("val")
        print(f"data: train+val ({rows} rows, {plan.k} {plan.method} folds by {plan.by}) "
              f"{'in memory' if materialize else 'streamed'}: {'; '.join(w for _, w in fits)}", flush=True)
    if materialize:
        base = base.materialize()
    out: dict[str, ray.data.Dataset] = {}
    for fold in range(plan.k):
        members = plan.val_groups(fold)
        out[f"f{fold}/train"] = keep_groups(base, plan.by, members, inside=False)
        out[f"f{fold}/val"] = keep_groups(base, plan.by, members)
    return out


def keep_groups(ds: ray.data.Dataset, by: str, members: list[str], inside: bool = True) -> ray.data.Dataset:
    """``ds``'s rows whose ``by`` is (``inside``) or is not among ``members``, without the ``by`` column."""
    return ds.map_batches(partial(_keep, by=by, members=members, inside=inside), batch_format="pyarrow",
                          batch_size=None, zero_copy_batch=True)


def trial_datasets(datasets: dict[str, ray.data.Dataset], fold: int | None) -> dict[str, ray.data.Dataset]:
    """A trial's ``train`` and ``val`` (its fold's when the matrix has folds), plus every phase's own set
    (``phase-set-<i>/train``: folds split the experiment's data only)."""
    own = {k: v for k, v in datasets.items() if k.startswith(PHASE_SET_PREFIX)}
    if fold is None:
        return {**{k: v for k, v in datasets.items() if "/" not in k}, **own}
    return {**{split: datasets[f"f{fold}/{split}"] for split in ("train", "val")}, **own}


MIX_SOURCE = "mix_source"  # the column that says which source of a mixture a window came from (0, 1, …)
SOURCE_VAL = "val_source"  # a mixture source's own validation split: val_source0, val_source1, …


def _tag(batch: pa.Table, source: int) -> pa.Table:
    return batch.append_column(MIX_SOURCE, pa.array(np.full(batch.num_rows, source, np.int32)))


def mixture(sets: Sequence[ShardSet], weights: Sequence[float], cache: str = "auto",
            say: bool = False) -> dict[str, ray.data.Dataset]:
    """Several shard sets of one spec as one ``train`` stream in proportion to ``weights`` (by windows), and
    their pooled ``val`` (and each source's own, ``val_source<i>``); every row carries ``mix_source``.

    An epoch holds as many windows as the sources' train splits together; source i contributes share w_i of
    them, drawn afresh each epoch (``random_sample``, over repeats of a source that must give more windows
    than it has), so a small corpus weighted up is re-sampled, not truncated."""
    parts = {split: [load_datasets(s, (split,), cache, say=say, label=f"{s.root} ")[split] for s in sets]
             for split in ("train", "val")}
    total, norm = sum(s.rows("train") for s in sets), sum(weights)
    train = []
    for i, (ds, s, w) in enumerate(zip(parts["train"], sets, weights, strict=True)):
        want, have = w / norm * total, s.rows("train")
        repeats = max(1, math.ceil(want / have))
        stream = ds.union(*[ds] * (repeats - 1)) if repeats > 1 else ds
        if want < have * repeats:
            stream = stream.random_sample(want / (have * repeats))
        train.append(stream.map_batches(partial(_tag, source=i), batch_format="pyarrow", batch_size=None,
                                        zero_copy_batch=True))
        if say:
            print(f"data: mix[{i}] {s.root}: {100 * w / norm:.0f} % of each epoch, ~{want:.0f} of {have} train "
                  "windows", flush=True)
    val = [ds.map_batches(partial(_tag, source=i), batch_format="pyarrow", batch_size=None, zero_copy_batch=True)
           for i, ds in enumerate(parts["val"])]
    return {"train": train[0].union(*train[1:]), "val": val[0].union(*val[1:]),
            **{f"{SOURCE_VAL}{i}": ds for i, ds in enumerate(val)}}
