"""Sample specifications: the one vocabulary (n_chans, n_times, sfreq) shared by data and models."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from neuroray.errors import ShardSetError


@dataclass(frozen=True)
class EEGWindowSpec:
    """Fixed-size EEG windows: ``x`` has shape (n_chans, n_times) sampled at ``sfreq`` Hz."""

    n_chans: int
    n_times: int
    sfreq: float
    ch_names: tuple[str, ...] = field(default_factory=tuple)

    modality = "eeg"

    def __post_init__(self) -> None:
        if self.n_chans < 1 or self.n_times < 1 or self.sfreq <= 0:
            raise ShardSetError(
                f"EEGWindowSpec needs n_chans >= 1, n_times >= 1, sfreq > 0; got "
                f"n_chans={self.n_chans}, n_times={self.n_times}, sfreq={self.sfreq}"
            )
        if self.ch_names and len(self.ch_names) != self.n_chans:
            raise ShardSetError(f"EEGWindowSpec: {len(self.ch_names)} ch_names for n_chans={self.n_chans}")

    @property
    def shape(self) -> tuple[int, ...]:
        """(n_chans, n_times)."""
        return (self.n_chans, self.n_times)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one sample ``x`` in a shard set."""
        return self.shape

    def to_dict(self) -> dict[str, Any]:
        """Manifest form: the fields, with ``ch_names`` as a list."""
        d = asdict(self)
        d["ch_names"] = list(self.ch_names)
        return d


@dataclass(frozen=True)
class VolumeSpec:
    """3-D volumes on a regular grid: ``x`` has shape (1, *shape) with ``voxel_mm`` spacing."""

    shape: tuple[int, int, int]
    voxel_mm: float

    modality = "volume"

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """One sample ``x`` carries a leading channel axis: (1, X, Y, Z)."""
        return (1, *self.shape)

    def to_dict(self) -> dict[str, Any]:
        """Manifest form: ``shape`` as a list and ``voxel_mm``."""
        return {"shape": list(self.shape), "voxel_mm": self.voxel_mm}


@dataclass(frozen=True)
class SpectrogramSpec:
    """Spectrogram sequences: ``x`` has shape (n_trials, n_freqs, n_frames)."""

    n_trials: int
    n_freqs: int
    n_frames: int

    modality = "spectrogram"

    @property
    def shape(self) -> tuple[int, ...]:
        """(n_trials, n_freqs, n_frames)."""
        return (self.n_trials, self.n_freqs, self.n_frames)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one sample ``x``: the same as ``shape``."""
        return self.shape

    def to_dict(self) -> dict[str, Any]:
        """Manifest form: ``n_trials``, ``n_freqs``, ``n_frames``."""
        return asdict(self)


Spec = EEGWindowSpec | VolumeSpec | SpectrogramSpec

_BY_MODALITY: dict[str, type] = {"eeg": EEGWindowSpec, "volume": VolumeSpec, "spectrogram": SpectrogramSpec}


def spec_from_dict(modality: str, d: dict[str, Any]) -> Spec:
    """Rebuild a spec from its manifest form; unknown modality names the allowed ones."""
    cls = _BY_MODALITY.get(modality)
    if cls is None:
        raise ShardSetError(f"unknown modality {modality!r}; allowed: {sorted(_BY_MODALITY)}")
    if cls is EEGWindowSpec:
        return EEGWindowSpec(
            n_chans=int(d["n_chans"]),
            n_times=int(d["n_times"]),
            sfreq=float(d["sfreq"]),
            ch_names=tuple(d.get("ch_names", ())),
        )
    if cls is VolumeSpec:
        shape = tuple(int(v) for v in d["shape"])
        return VolumeSpec(shape=(shape[0], shape[1], shape[2]), voxel_mm=float(d["voxel_mm"]))
    return SpectrogramSpec(int(d["n_trials"]), int(d["n_freqs"]), int(d["n_frames"]))
