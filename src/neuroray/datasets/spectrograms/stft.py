"""Short-time power spectra shared by the LFP and IQ paths (scipy.signal, Hann window)."""

from __future__ import annotations

import numpy as np
from scipy import signal

from neuroray.errors import NeurorayError

EPS = 1e-12


def check_stft(nperseg: int, noverlap: int | None, n_samples: int, what: str) -> int:
    """Validate the window; returns the overlap actually used (default: half the window)."""
    if nperseg < 2:
        raise NeurorayError(f"--nperseg {nperseg}: must be >= 2 samples")
    overlap = nperseg // 2 if noverlap is None else noverlap
    if not 0 <= overlap < nperseg:
        raise NeurorayError(f"--noverlap {overlap}: must be in [0, nperseg={nperseg})")
    if n_samples < nperseg:
        raise NeurorayError(f"{what}: {n_samples} samples per trial is shorter than --nperseg {nperseg}; "
                            "pass a smaller --nperseg or longer trials")
    return overlap


def power_spectrogram(x: np.ndarray, sfreq: float, nperseg: int, noverlap: int,
                      two_sided: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x`` (..., n_samples) → ``(freqs, times, power (..., n_freqs, n_frames))``, PSD scaling.

    Real input gives the one-sided spectrum (0 … sfreq/2, spacing sfreq/nperseg); ``two_sided`` (complex
    baseband) gives frequencies −sfreq/2 … sfreq/2 in ascending order.
    """
    freqs, times, sxx = signal.spectrogram(
        x, fs=sfreq, window="hann", nperseg=nperseg, noverlap=noverlap, detrend="constant",
        return_onesided=not two_sided, scaling="density", mode="psd", axis=-1,
    )
    if two_sided:
        freqs = np.fft.fftshift(freqs)
        sxx = np.fft.fftshift(sxx, axes=-2)
    return freqs, times, sxx


def crop_freqs(freqs: np.ndarray, fmin: float, fmax: float | None) -> np.ndarray:
    """Indices of ``fmin <= f <= fmax``; NeurorayError when that keeps nothing."""
    hi = np.inf if fmax is None else fmax
    keep = np.flatnonzero((freqs >= fmin) & (freqs <= hi))
    if len(keep) == 0:
        raise NeurorayError(f"--fmin {fmin} / --fmax {fmax}: no STFT bin in range; the bins run "
                            f"{freqs.min():g} … {freqs.max():g} Hz")
    return keep


def log_power(p: np.ndarray) -> np.ndarray:
    """log10 power (Bels) with a floor, float32."""
    return np.log10(np.maximum(p, EPS)).astype(np.float32)
