"""Read EEG recordings through MNE and normalize channel names and types.

Clinical exports label channels like ``EEG FP1-REF`` or ``POL E``; models need ``Fp1`` and EEG-only
picks. Names are matched case-insensitively against the 10-05 system to restore canonical case;
ECG/EOG/EMG and polygraphic channels get their own types so ``pick("eeg")`` keeps them out.
"""

from __future__ import annotations

import re
import warnings
from functools import cache
from pathlib import Path

import mne
import numpy as np

from neuroray.errors import NeurorayError

READERS = {".set": "eeglab", ".edf": "edf", ".bdf": "bdf", ".vhdr": "brainvision", ".fif": "fif"}
# Files that must sit beside the main one; missing → the recording is unreadable, said up front.
_COMPANIONS = {".vhdr": (".eeg", ".vmrk")}

_TYPE_PREFIXES = {"EEG": "eeg", "ECG": "ecg", "EKG": "ecg", "EOG": "eog", "EMG": "emg", "RESP": "resp"}
_REF_SUFFIX = re.compile(r"[-_ ](REF|LE|AR|AVG|M1|M2|A1|A2)$", re.IGNORECASE)
_KEYWORD_TYPES = (("ECG", "ecg"), ("EKG", "ecg"), ("EOG", "eog"), ("EMG", "emg"))


class RecordingError(NeurorayError):
    """A recording that cannot be used; ``prepare`` records it in the manifest's ``skipped``."""


@cache
def standard_names() -> dict[str, str]:
    """lower-case → canonical 10-05 name (``fp1`` → ``Fp1``)."""
    return {name.lower(): name for name in standard_montage("1005").ch_names}


def standard_montage(system: str) -> mne.channels.DigMontage:
    """MNE's standard ``system`` montage (e.g. ``1005``): ``colin27_<system>`` where MNE has it, else
    ``standard_<system>``."""
    # MNE 1.13 renamed standard_10xx to colin27_10xx; older MNE only has the former.
    builtin = mne.channels.get_builtin_montages()
    name = f"colin27_{system}" if f"colin27_{system}" in builtin else f"standard_{system}"
    return mne.channels.make_standard_montage(name)


def companion_files(path: Path) -> list[Path]:
    """Files a recording's data live in besides ``path`` (EEGLAB .fdt when the .set refers to one)."""
    suffix = path.suffix.lower()
    out = [path.with_suffix(ext) for ext in _COMPANIONS.get(suffix, ())]
    if suffix == ".set" and path.with_suffix(".fdt").exists():
        out.append(path.with_suffix(".fdt"))
    return out


def read_raw(path: str | Path, preload: bool = True) -> mne.io.BaseRaw:
    """Any supported recording → MNE Raw with normalized channel names and types.

    Raises RecordingError with the file name and the cause for anything unreadable.
    """
    path = Path(path)
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise RecordingError(f"{path}: unsupported format {path.suffix!r}; allowed: {', '.join(sorted(READERS))}")
    if path.exists() and not path.is_file():  # a FIFO would block the reader forever; a folder is no recording
        raise RecordingError(f"{path}: not a regular file (a folder, FIFO, socket or device); skipped")
    if not path.is_file():
        raise RecordingError(f"{path}: file not found")
    for companion in _COMPANIONS.get(path.suffix.lower(), ()):
        if not path.with_suffix(companion).is_file():
            raise RecordingError(f"{path}: its data file {path.with_suffix(companion).name} is missing")
    if kind in ("edf", "bdf"):
        _check_edf_size(path)
    try:
        with warnings.catch_warnings():
            # MNE warns about every unusual header field; the errors that matter raise.
            warnings.simplefilter("ignore", RuntimeWarning)
            reader = getattr(mne.io, f"read_raw_{kind}")
            raw = reader(path, preload=preload, verbose="error")
    except FileNotFoundError as e:
        if kind == "eeglab":  # MNE: "Could not find the .fdt data file, tried A.fdt and B.fdt."
            tried = re.findall(r"([^\s/]+\.fdt)", str(e))
            missing = " or ".join(dict.fromkeys(tried)) or "its .fdt"
            raise RecordingError(f"{path}: its data file {missing} is missing (this .set keeps its samples "
                                 "in a .fdt beside it)") from None
        raise RecordingError(f"{path}: {e}") from None
    except (ValueError, OSError, KeyError, IndexError, TypeError, NotImplementedError) as e:
        raise RecordingError(f"{path}: unreadable {kind} file ({type(e).__name__}: {e})") from None
    normalize_channels(raw)
    return raw


def _check_edf_size(path: Path) -> None:
    """A truncated EDF/BDF: MNE would read it with a warning and a short signal; refuse it instead."""
    with open(path, "rb") as f:
        header = f.read(256)
        if len(header) < 256:
            raise RecordingError(f"{path}: truncated EDF/BDF header ({len(header)} of 256 bytes)")
        try:
            header_bytes = int(header[184:192].decode("ascii").strip())
            n_records = int(header[236:244].decode("ascii").strip())
            n_signals = int(header[252:256].decode("ascii").strip())
            f.seek(256 + n_signals * 216)
            samples = [int(f.read(8).decode("ascii").strip() or 0) for _ in range(n_signals)]
        except ValueError:
            raise RecordingError(f"{path}: corrupt EDF/BDF header (non-numeric size fields)") from None
    width = 3 if path.suffix.lower() == ".bdf" else 2
    expected = header_bytes + max(n_records, 0) * sum(samples) * width
    actual = path.stat().st_size
    if n_records > 0 and actual < expected:
        raise RecordingError(f"{path}: truncated: {actual} bytes, the header promises {expected} "
                             f"({n_records} records)")


def normalize_channel_name(name: str) -> tuple[str, str | None]:
    """``EEG FP1-REF`` → (``Fp1``, ``eeg``); the type is None when the label does not say."""
    label = name.strip()
    ch_type: str | None = None
    head, _, rest = label.partition(" ")
    if rest:
        prefix = head.upper()
        if prefix in _TYPE_PREFIXES:
            ch_type, label = _TYPE_PREFIXES[prefix], rest.strip()
        else:  # POL, SaO2, Photic …: polygraphic or other non-EEG inputs
            return label, "misc"
    bare = _REF_SUFFIX.sub("", label)
    canonical = standard_names().get(bare.lower())
    if canonical is not None:
        return canonical, ch_type or ("eeg" if ch_type is None else ch_type)
    if ch_type is None:
        upper = label.upper()
        ch_type = next((t for key, t in _KEYWORD_TYPES if key in upper), None)
    return (label if ch_type != "eeg" else name.strip()), ch_type


def normalize_channels(raw: mne.io.BaseRaw) -> None:
    """Rename to canonical 10-05 names where a label matches one and set types; in place."""
    renames: dict[str, str] = {}
    types: dict[str, str] = {}
    taken = set(raw.ch_names)
    for ch in raw.ch_names:
        new, ch_type = normalize_channel_name(ch)
        if new != ch and new not in taken:
            renames[ch] = new
            taken.add(new)
        if ch_type is not None:
            types[renames.get(ch, ch)] = ch_type
    if renames:
        raw.rename_channels(renames)
    current = dict(zip(raw.ch_names, raw.get_channel_types(), strict=True))
    changed = {ch: t for ch, t in types.items() if current.get(ch) != t}
    if changed:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "unit changed" notes for retyped channels
            raw.set_channel_types(changed, verbose="error")


def check_signal(raw: mne.io.BaseRaw, path: Path) -> None:
    """Refuse recordings a model cannot learn from: non-finite samples or every EEG channel flat."""
    picks = mne.pick_types(raw.info, eeg=True)
    if len(picks) == 0:
        raise RecordingError(f"{path}: no EEG channels (types found: {sorted(set(raw.get_channel_types()))})")
    data = raw.get_data(picks=picks)
    bad = ~np.isfinite(data)
    if bad.any():
        names = [raw.ch_names[picks[i]] for i in np.flatnonzero(bad.any(axis=1))[:5]]
        raise RecordingError(f"{path}: {int(bad.sum())} NaN/inf samples (channels {', '.join(names)})")
    if np.all(np.ptp(data, axis=1) == 0):
        raise RecordingError(f"{path}: every EEG channel is flat (constant)")
