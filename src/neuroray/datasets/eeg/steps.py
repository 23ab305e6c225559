"""Preprocessing steps as data: ``{"step": "filter", "l_freq": 0.5, "h_freq": 40}``.

A step list is what the manifest records and what ``apply_steps`` runs on an MNE Raw, in order.
Windowing and the train-only z-score are recorded by ``prepare`` (they act on windows, not on Raw).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import mne
import numpy as np

from neuroray.datasets.eeg.readers import RecordingError, standard_montage
from neuroray.errors import ConfigError

Step = dict[str, Any]

# Named target layouts for channel adaptation.
LAYOUTS: dict[str, Callable[[], list[str]]] = {
    "hbn129": lambda: [f"E{i}" for i in range(1, 129)] + ["Cz"],
    "1020": lambda: ["Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T7", "C3", "Cz", "C4", "T8",
                     "P7", "P3", "Pz", "P4", "P8", "O1", "O2"],
}
CHANNEL_MODES = ("select", "zeropad", "interpolate")


def _pick(raw: mne.io.BaseRaw, types: Sequence[str] = ("eeg",), exclude: Sequence[str] = ()) -> mne.io.BaseRaw:
    raw.pick([ch for ch, t in zip(raw.ch_names, raw.get_channel_types(), strict=True)
              if t in types and ch not in exclude])
    return raw


def _filter(raw: mne.io.BaseRaw, l_freq: float | None = None, h_freq: float | None = None) -> mne.io.BaseRaw:
    nyquist = raw.info["sfreq"] / 2
    if h_freq is not None and h_freq >= nyquist:
        raise RecordingError(f"filter h_freq={h_freq} Hz is not below the Nyquist frequency ({nyquist} Hz) "
                             f"of a {raw.info['sfreq']} Hz recording; set h_freq below it, or 0 to skip the "
                             "low-pass (the EEG2025 release at 100 Hz is already band-passed 0.5–50 Hz)")
    return raw.filter(l_freq, h_freq, picks="all", verbose="error")


def _notch(raw: mne.io.BaseRaw, freqs: float | Sequence[float] = 60.0) -> mne.io.BaseRaw:
    base = np.atleast_1d(np.asarray(freqs, dtype=float))
    nyquist = raw.info["sfreq"] / 2
    harmonics = np.concatenate([np.arange(f, nyquist, f) for f in base])
    if len(harmonics) == 0:
        return raw
    return raw.notch_filter(harmonics, picks="all", verbose="error")


def _resample(raw: mne.io.BaseRaw, sfreq: float) -> mne.io.BaseRaw:
    if sfreq > raw.info["sfreq"]:
        raise RecordingError(f"sampling rate {raw.info['sfreq']} Hz is below the requested {sfreq} Hz; "
                             "upsampling adds no information (lower --sfreq)")
    if sfreq == raw.info["sfreq"]:
        return raw
    return raw.resample(sfreq, verbose="error")


def _reference(raw: mne.io.BaseRaw, ref: str | Sequence[str] = "average") -> mne.io.BaseRaw:
    ref_channels: Any = "average" if ref == "average" else list(np.atleast_1d(ref))
    missing = [c for c in ref_channels if c not in raw.ch_names] if ref_channels != "average" else []
    if missing:
        raise RecordingError(f"reference channel(s) {', '.join(missing)} not in the recording")
    raw.set_eeg_reference(ref_channels, verbose="error")
    return raw


def _montage_for(names: Sequence[str], montage: str | None) -> mne.channels.DigMontage:
    if montage:
        return mne.channels.make_standard_montage(montage)
    if sum(n.startswith("E") and n[1:].isdigit() for n in names) > len(names) // 2:
        return mne.channels.make_standard_montage("GSN-HydroCel-129")
    return standard_montage("1005")


def _channels(raw: mne.io.BaseRaw, target: Sequence[str], mode: str = "zeropad",
              montage: str | None = None) -> mne.io.BaseRaw:
    """Bring a recording to the ``target`` channel list, in that order.

    select: every target channel must exist; zeropad: missing ones become zeros; interpolate: missing
    ones are interpolated from their neighbours through the montage's sensor positions.
    """
    target = list(target)
    present = [c for c in target if c in raw.ch_names]
    missing = [c for c in target if c not in raw.ch_names]
    if not present:
        raise RecordingError(f"none of the {len(target)} target channels is in the recording "
                             f"(it has {', '.join(raw.ch_names[:6])}, ...)")
    if missing and mode == "select":
        raise RecordingError(f"missing target channel(s) {', '.join(missing[:8])}; use channel mode "
                             "zeropad or interpolate")
    if missing:
        info = mne.create_info(missing, raw.info["sfreq"], "eeg")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            pad = mne.io.RawArray(np.zeros((len(missing), raw.n_times)), info, verbose="error")
            raw.add_channels([pad], force_update_info=True)
    if not (missing and mode == "interpolate"):
        return raw.pick(target)
    mont = _montage_for(target, montage)
    unknown = [c for c in target if c not in mont.ch_names]
    if unknown:
        raise RecordingError(f"no sensor positions for {', '.join(unknown[:6])} in montage; "
                             "pass a montage that has them or use channel mode zeropad")
    # Every channel of the recording with a known position is a source, not only those in the target: a
    # 10-20 clinical recording (TUH) reaches HBN's 129 HydroCel sensors through its own 19 electrodes.
    extra = [c for c in raw.ch_names if c not in target and raw.get_channel_types([c])[0] == "eeg"]
    own = raw.get_montage()  # the recording's digitized positions first, else the 10-05 system's
    known = _head_positions(extra, own) if own is not None else {}
    known.update(_head_positions([c for c in extra if c not in known], standard_montage("1005")))
    pos = {**known, **_head_positions(target, mont)}
    raw.pick([*target, *[c for c in extra if c in pos]])
    raw.set_montage(mne.channels.make_dig_montage(ch_pos=pos, coord_frame="head"), on_missing="raise",
                    verbose="error")
    raw.info["bads"] = missing
    raw.interpolate_bads(reset_bads=True, verbose="error")
    return raw.pick(target)


def _head_positions(names: Sequence[str], montage: mne.channels.DigMontage) -> dict[str, np.ndarray]:
    """``names``' sensor positions in MNE's head frame (via the montage's fiducials), where it has them."""
    if not names:
        return {}
    info = mne.create_info(list(names), 100.0, "eeg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info.set_montage(montage, on_missing="ignore", verbose="error")
    return {ch["ch_name"]: ch["loc"][:3].copy() for ch in info["chs"]
            if np.isfinite(ch["loc"][:3]).all() and np.abs(ch["loc"][:3]).sum() > 0}


STEPS: dict[str, Callable[..., mne.io.BaseRaw]] = {
    "pick": _pick, "filter": _filter, "notch": _notch, "resample": _resample,
    "reference": _reference, "channels": _channels,
}


def check_steps(steps: Sequence[Step]) -> None:
    """Refuse unknown steps or parameters before any recording is read."""
    import inspect

    for i, step in enumerate(steps):
        name = step.get("step")
        if name not in STEPS:
            raise ConfigError(f"steps[{i}]: unknown step {name!r}; allowed: {', '.join(STEPS)}")
        params = set(inspect.signature(STEPS[name]).parameters) - {"raw"}
        unknown = set(step) - {"step"} - params
        if unknown:
            raise ConfigError(f"steps[{i}] ({name}): unknown parameter(s) {', '.join(sorted(unknown))}; "
                              f"allowed: {', '.join(sorted(params))}")
        if name == "channels" and step.get("mode", "zeropad") not in CHANNEL_MODES:
            raise ConfigError(f"steps[{i}] (channels): mode {step['mode']!r}; allowed: {', '.join(CHANNEL_MODES)}")


def apply_steps(raw: mne.io.BaseRaw, steps: Sequence[Step]) -> mne.io.BaseRaw:
    """Apply ``steps`` to ``raw`` in order and return the result."""
    for step in steps:
        params = {k: v for k, v in step.items() if k != "step"}
        raw = STEPS[step["step"]](raw, **params)
    return raw


def resolve_layout(channels: str | Sequence[str] | None) -> list[str] | None:
    """``hbn129`` / ``1020`` / ``Fp1,Fp2,...`` → a channel list."""
    if channels is None:
        return None
    if isinstance(channels, str):
        if channels in LAYOUTS:
            return LAYOUTS[channels]()
        channels = [c.strip() for c in channels.split(",") if c.strip()]
    names = list(channels)
    if len(set(names)) != len(names):
        raise ConfigError(f"--channels: duplicate channel names in {names}")
    if not names:
        raise ConfigError(f"--channels: empty; give a layout ({', '.join(LAYOUTS)}) or comma-separated names")
    return names
