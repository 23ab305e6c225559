"""Planted-signal inputs, written in the ``--lfp`` / ``--iq`` layouts and prepared through the same path.

* LFP: animals alternate wild type (label 0) and knock-out (label 1); every session is 1/f-like
  background (AR(1) of white noise) with a random per-session gain; knock-out sessions add band-limited
  30–80 Hz noise (raised gamma power). One session per animal by default.
* IQ: receivers at the corners of the unit square; a burst of band-limited complex noise leaves the
  source at a fixed time and reaches receiver i after ``delay_per_unit · d_i`` samples with amplitude
  ``1 / (0.2 + d_i)``, so arrival time and power across receivers encode (pos_x, pos_y).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
from scipy import signal

from neuroray.errors import NeurorayError

GAMMA_HZ = (30.0, 80.0)
RECEIVERS = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])


MARKER = ".neuroray-synthetic"  # in every folder of synthetic inputs: only such a folder is ever replaced


def _fresh(folder: str | Path, overwrite: bool) -> Path:
    root = Path(folder)
    if root.exists():
        if not overwrite:
            raise NeurorayError(f"{root}: already exists; pass --overwrite or choose another folder")
        if not (root / MARKER).is_file():
            raise NeurorayError(f"{root}: not a folder of neuroray's synthetic inputs (no {MARKER}); "
                                "--overwrite replaces only those. Move it away or pass --inputs elsewhere")
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / MARKER).write_text("synthetic inputs written by neuroray prepare spectrograms\n")
    return root


def write_synthetic_lfp(folder: str | Path, n_animals: int = 12, sessions_per_animal: int = 1,
                        trials_per_session: int = 24, sfreq: float = 500.0, trial_s: float = 2.0,
                        gamma_gain: float = 1.5, seed: int = 0, overwrite: bool = False) -> dict[str, Any]:
    """Write planted-signal LFP sessions (``.npz``; knock-outs carry raised gamma) into ``folder``; returns counts."""
    rng = np.random.default_rng(seed)
    root = _fresh(folder, overwrite)
    n = int(round(trial_s * sfreq))
    sos = signal.butter(4, GAMMA_HZ, btype="bandpass", fs=sfreq, output="sos")
    for a in range(n_animals):
        label = a % 2
        for s in range(sessions_per_animal):
            white = rng.standard_normal((trials_per_session, n))
            trials = signal.lfilter([1.0], [1.0, -0.95], white, axis=-1)
            trials /= trials.std()
            if label:
                trials += gamma_gain * signal.sosfiltfilt(sos, rng.standard_normal((trials_per_session, n)), axis=-1)
            trials *= rng.uniform(0.5, 2.0)
            np.savez(root / f"animal{a:02d}_s{s}.npz", trials=trials.astype(np.float32), sfreq=sfreq, label=label,
                     animal=f"animal{a:02d}")
    return {"folder": str(root), "animals": n_animals, "sessions": n_animals * sessions_per_animal}


def write_synthetic_iq(folder: str | Path, n_recordings: int = 60, sfreq: float = 8000.0, n_samples: int = 2048,
                       delay_per_unit: float = 600.0, seed: int = 0, overwrite: bool = False) -> dict[str, Any]:
    """Write ``n_recordings`` planted-signal IQ ``.npz`` files (4 corner receivers) into ``folder``; returns counts."""
    rng = np.random.default_rng(seed)
    root = _fresh(folder, overwrite)
    burst_len, start = 512, 128
    b, a = signal.butter(4, 1500.0, fs=sfreq)
    for i in range(n_recordings):
        pos = rng.uniform(0.1, 0.9, size=2)
        burst = signal.lfilter(b, a, rng.standard_normal(burst_len) + 1j * rng.standard_normal(burst_len))
        iq = 0.05 * (rng.standard_normal((len(RECEIVERS), n_samples))
                     + 1j * rng.standard_normal((len(RECEIVERS), n_samples)))
        for r, rx in enumerate(RECEIVERS):
            d = float(np.linalg.norm(pos - rx))
            t0 = start + int(round(delay_per_unit * d))
            iq[r, t0:t0 + burst_len] += burst[: n_samples - t0] / (0.2 + d)
        np.savez(root / f"rec{i:04d}.npz", iq=iq.astype(np.complex64), sfreq=sfreq, pos_x=pos[0], pos_y=pos[1])
    return {"folder": str(root), "recordings": n_recordings, "receivers": len(RECEIVERS)}
