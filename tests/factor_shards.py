"""Test helper: a shard set whose four CBCL-named factors each drive their own channels (multi-target tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neuroray.datasets.shards import ShardSetWriter
from neuroray.datasets.spec import EEGWindowSpec

FACTORS = ["p_factor", "attention", "internalizing", "externalizing"]


def write_factor_shards(out: Path, n_subjects: int = 12, per_subject: int = 40, seed: int = 0,
                        null_attention: float = 0.25) -> Path:
    """Four independent factors, each the log amplitude of a 10 Hz rhythm on its own two channels (of 10),
    in its own units (loc/scale differ, so each needs its own standardization); ``attention`` is null in a
    share of the rows. Windows are z-scored already; the manifest carries the train stats like prepare's."""
    rng = np.random.default_rng(seed)
    spec = EEGWindowSpec(n_chans=10, n_times=100, sfreq=100.0, ch_names=tuple(f"E{i}" for i in range(10)))
    n = n_subjects * per_subject
    t = np.arange(spec.n_times) / spec.sfreq
    latent = rng.normal(0.0, 0.5, size=(n, 4))
    x = 0.5 * rng.standard_normal((n, spec.n_chans, spec.n_times))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    for i in range(4):
        x[:, 2 * i:2 * i + 2, :] += (np.exp(latent[:, i])[:, None] * np.sin(2 * np.pi * 10 * t + phase))[:, None, :]
    x = ((x - x.mean()) / x.std()).astype(np.float32)
    scale, loc = np.array([1.0, 10.0, 0.1, 3.0]), np.array([0.0, 50.0, -2.0, 5.0])
    values = loc + scale * (latent + 0.05 * rng.standard_normal((n, 4)))
    values[rng.random(n) < null_attention, 1] = np.nan
    subject = np.repeat(np.arange(n_subjects), per_subject)
    split = np.array(["train"] * (n_subjects - 4) + ["val"] * 2 + ["test"] * 2)[subject]
    writer = ShardSetWriter(out, spec)
    for s in ("train", "val", "test"):
        m = split == s
        writer.write(s, x[m], {"subject": np.array([f"S{k:02d}" for k in subject[m]]),
                               **{f: values[m, i] for i, f in enumerate(FACTORS)}})
    train = values[split == "train"]
    stats = {f: {"mean": float(np.nanmean(train[:, i])), "std": float(np.nanstd(train[:, i]))}
             for i, f in enumerate(FACTORS)}
    writer.commit(normalization={"from": "train", "per": "channel", "mean": [0.0] * 10, "std": [1.0] * 10},
                  extra={"target_stats": stats})
    return out
