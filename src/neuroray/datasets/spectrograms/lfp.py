"""LFP trials → baseline-normalized log-power STFT spectrograms → sequences of consecutive trials.

Input layout (``--lfp DIR``): one file per recording session, the file stem is the session id.

* ``<session>.npz`` with arrays ``trials`` (n_trials × n_samples, trials in recording order),
  ``sfreq`` (Hz), ``label`` (int, e.g. genotype 0 = wild type, 1 = knock-out), ``animal`` (str);
  optional ``session`` (str) overrides the stem.
* ``<session>.npy`` + ``<session>.json``: the array is either trials (2-D, as above) or ONE continuous
  trace (1-D) that is cut into consecutive trials of ``trial_s`` seconds (the remainder is dropped);
  the JSON sidecar holds ``sfreq``, ``label``, ``animal`` and, for 1-D traces, ``trial_s``.
* ``<name>.parquet``: one row per trial with ``signal`` (list of float), ``sfreq``, ``label``, ``animal`` and
  optional ``session`` (several sessions per file) and ``trial`` (order); see :mod:`.lfp_parquet`.

Per session: Hann-window STFT (``nperseg``, ``noverlap``; bin spacing sfreq/nperseg) → PSD → crop to
``fmin <= f <= fmax`` → log10 → baseline normalization, one of

* ``broadband`` (default): subtract the session's mean log power over all its trials, frames AND kept
  frequencies, one number per session. Removes per-session gain (electrode impedance, amplifier) but
  keeps the spectral shape, so a stationary genotype difference (e.g. raised gamma) survives.
* ``per-frequency``: subtract the session's mean log power per frequency over all its trials and frames.
  Removes every stationary session-level spectral difference — including a genotype effect — so it
  suits trial-to-trial questions within sessions, not genotype classification.
* ``none``.

Then consecutive, non-overlapping (``stride`` = ``n_trials`` by default) runs of ``n_trials`` trials of
ONE session form a row ``x`` (n_trials, n_freqs, n_frames); leftover trials are dropped. Splits are by
``animal`` (default) or ``session``, never by trial or sequence.
"""

from __future__ import annotations

import json
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
from neuroray.datasets.spectrograms.stft import check_stft, crop_freqs, log_power, power_spectrogram
from neuroray.errors import NeurorayError

BASELINES = ("broadband", "per-frequency", "none")
SPLIT_BY = ("animal", "session")


@dataclass(frozen=True)
class LFPConfig:
    """LFP settings: trials per sequence and stride, STFT, frequency crop, baseline mode, split key and seed."""

    n_trials: int = 8
    stride: int | None = None
    nperseg: int = 256
    noverlap: int | None = None
    fmin: float = 1.0
    fmax: float = 100.0
    baseline: str = "broadband"
    split_by: str = "animal"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_trials < 1:
            raise NeurorayError(f"--n-trials {self.n_trials}: must be >= 1")
        if self.stride is not None and self.stride < 1:
            raise NeurorayError(f"--stride {self.stride}: must be >= 1 trial")
        if self.baseline not in BASELINES:
            raise NeurorayError(f"--baseline {self.baseline!r}; allowed: {', '.join(BASELINES)}")
        if self.split_by not in SPLIT_BY:
            raise NeurorayError(f"--split-by {self.split_by!r}; allowed: {', '.join(SPLIT_BY)}")
        if not 0 <= self.fmin < self.fmax:
            raise NeurorayError(f"--fmin {self.fmin} / --fmax {self.fmax}: need 0 <= fmin < fmax")


@dataclass
class Session:
    """One recording session as read: its trials (n_trials × n_samples), rate, label, animal and input files."""

    path: Path
    session: str
    animal: str
    label: int
    sfreq: float
    trials: np.ndarray  # (n_trials, n_samples) float64
    files: list[Path]


def read_session(path: Path) -> Session:
    """One input file → a Session; InputError naming the file and what is missing."""
    files = [path]
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                meta = {k: z[k] for k in z.files}
            missing = [k for k in ("trials", "sfreq", "label", "animal") if k not in meta]
            if missing:
                raise InputError(f"{path}: missing arrays {', '.join(missing)}; a session .npz holds trials, "
                                 "sfreq, label, animal")
            trials = np.asarray(meta["trials"])
        else:
            sidecar = path.with_suffix(".json")
            if not sidecar.is_file():
                raise InputError(f"{path}: no sidecar {sidecar.name} with sfreq, label, animal[, trial_s]")
            files.append(sidecar)
            meta = json.loads(sidecar.read_text())
            missing = [k for k in ("sfreq", "label", "animal") if k not in meta]
            if missing:
                raise InputError(f"{sidecar}: missing keys {', '.join(missing)}")
            trials = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    sfreq = scalar(meta["sfreq"], "sfreq", path, float)
    if not np.isfinite(sfreq) or sfreq <= 0:
        raise InputError(f"{path}: sfreq {sfreq}: must be > 0 Hz")
    if not np.issubdtype(trials.dtype, np.number) or np.iscomplexobj(trials):
        raise InputError(f"{path}: trials must be real numbers; got dtype {trials.dtype}")
    if trials.ndim == 1:
        if "trial_s" not in meta:
            raise InputError(f"{path}: a 1-D trace needs trial_s (seconds per trial) in its sidecar")
        n = int(round(scalar(meta["trial_s"], "trial_s", path, float) * sfreq))
        if n < 1 or len(trials) < n:
            raise InputError(f"{path}: trial_s gives {n} samples per trial; the trace has {len(trials)}")
        trials = trials[: len(trials) // n * n].reshape(-1, n)
    if trials.ndim != 2:
        raise InputError(f"{path}: trials must be 2-D (n_trials × n_samples) or a 1-D trace; got {trials.shape}")
    if not np.all(np.isfinite(trials)):
        raise InputError(f"{path}: trials contain NaN or inf")
    session = scalar(meta.get("session", path.stem), "session", path, str)
    return Session(path=path, session=session, animal=scalar(meta["animal"], "animal", path, str),
                   label=scalar(meta["label"], "label", path, int), sfreq=sfreq,
                   trials=trials.astype(np.float64), files=files)


def session_spectrograms(s: Session, cfg: LFPConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n_trials, n_freqs, n_frames) baseline-normalized log power, plus the kept freqs and frame times."""
    noverlap = check_stft(cfg.nperseg, cfg.noverlap, s.trials.shape[1], str(s.path))
    freqs, times, p = power_spectrogram(s.trials, s.sfreq, cfg.nperseg, noverlap)
    keep = crop_freqs(freqs, cfg.fmin, cfg.fmax)
    logp = log_power(p[:, keep, :])
    if cfg.baseline == "broadband":
        logp -= logp.mean()
    elif cfg.baseline == "per-frequency":
        logp -= logp.mean(axis=(0, 2), keepdims=True)
    return logp, freqs[keep], times


def sequences(n: int, n_trials: int, stride: int) -> list[int]:
    """Start indices of consecutive runs of ``n_trials`` within ``n`` trials."""
    return list(range(0, n - n_trials + 1, stride))


def prepare_lfp(folder: str | Path, out: str | Path, cfg: LFPConfig, overwrite: bool = False) -> dict[str, Any]:
    """``--lfp`` folder → shard set at ``out`` of baseline-normalized spectrogram sequences, split by animal or
    session; unusable sessions are skipped."""
    out = Path(out)
    check_out(out, overwrite)
    from neuroray.datasets.spectrograms.lfp_parquet import read_parquet_sessions

    paths = [p for p in input_files(folder, (".npz", ".npy", ".parquet"), "--lfp")]
    skipped: list[dict[str, str]] = []
    sessions: list[Session] = []
    for path in paths:
        try:
            if path.suffix == ".parquet":
                sessions.extend(read_parquet_sessions(path))
            else:
                sessions.append(read_session(path))
        except InputError as e:
            skipped.append({"path": str(path), "reason": str(e)})
    if not sessions:
        raise NeurorayError(f"--lfp {folder}: no usable session ({len(skipped)} skipped; first: "
                            f"{skipped[0]['reason']})")
    layout = majority([(s.sfreq, s.trials.shape[1]) for s in sessions])
    seen: set[str] = set()
    stride = cfg.stride or cfg.n_trials
    xs: list[np.ndarray] = []
    cols: dict[str, list[Any]] = {k: [] for k in ("session", "animal", "label", "first_trial")}
    freqs = times = np.zeros(0)
    kept: list[Session] = []
    for s in sessions:
        reason = None
        if (s.sfreq, s.trials.shape[1]) != layout:
            reason = (f"{s.trials.shape[1]} samples at {s.sfreq:g} Hz per trial differ from the majority "
                      f"({layout[1]} at {layout[0]:g} Hz)")
        elif s.session in seen:
            reason = f"session id {s.session!r} repeats an earlier file"
        elif len(s.trials) < cfg.n_trials:
            reason = f"{len(s.trials)} trials, fewer than --n-trials {cfg.n_trials}"
        if reason:
            skipped.append({"path": str(s.path), "reason": reason})
            continue
        seen.add(s.session)
        spec, freqs, times = session_spectrograms(s, cfg)
        for start in sequences(len(spec), cfg.n_trials, stride):
            xs.append(spec[start:start + cfg.n_trials])
            cols["session"].append(s.session)
            cols["animal"].append(s.animal)
            cols["label"].append(s.label)
            cols["first_trial"].append(start)
        kept.append(s)
    if not xs:
        raise NeurorayError(f"--lfp {folder}: no session has >= --n-trials {cfg.n_trials} usable trials "
                            f"({len(skipped)} skipped)")
    x = np.stack(xs).astype(np.float32)
    columns = {"session": np.array(cols["session"], dtype=object), "animal": np.array(cols["animal"], dtype=object),
               "label": np.array(cols["label"], dtype=np.int64),
               "first_trial": np.array(cols["first_trial"], dtype=np.int64)}
    noverlap = cfg.nperseg // 2 if cfg.noverlap is None else cfg.noverlap
    preprocessing: list[dict[str, Any]] = [
        {"step": "stft", "window": "hann", "nperseg": cfg.nperseg, "noverlap": noverlap, "scaling": "psd",
         "detrend": "constant"},
        {"step": "crop", "fmin": cfg.fmin, "fmax": cfg.fmax},
        {"step": "log10"},
        {"step": "baseline", "mode": cfg.baseline, "per": "session"},
        {"step": "sequence", "n_trials": cfg.n_trials, "stride": stride, "consecutive": True,
         "mix_sessions": False},
    ]
    extra = {"spectrogram": {"input": "lfp", "sfreq": layout[0], "trial_samples": layout[1],
                             "freqs_hz": freqs.tolist(), "times_s": times.tolist(),
                             "axes": ["trial", "freq", "frame"], "config": asdict(cfg)}}
    return write_shard_set(
        out, x, columns, columns[cfg.split_by], cfg.split_by, cfg.seed, preprocessing,
        [source(f) for f in dict.fromkeys(f for s in kept for f in s.files)], skipped,
        {"baseline": cfg.baseline, "per": "session"}, extra, overwrite)
