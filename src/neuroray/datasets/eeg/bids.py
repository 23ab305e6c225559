"""BIDS discovery (through mne-bids) including the HBN-EEG layout.

``sub-*/[ses-*/]eeg/sub-*_[ses-*_]task-*[_run-*]_eeg.{set,edf,bdf,vhdr,fif}`` with their
``*_events.tsv`` / ``*_channels.tsv`` sidecars, and ``participants.tsv`` at the root.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mne_bids
import pandas as pd

from neuroray.datasets.eeg.readers import READERS
from neuroray.errors import NeurorayError

# HBN participants.tsv columns the challenges use; n/a stays null.
PARTICIPANT_COLUMNS = ("externalizing", "p_factor", "attention", "internalizing", "age", "sex")


@dataclass(frozen=True)
class Recording:
    """One BIDS EEG recording: its data file, subject/task/session/run entities and events/channels sidecars if any."""

    path: Path
    subject: str
    task: str
    session: str = ""
    run: str = ""
    events: Path | None = None
    channels: Path | None = None

    @property
    def key(self) -> str:
        """Stable, file-name-safe id: resumes and row order key on it."""
        parts = [f"sub-{self.subject}"]
        parts += [f"ses-{self.session}"] if self.session else []
        parts += [f"task-{self.task}"]
        parts += [f"run-{self.run}"] if self.run else []
        return "_".join(parts)


def _sidecar(path: Path, suffix: str) -> Path | None:
    stem = path.name.rsplit("_", 1)[0]
    candidate = path.with_name(f"{stem}_{suffix}.tsv")
    return candidate if candidate.is_file() else None


def find_recordings(root: str | Path, tasks: list[str] | None = None,
                    subjects: list[str] | None = None) -> list[Recording]:
    """Every EEG recording under a BIDS root, sorted by key; refuses a folder with none."""
    root = Path(root)
    if not root.is_dir():
        raise NeurorayError(f"--bids {root}: not a folder")
    if subjects:
        subjects = [s.removeprefix("sub-") for s in subjects]
        present = sorted(p.name.removeprefix("sub-") for p in root.glob("sub-*") if p.is_dir())
        unknown = [s for s in subjects if s not in present]
        if unknown:
            listing = ", ".join(present[:8]) + (f", … ({len(present)} in all)" if len(present) > 8 else "")
            raise NeurorayError(f"--subjects: {', '.join(unknown)} not in --bids {root} (subjects there: "
                                f"{listing or 'none'})")
    paths = mne_bids.find_matching_paths(root, datatypes="eeg", suffixes="eeg", extensions=list(READERS),
                                         tasks=tasks, subjects=subjects, ignore_json=True)
    recordings = []
    for bp in paths:
        path = Path(bp.fpath)
        recordings.append(Recording(
            path=path, subject=bp.subject, task=bp.task or "", session=bp.session or "", run=bp.run or "",
            events=_sidecar(path, "events"), channels=_sidecar(path, "channels"),
        ))
    recordings += _not_files(root, {r.path for r in recordings}, tasks, subjects)
    if not recordings:
        what = f" for task(s) {', '.join(tasks)}" if tasks else ""
        raise NeurorayError(f"--bids {root}: no EEG recordings{what} (expected "
                            f"sub-*/[ses-*/]eeg/sub-*_task-*_eeg.{{{','.join(e[1:] for e in READERS)}}})")
    return sorted(recordings, key=lambda r: r.key)


def _not_files(root: Path, found: set[Path], tasks: list[str] | None,
               subjects: list[str] | None) -> list[Recording]:
    """Recording names that are no regular file (a folder, a FIFO): mne-bids passes over them silently; kept
    here so the prepare skips them by name (a FIFO is never opened: reading one would block forever)."""
    out = []
    for ext in READERS:
        for path in root.glob(f"sub-*/**/eeg/sub-*_eeg{ext}"):
            if path in found or path.is_file() or not path.exists():
                continue
            ent = mne_bids.get_entities_from_fname(path.name)
            if (tasks and ent.get("task") not in tasks) or (subjects and ent.get("subject") not in subjects):
                continue
            out.append(Recording(path=path, subject=ent.get("subject") or "", task=ent.get("task") or "",
                                 session=ent.get("session") or "", run=ent.get("run") or "", events=None,
                                 channels=None))
    return out


def read_participants(root: str | Path, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """participants.tsv indexed by subject label (without ``sub-``); ``n/a`` → null."""
    path = Path(root) / "participants.tsv"
    if not path.is_file():
        if required:
            raise NeurorayError(f"{path}: missing; the target needs columns {', '.join(required)}")
        return pd.DataFrame()
    df = pd.read_csv(path, sep="\t", na_values=["n/a", "N/A", ""], keep_default_na=False, dtype=str)
    if "participant_id" not in df.columns:
        raise NeurorayError(f"{path}: no participant_id column; columns: {', '.join(df.columns)}")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise NeurorayError(f"{path}: missing column(s) {', '.join(missing)} the target needs; "
                            f"columns: {', '.join(df.columns)}")
    df["participant_id"] = df["participant_id"].str.removeprefix("sub-")
    df = df.set_index("participant_id")
    for col in PARTICIPANT_COLUMNS:
        if col in df.columns and col != "sex":
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def read_events(path: Path, required: tuple[str, ...] = ("onset", "value")) -> pd.DataFrame:
    """A BIDS events.tsv; ``n/a`` → null; refuses one without the columns the target needs."""
    df = pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False, dtype={"value": str})
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise NeurorayError(f"{path}: missing column(s) {', '.join(missing)}; columns: {', '.join(df.columns)}")
    df["onset"] = pd.to_numeric(df["onset"], errors="coerce")
    return df.sort_values("onset", kind="stable").reset_index(drop=True)
