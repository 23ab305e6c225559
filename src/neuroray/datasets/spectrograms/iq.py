"""RF IQ recordings → per-receiver log-mel spectrograms or MFCCs with a 2-D source-position target.

Input layout (``--iq DIR``): one ``<recording>.npz`` per emission with ``iq`` (complex,
n_receivers × n_samples, baseband, receivers in a fixed order), ``sfreq`` (Hz), ``pos_x``, ``pos_y``
(source position, any unit); optional ``session`` (str, the split group; default: the file stem).

Features per receiver: two-sided Hann STFT (``nperseg``, ``noverlap``) → PSD → the bins at +f and −f
are pooled by the mel filterbank, which is laid over the offset from the carrier |f| (0 … ``fmax``,
default sfreq/2; :mod:`.mel`) → log10 mel power; with ``n_mfcc`` the DCT-II of that (MFCC). The row
``x`` stacks receivers: (n_receivers, n_mels | n_mfcc, n_frames). No per-receiver normalization: the
power differences between receivers carry the position. Splits are by ``session``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neuroray.datasets.spectrograms.common import (
    InputError,
    check_out,
    input_files,
    majority,
    scalar,
    source,
    write_shard_set,
)
from neuroray.datasets.spectrograms.mel import mel_centers, mel_filterbank, mfcc
from neuroray.datasets.spectrograms.stft import check_stft, log_power, power_spectrogram
from neuroray.errors import NeurorayError


@dataclass(frozen=True)
class IQConfig:
    """IQ feature settings: STFT ``nperseg``/``noverlap``, mel bins and range, optional MFCC count, split seed."""

    nperseg: int = 128
    noverlap: int | None = None
    n_mels: int = 32
    n_mfcc: int | None = None
    fmin: float = 0.0
    fmax: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_mels < 1:
            raise NeurorayError(f"--n-mels {self.n_mels}: must be >= 1")
        if self.n_mfcc is not None and not 1 <= self.n_mfcc <= self.n_mels:
            raise NeurorayError(f"--n-mfcc {self.n_mfcc}: must be in 1 … --n-mels ({self.n_mels})")


@dataclass
class Recording:
    """One IQ emission as read: complex samples (receivers × samples), rate, source position and split session."""

    path: Path
    session: str
    iq: np.ndarray  # (n_receivers, n_samples) complex
    sfreq: float
    pos: tuple[float, float]


def read_recording(path: Path) -> Recording:
    """One ``<recording>.npz`` → a Recording; InputError naming the file for missing or invalid arrays."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    missing = [k for k in ("iq", "sfreq", "pos_x", "pos_y") if k not in meta]
    if missing:
        raise InputError(f"{path}: missing arrays {', '.join(missing)}; an IQ .npz holds iq, sfreq, pos_x, pos_y")
    iq = np.asarray(meta["iq"])
    if not np.iscomplexobj(iq) or iq.ndim != 2:
        raise InputError(f"{path}: iq must be complex, n_receivers × n_samples; got {iq.dtype} {iq.shape}")
    if not np.all(np.isfinite(iq)):
        raise InputError(f"{path}: iq contains NaN or inf")
    try:
        sfreq, px, py = (float(np.asarray(meta[k]).item()) for k in ("sfreq", "pos_x", "pos_y"))
    except (TypeError, ValueError):
        raise InputError(f"{path}: sfreq, pos_x, pos_y must be single numbers") from None
    if not sfreq > 0 or not np.isfinite([px, py]).all():
        raise InputError(f"{path}: need sfreq > 0 and finite pos_x, pos_y")
    session = scalar(meta.get("session", path.stem), "session", path, str)
    return Recording(path, session, iq.astype(np.complex128), sfreq, (px, py))


def iq_features(iq: np.ndarray, sfreq: float, cfg: IQConfig, what: str = "iq") -> tuple[np.ndarray, np.ndarray,
                                                                                       np.ndarray]:
    """(n_receivers, n_samples) complex → ((n_receivers, n_features, n_frames), mel centres Hz, frame times)."""
    noverlap = check_stft(cfg.nperseg, cfg.noverlap, iq.shape[-1], what)
    freqs, times, p = power_spectrogram(iq, sfreq, cfg.nperseg, noverlap, two_sided=True)
    fmax = sfreq / 2 if cfg.fmax is None else cfg.fmax
    if fmax > sfreq / 2:
        raise NeurorayError(f"--fmax {fmax}: above the Nyquist frequency {sfreq / 2:g} Hz of {what}")
    fb = mel_filterbank(np.abs(freqs), cfg.n_mels, cfg.fmin, fmax)
    logmel = log_power(np.einsum("mf,rft->rmt", fb, p))
    feats = logmel if cfg.n_mfcc is None else mfcc(logmel, cfg.n_mfcc, axis=1)
    return feats, mel_centers(cfg.n_mels, cfg.fmin, fmax)[1:-1], times


def prepare_iq(folder: str | Path, out: str | Path, cfg: IQConfig, overwrite: bool = False) -> dict[str, Any]:
    """``--iq`` folder → shard set at ``out`` of per-receiver log-mel/MFCC features with ``pos_x``/``pos_y``, split by
    session; unreadable recordings and those off the majority rate/shape are skipped."""
    out = Path(out)
    check_out(out, overwrite)
    skipped: list[dict[str, str]] = []
    recs: list[Recording] = []
    for path in input_files(folder, (".npz",), "--iq"):
        try:
            recs.append(read_recording(path))
        except InputError as e:
            skipped.append({"path": str(path), "reason": str(e)})
    if not recs:
        raise NeurorayError(f"--iq {folder}: no usable recording ({len(skipped)} skipped; first: "
                            f"{skipped[0]['reason']})")
    layout = majority([(r.sfreq, r.iq.shape) for r in recs])
    kept = []
    for r in recs:
        if (r.sfreq, r.iq.shape) != layout:
            skipped.append({"path": str(r.path), "reason": f"{r.iq.shape} at {r.sfreq:g} Hz differs from the "
                            f"majority {layout[1]} at {layout[0]:g} Hz"})
        else:
            kept.append(r)
    xs = []
    centers = times = np.zeros(0)
    for r in kept:
        feats, centers, times = iq_features(r.iq, r.sfreq, cfg, str(r.path))
        xs.append(feats)
    x = np.stack(xs).astype(np.float32)
    columns = {"pos_x": np.array([r.pos[0] for r in kept], dtype=np.float32),
               "pos_y": np.array([r.pos[1] for r in kept], dtype=np.float32),
               "session": np.array([r.session for r in kept], dtype=object),
               "recording": np.array([r.path.stem for r in kept], dtype=object)}
    sfreq = layout[0]
    fmax = sfreq / 2 if cfg.fmax is None else cfg.fmax
    noverlap = cfg.nperseg // 2 if cfg.noverlap is None else cfg.noverlap
    preprocessing: list[dict[str, Any]] = [
        {"step": "stft", "window": "hann", "nperseg": cfg.nperseg, "noverlap": noverlap, "scaling": "psd",
         "sides": "two", "detrend": "constant"},
        {"step": "mel", "scale": "htk", "n_mels": cfg.n_mels, "fmin": cfg.fmin, "fmax": fmax,
         "over": "abs(baseband offset)"},
        {"step": "log10"},
    ]
    if cfg.n_mfcc is not None:
        preprocessing.append({"step": "mfcc", "dct": "II", "norm": "ortho", "n_mfcc": cfg.n_mfcc})
    extra = {"spectrogram": {"input": "iq", "sfreq": sfreq, "n_receivers": layout[1][0],
                             "features": "mfcc" if cfg.n_mfcc is not None else "log-mel",
                             "mel_centers_hz": centers.tolist(), "times_s": times.tolist(),
                             "axes": ["receiver", "mel" if cfg.n_mfcc is None else "mfcc", "frame"],
                             "config": asdict(cfg)}}
    return write_shard_set(out, x, columns, columns["session"], "session", cfg.seed, preprocessing,
                           [source(r.path) for r in kept], skipped, {"per": "none"}, extra, overwrite)
