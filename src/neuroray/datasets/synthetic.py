"""Planted-signal generators that write through the real shard writer.

Every generator plants a signal a model can learn and a trivial baseline cannot, so a test can
show learning (beats predicting the training mean) instead of mere running.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from neuroray.datasets.options import PrepareOptions
from neuroray.datasets.shards import ShardSetWriter
from neuroray.datasets.spec import EEGWindowSpec
from neuroray.datasets.splits import SPLITS, split_groups

ALPHA_HZ = 10.0


class SyntheticEEGOptions(PrepareOptions):
    """The planted-signal EEG set: its sizes and seed (also an experiment's ``data.prepare: {kind: synthetic_eeg}``)."""

    n_subjects: int = Field(16, ge=3, description="subjects (the split is by subject)")
    windows_per_subject: int = Field(60, ge=1, description="windows per subject")
    n_chans: int = Field(20, ge=1, description="channels")
    n_times: int = Field(200, ge=8, description="samples per window")
    sfreq: float = Field(100.0, gt=0, json_schema_extra={"unit": "Hz"}, description="sampling rate in Hz")
    seed: int = Field(0, description="seed of the signal and of the split")


def eeg_band_power_windows(**params: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows whose target is the log amplitude of a 10 Hz rhythm on the posterior half of channels.

    Returns ``(x, y, subject_index)``. Background: per-channel 1/f-like noise with a subject-specific
    gain (so raw variance alone does not give the answer); y is standardized and carries 10% noise.
    """
    o = SyntheticEEGOptions(**params)
    n_subjects, windows_per_subject, n_chans, n_times, sfreq = (o.n_subjects, o.windows_per_subject, o.n_chans,
                                                                 o.n_times, o.sfreq)
    rng = np.random.default_rng(o.seed)
    n = n_subjects * windows_per_subject
    t = np.arange(n_times) / sfreq
    white = rng.standard_normal((n, n_chans, n_times)).astype(np.float32)
    # 1/f-ish background: a leaky integrator of white noise, then re-scaled per subject.
    background = np.empty_like(white)
    acc = np.zeros((n, n_chans), dtype=np.float32)
    for i in range(n_times):
        acc = 0.9 * acc + white[:, :, i]
        background[:, :, i] = acc
    subject = np.repeat(np.arange(n_subjects), windows_per_subject)
    gain = rng.uniform(0.7, 1.3, size=n_subjects)[subject].astype(np.float32)
    background *= gain[:, None, None] / background.std()
    log_amp = rng.normal(0.0, 0.5, size=n)
    phase = rng.uniform(0, 2 * np.pi, size=n)
    posterior = np.arange(n_chans // 2, n_chans)
    weights = rng.uniform(0.5, 1.0, size=len(posterior))
    rhythm = np.exp(log_amp)[:, None] * np.sin(2 * np.pi * ALPHA_HZ * t[None, :] + phase[:, None])
    x = background
    x[:, posterior, :] += (weights[None, :, None] * rhythm[:, None, :]).astype(np.float32)
    y = (log_amp - log_amp.mean()) / log_amp.std()
    y = (y + 0.1 * rng.standard_normal(n)).astype(np.float32)
    return x, y, subject


def write_synthetic_eeg(out: str | Path, overwrite: bool = False, **params: Any) -> dict[str, Any]:
    """Write a subject-split, train-normalized synthetic EEG shard set (``params``: SyntheticEEGOptions'
    fields); returns its manifest."""
    o = SyntheticEEGOptions(**params)
    params = o.model_dump()
    n_subjects, windows_per_subject, n_chans, n_times, sfreq, seed = (
        o.n_subjects, o.windows_per_subject, o.n_chans, o.n_times, o.sfreq, o.seed)
    x, y, subject_idx = eeg_band_power_windows(**params)
    subjects = np.array([f"S{s:03d}" for s in subject_idx])
    assignment = split_groups(list(subjects), seed=seed)
    split_of = np.array([assignment[s] for s in subjects])
    train = split_of == "train"
    mean = x[train].mean(axis=(0, 2))
    std = x[train].std(axis=(0, 2)) + 1e-8
    x = (x - mean[None, :, None]) / std[None, :, None]
    spec = EEGWindowSpec(n_chans=n_chans, n_times=n_times, sfreq=sfreq,
                         ch_names=tuple(f"EEG{i:03d}" for i in range(n_chans)))
    writer = ShardSetWriter(
        out=Path(out), spec=spec, overwrite=overwrite,
        preprocessing=[{"step": "zscore", "per": "channel", "stats_from": "train"}],
        sources=[{"generator": "neuroray.datasets.synthetic.write_synthetic_eeg", "params": params}],
    )
    try:
        onset = np.tile(np.arange(windows_per_subject) * n_times / sfreq, n_subjects)
        for split in SPLITS:
            m = split_of == split
            writer.write(split, x[m], {
                "y": y[m], "subject": subjects[m], "session": np.full(m.sum(), "01"),
                "task": np.full(m.sum(), "synthetic"), "run": np.ones(m.sum(), dtype=np.int32),
                "onset_s": onset[m].astype(np.float32),
            })
        return writer.commit(
            normalization={"from": "train", "per": "channel", "mean": mean.tolist(), "std": std.tolist()},
            extra={"targets": {"y": "standardized log amplitude of a 10 Hz rhythm on posterior channels"}},
        )
    except BaseException:
        writer.abort()
        raise
