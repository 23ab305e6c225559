"""Bad channels from a BIDS ``*_channels.tsv`` (``status: bad``): interpolated from their neighbours (MNE's
spherical-spline ``interpolate_bads``) where the recording has channel positions, else set to zero, so a dead
or noisy electrode never reaches training as signal. Each recording's repair goes into the manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mne
import numpy as np
import pandas as pd

from neuroray.datasets.eeg.readers import RecordingError

__all__ = ["read_bad_channels", "repair_bad_channels"]


def read_bad_channels(channels_tsv: Path | None) -> list[str]:
    """The channel names a BIDS channels.tsv marks ``status: bad`` (none without the file or the column)."""
    if channels_tsv is None or not channels_tsv.is_file():
        return []
    try:
        table = pd.read_csv(channels_tsv, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as e:
        raise RecordingError(f"{channels_tsv}: not a readable BIDS channels.tsv ({type(e).__name__}: {e})") from None
    if "name" not in table.columns:
        raise RecordingError(f"{channels_tsv}: no 'name' column; a BIDS channels.tsv starts with name, type, units")
    if "status" not in table.columns:
        return []
    return [str(n) for n, s in zip(table["name"], table["status"], strict=True) if s.strip().lower() == "bad"]


def _has_positions(raw: mne.io.BaseRaw, names: list[str]) -> bool:
    locs = np.array([raw.info["chs"][raw.ch_names.index(n)]["loc"][:3] for n in names])
    return bool(np.isfinite(locs).all() and (np.abs(locs).sum(axis=1) > 0).all())


def repair_bad_channels(raw: mne.io.BaseRaw, bads: list[str]) -> dict[str, Any] | None:
    """Interpolate (or zero) the ``bads`` this recording has, in place; what was done, or None when nothing."""
    bads = [b for b in bads if b in raw.ch_names]
    if not bads:
        return None
    eeg = [raw.ch_names[i] for i in mne.pick_types(raw.info, eeg=True, exclude=[])]
    good = [c for c in eeg if c not in bads]
    if len(good) >= 3 and _has_positions(raw, eeg):
        raw.info["bads"] = bads
        raw.interpolate_bads(reset_bads=True, verbose="error")
        return {"channels": bads, "how": "interpolated (spherical spline, MNE interpolate_bads)"}
    raw.apply_function(lambda x: x * 0.0, picks=bads, channel_wise=True)
    return {"channels": bads, "how": "zeroed (the recording has no channel positions to interpolate from)"}
