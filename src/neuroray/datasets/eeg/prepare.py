"""EEG preparation without Ray: one recording → windows in a work folder; finished work → a shard set.

``run.prepare`` maps ``process_recording`` over recordings on Ray. Every finished recording
leaves ``<key>.parquet`` then ``<key>.json`` (written last, so it marks completion) in the work
folder beside the output; a rerun with ``--resume`` skips those. ``assemble`` then splits by subject,
computes per-channel z-score statistics on the train split only and writes the shard set atomically.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from neuroray.datasets.eeg.bad_channels import read_bad_channels, repair_bad_channels
from neuroray.datasets.eeg.bids import PARTICIPANT_COLUMNS, Recording, read_events
from neuroray.datasets.eeg.readers import RecordingError, check_signal, companion_files, read_raw
from neuroray.datasets.eeg.steps import Step, apply_steps, check_steps, resolve_layout
from neuroray.datasets.eeg.targets import (
    Windowing,
    challenge1_windows,
    challenge2_windows,
    pretrain_windows,
)
from neuroray.datasets.shards import (
    ShardSetWriter,
    sha256_file,
    tensor_array,
    tensor_column_to_numpy,
)
from neuroray.datasets.spec import EEGWindowSpec
from neuroray.datasets.splits import SPLITS, split_groups
from neuroray.errors import NeurorayError
from neuroray.outputs import atomic_write

Target = Literal["challenge1", "challenge2", "pretrain"]
TARGETS: tuple[str, ...] = ("challenge1", "challenge2", "pretrain")
# The challenge's defaults (EEG2025): CCD windows 2 s from 0.5 s after the target; 4 s / 2 s stride.
DEFAULT_WINDOWS: dict[str, Windowing] = {
    "challenge1": Windowing(window_s=2.0, shift_s=0.5),
    "challenge2": Windowing(window_s=4.0, stride_s=2.0),
    "pretrain": Windowing(window_s=2.0, stride_s=2.0),
}
DEFAULT_TASKS: dict[str, list[str] | None] = {
    "challenge1": ["contrastChangeDetection"], "challenge2": None, "pretrain": None,
}
TARGET_COLUMN = {"challenge1": "rt", "challenge2": "externalizing", "pretrain": None}


@dataclass(frozen=True)
class EEGPrepareConfig:
    """Settings of one EEG prepare: target, preprocessing steps, windowing, tasks, split seed/fractions, file size."""

    target: str
    steps: tuple[Step, ...]
    windowing: Windowing
    tasks: tuple[str, ...] | None = None
    split_seed: int = 0
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    drop_no_response: bool = True
    rows_per_file: int = 4096

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise NeurorayError(f"--target {self.target!r}; allowed: {', '.join(TARGETS)}")
        check_steps(self.steps)

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready plain data (steps as dicts)."""
        d = asdict(self)
        d["steps"] = [dict(s) for s in self.steps]
        return d

    def digest(self) -> str:
        """What the work folder's per-recording results depend on (not the split, which comes later)."""
        d = self.to_dict()
        for later in ("split_seed", "fractions", "rows_per_file"):
            d.pop(later)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def default_steps(sfreq: float = 100.0, l_freq: float | None = 0.5, h_freq: float | None = 40.0,
                  notch: float | None = None, reference: str | None = None, channels: list[str] | None = None,
                  channel_mode: str = "zeropad", montage: str | None = None) -> tuple[Step, ...]:
    """The usual chain: EEG picks → (notch) → band-pass → (re-reference) → (channel layout) → resample."""
    steps: list[Step] = [{"step": "pick", "types": ["eeg"]}]
    if notch:
        steps.append({"step": "notch", "freqs": notch})
    if l_freq is not None or h_freq is not None:
        steps.append({"step": "filter", "l_freq": l_freq, "h_freq": h_freq})
    if reference:
        steps.append({"step": "reference", "ref": reference})
    if channels:
        steps.append({"step": "channels", "target": channels, "mode": channel_mode, "montage": montage})
    steps.append({"step": "resample", "sfreq": sfreq})
    return tuple(steps)


def make_config(target: str = "challenge1", tasks: list[str] | None = None, sfreq: float = 100.0,
                l_freq: float | None = 0.5, h_freq: float | None = 40.0, notch: float | None = None,
                reference: str | None = None, channels: str | list[str] | None = None, channel_mode: str = "zeropad",
                montage: str | None = None, window_s: float | None = None, stride_s: float | None = None,
                shift_s: float | None = None, split_seed: int = 0, keep_no_response: bool = False) -> EEGPrepareConfig:
    """The options of `neuroray prepare eeg` (and of an experiment's data.prepare) → a config."""
    if target not in TARGETS:
        raise NeurorayError(f"target {target!r}; allowed: {', '.join(TARGETS)}")
    base = DEFAULT_WINDOWS[target]
    windowing = Windowing(window_s=window_s or base.window_s,
                          stride_s=stride_s if stride_s is not None else base.stride_s,
                          shift_s=shift_s if shift_s is not None else base.shift_s)
    for name, value in (("window_s", windowing.window_s), ("stride_s", windowing.stride_s or 1.0)):
        if value <= 0:
            raise NeurorayError(f"{name}={value}: must be > 0 seconds")
    if not sfreq > 0:
        raise NeurorayError(f"--sfreq {sfreq}: must be > 0 Hz (the rate windows are resampled to)")
    for flag, freq in (("--l-freq", l_freq), ("--h-freq", h_freq), ("--notch", notch)):
        if freq is not None and freq < 0:
            raise NeurorayError(f"{flag} {freq}: must be >= 0 Hz (0 or none switches that filter off)")
    if l_freq and h_freq and l_freq >= h_freq:
        raise NeurorayError(f"--l-freq {l_freq} >= --h-freq {h_freq}: a band-pass needs l_freq < h_freq "
                            "(MNE would apply a band-stop instead)")
    tasks = tasks or DEFAULT_TASKS[target]
    return EEGPrepareConfig(
        target=target, windowing=windowing, tasks=tuple(tasks) if tasks else None, split_seed=split_seed,
        drop_no_response=not keep_no_response,
        steps=default_steps(sfreq=sfreq, l_freq=l_freq or None, h_freq=h_freq or None, notch=notch,
                            reference=reference, channels=resolve_layout(channels), channel_mode=channel_mode,
                            montage=montage),
    )


def _sources(rec: Recording) -> list[dict[str, str]]:
    files = [rec.path, *companion_files(rec.path)] + [p for p in (rec.events, rec.channels) if p is not None]
    return [{"path": str(p), "sha256": sha256_file(p)} for p in files if p.is_file()]


def windows_for(rec: Recording, cfg: EEGPrepareConfig,
                participant: dict[str, Any] | None
                ) -> tuple[np.ndarray, dict[str, np.ndarray], list[str], float, dict[str, Any] | None]:
    """Read, check, repair bad channels, preprocess and window one recording: windows, columns, channel names,
    rate and the bad-channel repair (None: none marked). RecordingError for anything unusable."""
    raw = read_raw(rec.path)
    check_signal(raw, rec.path)
    bad = repair_bad_channels(raw, read_bad_channels(rec.channels))  # before any step mixes channels
    raw = apply_steps(raw, cfg.steps)
    events = None
    if rec.events is not None:
        try:
            events = read_events(rec.events)
        except NeurorayError as e:
            raise RecordingError(str(e)) from None
    if cfg.target == "challenge1":
        if events is None:
            raise RecordingError(f"{rec.path}: no *_events.tsv beside it; challenge1 needs the CCD events")
        if "feedback" not in events.columns:
            raise RecordingError(f"{rec.events}: missing column feedback; columns: {', '.join(events.columns)}")
        x, cols = challenge1_windows(raw, events, cfg.windowing, cfg.drop_no_response)
    elif cfg.target == "challenge2":
        x, cols = challenge2_windows(raw, cfg.windowing)
    else:
        x, cols = pretrain_windows(raw, rec.task, events, cfg.windowing)
    n = len(x)
    cols = {
        "subject": np.full(n, rec.subject, dtype=object), "session": np.full(n, rec.session, dtype=object),
        "task": np.full(n, rec.task, dtype=object), "run": np.full(n, rec.run, dtype=object), **cols,
    }
    for name in PARTICIPANT_COLUMNS:
        if participant is not None and name in participant:
            value = participant[name]
            if name == "sex":
                cols[name] = np.full(n, None if pd.isna(value) else str(value), dtype=object)
            else:
                cols[name] = np.full(n, np.nan if pd.isna(value) else float(value), dtype=np.float32)
    return x, cols, list(raw.ch_names), float(raw.info["sfreq"]), bad


@dataclass
class WorkDir:
    """Per-recording results of one prepare, beside its output: ``.<out>.work/``."""

    root: Path
    digest: str
    done: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def for_output(cls, out: Path, cfg: EEGPrepareConfig) -> WorkDir:
        """The work folder beside ``out`` (``.<out>.work``), keyed by ``cfg``'s digest."""
        return cls(out.parent / f".{out.name}.work", cfg.digest())

    def exists(self) -> bool:
        """Whether the work folder has been started (holds ``config.json``)."""
        return (self.root / "config.json").is_file()

    def matches(self) -> bool:
        """Whether the folder's ``config.json`` was written for this digest (so its results can be resumed)."""
        return json.loads((self.root / "config.json").read_text()).get("digest") == self.digest

    def start(self, cfg: EEGPrepareConfig, fresh: bool) -> None:
        """Create the folder (emptied first when ``fresh``), drop stale temp files and write ``config.json``."""
        if fresh:
            shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(".*.tmp-*"):  # left by a task killed mid-write; its marker never came
            stale.unlink(missing_ok=True)
        cfg_json = json.dumps({"digest": self.digest, "config": cfg.to_dict()}, indent=2)
        atomic_write(self.root / "config.json", lambda p: p.write_text(cfg_json))

    def load_done(self) -> dict[str, dict[str, Any]]:
        """Read every finished recording's ``<key>.json`` marker into ``done`` (key → info) and return it."""
        self.done = {p.stem: json.loads(p.read_text()) for p in sorted(self.root.glob("sub-*.json"))}
        return self.done

    def remove(self) -> None:
        """Delete the work folder and everything in it."""
        shutil.rmtree(self.root, ignore_errors=True)

    def forget_failures(self) -> None:
        """After a prepare that ended in an error: a rerun reads the skipped recordings again (the user may
        have fixed them); without one finished recording there is nothing to resume, so the folder goes."""
        done = self.load_done()
        if not any("skipped" not in d and d.get("rows", 0) > 0 for d in done.values()):
            self.remove()
            return
        for key, d in done.items():
            if "skipped" in d:
                (self.root / f"{key}.json").unlink(missing_ok=True)


def process_recording(rec: Recording, cfg: EEGPrepareConfig, participant: dict[str, Any] | None,
                      work_root: str) -> dict[str, Any]:
    """Runs in a Ray task: windows → ``<key>.parquet``, then the ``<key>.json`` marker. Never raises
    for a bad recording: the marker says ``skipped`` with the reason."""
    root = Path(work_root)
    info: dict[str, Any] = {"key": rec.key, "path": str(rec.path), "subject": rec.subject}
    try:
        x, cols, ch_names, sfreq, bad = windows_for(rec, cfg, participant)
        info.update(rows=len(x), ch_names=ch_names, sfreq=sfreq, sources=_sources(rec),
                    **({"bad_channels": bad} if bad else {}))
        table = pa.table({"x": tensor_array(x) if len(x) else pa.array([], pa.null()),
                          **{k: pa.array(v, from_pandas=True) for k, v in cols.items()}})
        atomic_write(root / f"{rec.key}.parquet", lambda p: pq.write_table(table, p))
    except RecordingError as e:
        reason = str(e)  # steps (resample, filter, ...) do not know the file: name it here
        named = str(rec.path) in reason or (rec.events is not None and str(rec.events) in reason)
        info.update(skipped=reason if named else f"{rec.path}: {reason}")
    except Exception as e:  # noqa: BLE001 - any reader crash is this recording's problem, not the run's
        info.update(skipped=f"{rec.path}: {type(e).__name__}: {e}")
    text = json.dumps(info)
    atomic_write(root / f"{rec.key}.json", lambda p: p.write_text(text))
    return info


def assemble(work: WorkDir, out: Path, cfg: EEGPrepareConfig, overwrite: bool = False) -> dict[str, Any]:
    """Finished work → shard set: subject split, train-only z-score, manifest with steps, stats, sources."""
    done = work.load_done()
    skipped: list[dict[str, str]] = []
    usable = {k: d for k, d in done.items() if "skipped" not in d and d.get("rows", 0) > 0}
    skipped += [{"path": d["path"], "reason": d["skipped"]} for d in done.values() if "skipped" in d]
    skipped += [{"path": d["path"], "reason": "no windows (too short for the window, or no trials)"}
                for d in done.values() if "skipped" not in d and d.get("rows", 0) == 0]
    if not usable:
        raise NeurorayError(f"{out}: no recording produced windows ({len(skipped)} skipped"
                            + (f"; first: {skipped[0]['reason']}" if skipped else "") + ")")
    layouts = Counter((tuple(d["ch_names"]), d["sfreq"]) for d in usable.values())
    (ch_names, sfreq), _ = layouts.most_common(1)[0]
    for key, d in list(usable.items()):
        if (tuple(d["ch_names"]), d["sfreq"]) != (ch_names, sfreq):
            skipped.append({"path": d["path"], "reason": f"{len(d['ch_names'])} channels at {d['sfreq']} Hz differ "
                            f"from the majority layout ({len(ch_names)} at {sfreq} Hz); pass --channels to adapt"})
            del usable[key]
    subjects = sorted({d["subject"] for d in usable.values()})
    try:
        assignment = split_groups(subjects, cfg.fractions, seed=cfg.split_seed)
    except NeurorayError as e:  # too few subjects left: say which recordings were skipped, and why
        named = "; ".join(d["reason"] if d["reason"].startswith(d["path"]) else f"{d['path']}: {d['reason']}"
                          for d in skipped[:3])
        raise NeurorayError(f"{out}: {e}" + (f" ({len(skipped)} recording(s) skipped: {named}"
                                             + ("; …" if len(skipped) > 3 else "") + ")" if skipped else "")) from None
    mean, std, target_stats = _train_stats(work, usable, assignment)
    spec = EEGWindowSpec(n_chans=len(ch_names), n_times=cfg.windowing.n_times(sfreq), sfreq=sfreq,
                         ch_names=ch_names)
    preprocessing = [*cfg.steps, {"step": "window", **asdict(cfg.windowing)},
                     {"step": "zscore", "per": "channel", "stats_from": "train"}]
    writer = ShardSetWriter(out, spec, preprocessing=preprocessing, rows_per_file=cfg.rows_per_file,
                            sources=[s for d in usable.values() for s in d["sources"]], overwrite=overwrite)
    try:
        for split in SPLITS:
            buffer = _SplitBuffer(writer, split, cfg.rows_per_file)
            for key in sorted(usable):
                if assignment[usable[key]["subject"]] == split:
                    buffer.add(_read_part(work, key), mean, std)
            buffer.flush()
        target = TARGET_COLUMN[cfg.target]
        return writer.commit(
            normalization={"from": "train", "per": "channel", "mean": mean.tolist(), "std": std.tolist()},
            skipped=skipped,
            extra={"target": {"kind": cfg.target, "column": target}, "target_stats": target_stats,
                   "splits": {"by": "subject", "seed": cfg.split_seed, "fractions": list(cfg.fractions),
                              "subjects": {s: sorted(k for k, v in assignment.items() if v == s) for s in SPLITS}},
                   "prepare": cfg.to_dict(),
                   "bad_channels": {d["path"]: d["bad_channels"] for d in usable.values() if d.get("bad_channels")}},
        )
    except BaseException:
        writer.abort()
        raise


def _read_part(work: WorkDir, key: str) -> pa.Table:
    return pq.read_table(work.root / f"{key}.parquet")


NUMERIC_TARGETS = ("rt", *(c for c in PARTICIPANT_COLUMNS if c != "sex"))


def _train_stats(work: WorkDir, usable: dict[str, dict[str, Any]], assignment: dict[str, str]
                 ) -> tuple[np.ndarray, np.ndarray, dict[str, dict[str, float]]]:
    """One pass over the train split's parts: per-channel mean/std over every window sample (float64 sums)
    and the mean/std (population, nulls ignored) of each numeric target column."""
    total = sq = None
    count = 0
    values: dict[str, list[np.ndarray]] = {}
    for key in sorted(usable):
        if assignment[usable[key]["subject"]] != "train":
            continue
        table = _read_part(work, key)
        x = tensor_column_to_numpy(table.column("x")).astype(np.float64)
        s, q = x.sum(axis=(0, 2)), (x * x).sum(axis=(0, 2))
        total, sq = (s, q) if total is None else (total + s, sq + q)
        count += x.shape[0] * x.shape[2]
        for col in (c for c in NUMERIC_TARGETS if c in table.column_names):
            values.setdefault(col, []).append(table.column(col).to_numpy(zero_copy_only=False))
    if total is None or sq is None:
        raise NeurorayError("the train split has no windows; add recordings or change the split fractions")
    mean = total / count
    std = np.sqrt(np.maximum(sq / count - mean * mean, 0.0))
    # A flat channel (e.g. HBN's Cz reference) would divide by zero; leave it at zero instead.
    std = np.where(std > 1e-12, std, 1.0)
    targets: dict[str, dict[str, float]] = {}
    for col, parts in values.items():
        v = np.concatenate(parts).astype(np.float64)
        v = v[np.isfinite(v)]
        if len(v):
            targets[col] = {"mean": float(v.mean()), "std": float(v.std()), "count": len(v)}
    return mean.astype(np.float32), std.astype(np.float32), targets


@dataclass
class _SplitBuffer:
    """Groups recordings into files of ~rows_per_file rows instead of one small file per recording."""

    writer: ShardSetWriter
    split: str
    rows_per_file: int
    tables: list[pa.Table] = field(default_factory=list)
    rows: int = 0

    def add(self, table: pa.Table, mean: np.ndarray, std: np.ndarray) -> None:
        """Z-score ``table``'s windows with ``mean``/``std`` and buffer them; flush at ``rows_per_file`` rows."""
        x = (tensor_column_to_numpy(table.column("x")) - mean[None, :, None]) / std[None, :, None]
        self.tables.append(table.drop_columns(["x"]).append_column("x", tensor_array(x.astype(np.float32))))
        self.rows += len(table)
        if self.rows >= self.rows_per_file:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as one file of the split and empty the buffer (nothing when empty)."""
        if not self.tables:
            return
        table = pa.concat_tables(self.tables, promote_options="permissive")
        x = tensor_column_to_numpy(table.column("x"))
        cols = {name: table.column(name) for name in table.column_names if name != "x"}
        self.writer.write(self.split, x, cols)
        self.tables, self.rows = [], 0
