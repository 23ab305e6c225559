"""Mel filterbank (HTK mel scale, triangular filters) and MFCC, in numpy/scipy (no torchaudio).

``mel(f) = 2595 · log10(1 + f / 700)``. Filter ``m`` is a triangle that is 0 at the mel-spaced point
``m``, rises linearly *in mel* to 1 at point ``m + 1`` (its centre) and falls to 0 at point ``m + 2``;
between the first and the last centre, the filters sum to exactly 1 (HTK, no area normalization).
"""

from __future__ import annotations

import numpy as np
from scipy.fft import dct

from neuroray.errors import NeurorayError


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Hz → HTK mel: ``2595 · log10(1 + f / 700)``."""
    return np.asarray(2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0))


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    """HTK mel → Hz (the inverse of :func:`hz_to_mel`)."""
    return np.asarray(700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0))


def mel_centers(n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """The ``n_mels + 2`` edge/centre frequencies in Hz, equally spaced in mel."""
    return mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))


def mel_filterbank(freqs: np.ndarray, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """(n_mels, len(freqs)) triangular weights for spectrum bins at ``freqs`` Hz (use |f| for baseband)."""
    if n_mels < 1:
        raise NeurorayError(f"--n-mels {n_mels}: must be >= 1")
    if not 0 <= fmin < fmax:
        raise NeurorayError(f"mel range {fmin:g} … {fmax:g} Hz: need 0 <= fmin < fmax")
    edges = hz_to_mel(mel_centers(n_mels, fmin, fmax))
    m = hz_to_mel(np.asarray(freqs, dtype=np.float64))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (m[None, :] - lo) / (mid - lo)
    down = (hi - m[None, :]) / (hi - mid)
    return np.clip(np.minimum(up, down), 0.0, None)


def mfcc(log_mel: np.ndarray, n_mfcc: int, axis: int = -2) -> np.ndarray:
    """DCT-II (orthonormal) of log-mel along ``axis``, first ``n_mfcc`` coefficients."""
    n = log_mel.shape[axis]
    if not 1 <= n_mfcc <= n:
        raise NeurorayError(f"--n-mfcc {n_mfcc}: must be in 1 … --n-mels ({n})")
    coeffs = dct(log_mel, type=2, norm="ortho", axis=axis)
    return np.take(coeffs, np.arange(n_mfcc), axis=axis).astype(np.float32)
