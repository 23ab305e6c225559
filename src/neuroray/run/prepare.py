"""`neuroray prepare eeg`: recordings in parallel on Ray, resumable, then one atomic shard set."""

from __future__ import annotations

import glob
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from tqdm import tqdm

from neuroray.datasets.eeg.bids import PARTICIPANT_COLUMNS, Recording, find_recordings, read_participants
from neuroray.datasets.eeg.prepare import TARGET_COLUMN, EEGPrepareConfig, WorkDir, assemble, process_recording
from neuroray.datasets.shards import MANIFEST, refuse_unless_replaceable
from neuroray.errors import NeurorayError
from neuroray.run import session


@dataclass
class PrepareResult:
    """A finished EEG prepare: its manifest, recordings read now and taken from an interrupted run, seconds."""

    manifest: dict[str, Any]
    processed: int  # recordings read in this invocation (the rest came from an interrupted run)
    resumed: int
    seconds: float


def prepare_eeg(bids: str | Path, out: str | Path, cfg: EEGPrepareConfig, *, resume: bool = False,
                overwrite: bool = False, strict: bool = False, address: str | None = None,
                subjects: list[str] | None = None, progress: bool = True) -> PrepareResult:
    """Prepare the BIDS tree ``bids`` into the shard set ``out`` with recordings as Ray tasks; resumable."""
    start = time.time()
    out = Path(out).resolve()
    bids = Path(bids).resolve()  # Ray tasks read the files from other working directories
    if (out / MANIFEST).is_file() and not overwrite:
        if resume:
            import json

            return PrepareResult(json.loads((out / MANIFEST).read_text()), 0, 0, time.time() - start)
        raise NeurorayError(f"--out {out}: a shard set already exists; pass --overwrite to replace it")
    refuse_unless_replaceable(out)  # before any recording is read: a folder of other files is never replaced
    recordings = find_recordings(bids, tasks=list(cfg.tasks) if cfg.tasks else None, subjects=subjects)
    target_col = TARGET_COLUMN[cfg.target]
    needs = (target_col,) if target_col in PARTICIPANT_COLUMNS else ()
    participants = read_participants(bids, required=needs)
    work = WorkDir.for_output(out, cfg)
    if work.exists() and not overwrite:
        n_done = len(work.load_done())
        if not resume:
            raise NeurorayError(f"--out {out}: an interrupted prepare left {n_done} of {len(recordings)} recordings "
                                f"in {work.root}; pass --resume to continue it or --overwrite to start over")
        if not work.matches():
            raise NeurorayError(f"--resume: the interrupted prepare in {work.root} used other settings; "
                                "rerun with the same options or pass --overwrite to start over")
    try:
        work.start(cfg, fresh=overwrite or not work.exists())
    except OSError as e:
        raise NeurorayError(f"--out {out}: cannot write its work folder {work.root} ({e.strerror}); "
                            "choose an --out in a folder you can write") from None
    try:
        return _process(recordings, participants, work, out, cfg, start, strict=strict, overwrite=overwrite,
                        address=address, progress=progress)
    except NeurorayError:
        work.forget_failures()  # bad input, not an interruption: keep only finished recordings
        raise


def _process(recordings: list[Recording], participants: Any, work: WorkDir, out: Path, cfg: EEGPrepareConfig,
             start: float, *, strict: bool, overwrite: bool, address: str | None, progress: bool) -> PrepareResult:
    done = work.load_done()
    # Largest first: Ray starts tasks in submission order, and a long recording started last would leave the
    # other CPUs idle at the end (longest-processing-time-first scheduling).
    todo = sorted((r for r in recordings if r.key not in done), key=_recording_bytes, reverse=True)
    if strict:
        _raise_first_skip(done.values())
    if todo:
        session.start(address)
        task = ray.remote(num_cpus=1, max_retries=1)(process_recording)
        cfg_ref = ray.put(cfg)
        pending = {task.remote(r, cfg_ref, _participant(participants, r.subject), str(work.root)): r for r in todo}
        bar = tqdm(total=len(recordings), initial=len(done), desc=f"prepare {cfg.target}", unit="rec",
                   disable=not progress, file=sys.stderr, dynamic_ncols=True)
        n_skipped = sum("skipped" in d for d in done.values())
        failures: list[dict[str, Any]] = []
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                info = ray.get(ready[0])
                pending.pop(ready[0])
                n_skipped += "skipped" in info
                bar.update(1)
                bar.set_postfix(skipped=n_skipped)
                if strict and "skipped" in info:
                    # Name the first bad file in key order, whatever finished first: recordings
                    # after it are cancelled, those before it still run to completion.
                    failures.append(info)
                    first = min(f["key"] for f in failures)
                    _cancel({ref: r for ref, r in pending.items() if r.key > first})
                    pending = {ref: r for ref, r in pending.items() if r.key < first}
        except BaseException:
            _cancel(pending)
            raise
        finally:
            bar.close()
        if failures:
            _raise_first_skip(failures)
    manifest = assemble(work, out, cfg, overwrite=overwrite)
    work.remove()
    return PrepareResult(manifest, len(todo), len(done), time.time() - start)


def _recording_bytes(r: Recording) -> int:
    """The recording's size on disk, its data sidecar included (.set + .fdt, .vhdr + .eeg)."""
    return sum(f.stat().st_size for f in r.path.parent.glob(f"{glob.escape(r.path.stem)}.*") if f.is_file())


def _participant(participants: Any, subject: str) -> dict[str, Any] | None:
    if participants is None or len(participants) == 0 or subject not in participants.index:
        return None
    return {k: v for k, v in participants.loc[subject].to_dict().items() if k in PARTICIPANT_COLUMNS}


def _raise_first_skip(done: Any) -> None:
    bad = sorted((d for d in done if "skipped" in d), key=lambda d: d["key"])
    if bad:
        raise NeurorayError(f"--strict: {bad[0]['skipped']}")


def _cancel(pending: dict[Any, Any]) -> None:
    for ref in pending:
        ray.cancel(ref, force=True)


def print_result(result: PrepareResult, out: str | Path) -> None:
    """One summary line of a prepare (rows per split, skipped recordings, time) on stdout."""
    m = result.manifest
    rows = ", ".join(f"{s} {n}" for s, n in m["rows"].items())
    spec = m["spec"]
    print(f"shard set {out}: {spec['n_chans']} ch × {spec['n_times']} samples at {spec['sfreq']} Hz; rows: {rows}")
    print(f"{len(m['sources'])} source files; {len(m['skipped'])} recording(s) skipped; "
          f"{result.processed} processed now, {result.resumed} resumed; {result.seconds:.1f} s")
    for s in m["skipped"][:10]:
        print(f"  skipped {s['path']}: {s['reason']}")
