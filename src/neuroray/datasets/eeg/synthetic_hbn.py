"""An HBN-shaped synthetic BIDS tree: REAL R1 participants.tsv and CCD events.tsv, synthetic EEGLAB signals.

Planted effects a model can learn (and a mean predictor cannot):
- challenge 1: from 0.5 s after each target, a 2 Hz wave on centro-parietal channels whose amplitude
  is linear in that trial's response time (taken from the real events);
- challenge 2: occipital 10 Hz alpha whose amplitude grows with the subject's externalizing score;
- pretrain (``movie=True``): a DespicableMe recording whose frontal channels carry one stimulus-locked
  waveform shared by every subject, so same-moment windows of different subjects are positives.
HBN is 129 channels (E1–E128 + the Cz reference, which is flat) at 500 Hz; ``sfreq`` can be lowered
to keep test trees small.
"""

from __future__ import annotations

import json
import shutil
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

import mne
import numpy as np
import pandas as pd
from scipy.signal import lfilter

from neuroray.datasets.eeg.bids import read_events
from neuroray.datasets.eeg.targets import ccd_trials
from neuroray.errors import NeurorayError
from neuroray.outputs import atomic_write

TASK = "contrastChangeDetection"
MOVIE = "DespicableMe"
RT_MEAN_S, RT_STD_S = 1.8, 0.5
UV = 1e-6


def sidecars() -> Path:
    """The packaged folder of real HBN R1 sidecars (``participants.tsv``, ``events/``)."""
    return Path(str(resources.files("neuroray.datasets.eeg") / "hbn_r1"))


def available_subjects() -> list[str]:
    """Sorted subject ids (without ``sub-``) that have run-1 events among the packaged sidecars."""
    names = sorted(p.name.split("_")[0] for p in (sidecars() / "events").glob("sub-*_run-1_events.tsv"))
    return [n.removeprefix("sub-") for n in names]


def _channel_groups() -> dict[str, np.ndarray]:
    mont = mne.channels.make_standard_montage("GSN-HydroCel-129")
    pos = np.array([mont.get_positions()["ch_pos"][c] for c in mont.ch_names])
    y, z = pos[:, 1], pos[:, 2]
    eeg = np.arange(128)  # Cz (index 128) is the reference: flat, as in HBN
    return {
        "parietal": eeg[(np.abs(y[:128]) < 0.04) & (z[:128] > 0.05)],
        "occipital": eeg[y[:128] < np.quantile(y[:128], 0.15)],
        "frontal": eeg[y[:128] > np.quantile(y[:128], 0.85)],
    }


def _background(rng: np.random.Generator, n_chans: int, n_times: int) -> np.ndarray:
    x = lfilter([1.0], [1.0, -0.95], rng.standard_normal((n_chans, n_times)), axis=1)
    return (x / x.std(axis=1, keepdims=True) * 10.0).astype(np.float64)


def _rt_wave(sfreq: float, n: int) -> np.ndarray:
    """2 Hz wave under a Hann window over 0.5–2.5 s after the target (the challenge's window)."""
    t = np.arange(n) / sfreq
    env = np.where((t >= 0.5) & (t <= 2.5), np.sin(np.pi * (t - 0.5) / 2.0) ** 2, 0.0)
    return env * np.sin(2 * np.pi * 2.0 * (t - 0.5))


def _stimulus(duration_s: float, sfreq: float) -> np.ndarray:
    rng = np.random.default_rng(12345)  # fixed: the same movie for every subject
    t = np.arange(int(duration_s * sfreq)) / sfreq
    freqs = rng.uniform(1.0, 8.0, size=6)
    phases = rng.uniform(0, 2 * np.pi, size=6)
    return np.sin(2 * np.pi * freqs[:, None] * t[None, :] + phases[:, None]).sum(axis=0)


def _export(data_uv: np.ndarray, sfreq: float, path: Path) -> None:
    info = mne.create_info(mne.channels.make_standard_montage("GSN-HydroCel-129").ch_names, sfreq, "eeg")
    raw = mne.io.RawArray(data_uv * UV, info, verbose="error")
    raw.set_montage("GSN-HydroCel-129", verbose="error")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # MNE's note that EEGLAB export is experimental
        mne.export.export_raw(path, raw, fmt="eeglab", overwrite=True, verbose="error")


def _sidecar_json(path: Path, task: str, sfreq: float, duration: float) -> None:
    meta = {"TaskName": task, "SamplingFrequency": sfreq, "EEGChannelCount": 129, "EEGReference": "Cz",
            "PowerLineFrequency": 60, "RecordingDuration": round(duration, 3), "RecordingType": "continuous"}
    path.write_text(json.dumps(meta, indent=2))


def write_synthetic_hbn(out: str | Path, n_subjects: int = 20, sfreq: float = 500.0, runs: int = 3,
                        movie: bool = False, seed: int = 0, overwrite: bool = False) -> dict[str, Any]:
    """Write the tree at ``out``; returns a summary (subjects, recordings, planted effect sizes)."""
    out = Path(out)
    if not sfreq > 0:
        raise NeurorayError(f"--synthetic-sfreq {sfreq}: must be > 0 Hz")
    if runs < 1:
        raise NeurorayError(f"--synthetic-runs {runs}: must be >= 1")
    subjects = available_subjects()
    if not 3 <= n_subjects <= len(subjects):
        raise NeurorayError(f"--synthetic-hbn {n_subjects}: between 3 and {len(subjects)} subjects "
                            "(the real R1 sidecars shipped with neuroray)")
    if not 1 <= runs <= 3:
        raise NeurorayError(f"runs={runs}: HBN has CCD runs 1–3")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise NeurorayError(f"{out}: already exists and is not empty; pass --overwrite or choose another --out")
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    src = sidecars()
    chosen = subjects[:n_subjects]
    participants = pd.read_csv(src / "participants.tsv", sep="\t", dtype=str, keep_default_na=False)
    participants = participants[participants["participant_id"].isin([f"sub-{s}" for s in chosen])]
    participants.to_csv(tmp / "participants.tsv", sep="\t", index=False)
    for name in ("participants.json", "dataset_description.json", "task-contrastChangeDetection_events.json",
                 "README.md"):
        shutil.copyfile(src / name, tmp / ("README_sidecars.md" if name == "README.md" else name))
    ext = pd.to_numeric(participants.set_index("participant_id")["externalizing"], errors="coerce")
    groups = _channel_groups()
    rng = np.random.default_rng(seed)
    n_rec = 0
    for sub in chosen:
        eeg_dir = tmp / f"sub-{sub}" / "eeg"
        eeg_dir.mkdir(parents=True)
        alpha_uv = 6.0 * max(0.2, 1.0 + 0.8 * float(np.nan_to_num(ext.get(f"sub-{sub}", 0.0))))
        for run in range(1, runs + 1):
            stem = f"sub-{sub}_task-{TASK}_run-{run}"
            events_src = src / "events" / f"{stem}_events.tsv"
            shutil.copyfile(events_src, eeg_dir / f"{stem}_events.tsv")
            events = read_events(events_src)
            duration = float(events["onset"].max()) + 3.0
            n = int(duration * sfreq)
            data = _background(rng, 129, n)
            t = np.arange(n) / sfreq
            data[groups["occipital"]] += alpha_uv * np.sin(2 * np.pi * 10.0 * t + rng.uniform(0, 2 * np.pi))
            wave = _rt_wave(sfreq, int(3.0 * sfreq))
            for onset, rt in ccd_trials(events)[["target_onset_s", "rt"]].itertuples(index=False):
                if np.isnan(rt):
                    continue
                start = int(round(onset * sfreq))
                seg = wave[: max(0, min(len(wave), n - start))]
                data[groups["parietal"], start:start + len(seg)] += 12.0 * (rt - RT_MEAN_S) / RT_STD_S * seg
            data[128] = 0.0
            _export(data, sfreq, eeg_dir / f"{stem}_eeg.set")
            _sidecar_json(eeg_dir / f"{stem}_eeg.json", TASK, sfreq, duration)
            n_rec += 1
        if movie:
            n_rec += _write_movie(eeg_dir, sub, sfreq, rng, groups)
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    summary = {"subjects": len(chosen), "recordings": n_rec, "sfreq": sfreq, "runs": runs, "movie": movie,
               "planted": {"rt_wave_uv_per_sd": 12.0, "alpha_uv": "6 * (1 + 0.8 * externalizing)"}}
    atomic_write(out / "synthetic.json", lambda p: p.write_text(json.dumps(summary, indent=2)))
    return summary


def _write_movie(eeg_dir: Path, sub: str, sfreq: float, rng: np.random.Generator,
                 groups: dict[str, np.ndarray]) -> int:
    start_s, length_s = 4.0, 50.0
    n = int((start_s + length_s + 3.0) * sfreq)
    data = _background(rng, 129, n)
    stim = _stimulus(length_s, sfreq)
    i0 = int(start_s * sfreq)
    data[groups["frontal"], i0:i0 + len(stim)] += 8.0 * stim
    data[128] = 0.0
    stem = f"sub-{sub}_task-{MOVIE}"
    _export(data, sfreq, eeg_dir / f"{stem}_eeg.set")
    _sidecar_json(eeg_dir / f"{stem}_eeg.json", MOVIE, sfreq, n / sfreq)
    pd.DataFrame({"onset": [start_s, start_s + length_s], "duration": ["n/a", "n/a"],
                  "value": ["video_start", "video_stop"]}).to_csv(eeg_dir / f"{stem}_events.tsv", sep="\t",
                                                                  index=False)
    return 1
