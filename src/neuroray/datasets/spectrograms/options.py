"""The options of `neuroray prepare spectrograms` and of ``data.prepare: {kind: spectrograms, …}``, once."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from neuroray.datasets.options import PrepareOptions

__all__ = ["SpectrogramPrepareOptions"]


class SpectrogramPrepareOptions(PrepareOptions):
    """LFP trials or RF IQ recordings (or planted-signal inputs of either) → spectrogram sequences."""

    sources: ClassVar[tuple[str, ...]] = ("lfp", "iq", "synthetic_lfp", "synthetic_iq")
    metavars: ClassVar[dict[str, str]] = {"lfp": "DIR", "iq": "DIR", "inputs": "DIR"}

    lfp: str | None = Field(None, description="folder of LFP sessions (.npz, .npy + .json, or .parquet)")
    iq: str | None = Field(None, description="folder of IQ recordings (.npz)")
    synthetic_lfp: bool = Field(False, description="knock-out animals (label 1) with raised gamma")
    synthetic_iq: bool = Field(False, description="arrival time/power across 4 receivers encodes (pos_x, pos_y)")
    inputs: str | None = Field(None, description="--synthetic-*: where to write the input files (default: "
                               "<out>-inputs)")
    n_trials: int = Field(8, description="LFP: consecutive trials per sequence")
    stride: int | None = Field(None, description="LFP: trials between sequence starts (default --n-trials: "
                               "no overlap)")
    nperseg: int | None = Field(None, ge=2, description="STFT window in samples (default 256 LFP, 128 IQ)")
    noverlap: int | None = Field(None, ge=0, description="STFT overlap in samples (default nperseg // 2)")
    fmin: float | None = Field(None, description="lowest kept frequency in Hz (default 1 LFP, 0 IQ)")
    fmax: float | None = Field(None, description="highest kept frequency in Hz (default 100 LFP, sfreq/2 IQ)")
    baseline: Literal["broadband", "per-frequency", "none"] = Field(
        "broadband", description="LFP per-session baseline (see lfp.py)")
    split_by: Literal["animal", "session"] = Field("animal", description="LFP split groups; IQ splits by session")
    n_mels: int = Field(32, description="IQ: mel bins")
    n_mfcc: int | None = Field(None, description="IQ: MFCC coefficients instead of log-mel")
    seed: int = Field(0, description="split seed and synthetic seed")
