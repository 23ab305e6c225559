"""LFP trials from Parquet: ``<name>.parquet``, one row per trial, one or several sessions per file.

Columns (``session`` and ``trial`` optional):

=========  ===============================================================================================
signal     the trial's samples: list<float>, large_list<float> or fixed_size_list<float>; within a session
           every trial has the same length
sfreq      sampling rate in Hz (one value per session)
label      int class label, e.g. genotype (one value per session)
animal     animal / subject id, str (one value per session)
session    session id, str (default: the file stem, i.e. one session per file)
trial      int trial index; rows of a session are ordered by it (default: file row order); no repeats
=========  ===============================================================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from neuroray.datasets.spectrograms.common import InputError
from neuroray.errors import one_line

if TYPE_CHECKING:
    from neuroray.datasets.spectrograms.lfp import Session

REQUIRED = ("signal", "sfreq", "label", "animal")
LAYOUT = "an LFP .parquet holds one row per trial: signal (list of float), sfreq, label, animal[, session, trial]"


def _is_numeric_list(t: pa.DataType) -> bool:
    lists = pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
    return lists and (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type))


def _one(table: pa.Table, name: str, path: Path, session: str) -> Any:
    values = table.column(name).unique().to_pylist()
    if len(values) != 1 or values[0] is None:
        raise InputError(f"{path}: column {name} must hold one value per session; session {session!r} has "
                         f"{values[:4]}")
    return values[0]


def _trials(signal: pa.ChunkedArray, path: Path, session: str) -> np.ndarray:
    arr = signal.combine_chunks()
    if arr.null_count:
        raise InputError(f"{path}: session {session!r}: signal has null trials")
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    if len(set(lengths.tolist())) != 1:
        raise InputError(f"{path}: session {session!r}: trials differ in length ({sorted(set(lengths.tolist()))[:4]} "
                         "samples); every trial of a session needs the same number of samples")
    flat = pc.list_flatten(arr)
    if flat.null_count:
        raise InputError(f"{path}: session {session!r}: signal contains null samples")
    return flat.to_numpy(zero_copy_only=False).astype(np.float64).reshape(len(arr), int(lengths[0]))


def read_parquet_sessions(path: Path) -> list[Session]:
    """Every session in one Parquet file; InputError naming the file and the missing/bad column."""
    from neuroray.datasets.spectrograms.lfp import Session

    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise InputError(f"{path}: unreadable as Parquet ({one_line(e)})") from None
    missing = [c for c in REQUIRED if c not in schema.names]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; {LAYOUT}")
    if not _is_numeric_list(schema.field("signal").type):
        raise InputError(f"{path}: column signal is {schema.field('signal').type}; {LAYOUT}")
    try:  # the footer (schema) can be intact while a data page is not; read_schema did not touch them
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"{path}: unreadable as Parquet ({one_line(e)})") from None
    if table.num_rows == 0:
        raise InputError(f"{path}: no rows; {LAYOUT}")
    if "session" in table.column_names:
        try:
            sessions = table.column("session").cast(pa.string())
        except pa.ArrowException:
            raise InputError(f"{path}: column session is {table.schema.field('session').type}; it must hold one "
                             "str (or int) session id per row") from None
        if sessions.null_count:
            raise InputError(f"{path}: column session has nulls")
        names = list(dict.fromkeys(sessions.to_pylist()))
    else:
        sessions, names = None, [path.stem]
    out: list[Session] = []
    for name in names:
        part = table if sessions is None else table.filter(pc.equal(sessions, name))
        if "trial" in part.column_names:
            order = part.column("trial").to_numpy(zero_copy_only=False)
            if len(np.unique(order)) != len(order):
                raise InputError(f"{path}: session {name!r}: column trial repeats a trial index")
            part = part.take(pa.array(np.argsort(order, kind="stable")))
        try:
            sfreq = float(_one(part, "sfreq", path, name))
            label = int(_one(part, "label", path, name))
            animal = str(_one(part, "animal", path, name))
        except (TypeError, ValueError):
            raise InputError(f"{path}: session {name!r}: sfreq must be a number, label an int") from None
        if not np.isfinite(sfreq) or sfreq <= 0:
            raise InputError(f"{path}: session {name!r}: sfreq {sfreq}: must be > 0 Hz")
        trials = _trials(part.column("signal"), path, name)
        if not np.all(np.isfinite(trials)):
            raise InputError(f"{path}: session {name!r}: signal contains NaN or inf")
        out.append(Session(path=path, session=str(name), animal=animal, label=label, sfreq=sfreq, trials=trials,
                           files=[path]))
    return out
