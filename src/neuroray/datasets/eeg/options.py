"""The options of `neuroray prepare eeg` and of an experiment's ``data.prepare: {kind: eeg, …}``, once."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from neuroray.datasets.options import PrepareOptions

__all__ = ["EEGPrepareOptions", "DATA_FIELDS"]

Target = Literal["challenge1", "challenge2", "pretrain"]


class EEGPrepareOptions(PrepareOptions):
    """A BIDS tree (HBN layout) or an HBN-shaped synthetic tree → windows for one target."""

    sources: ClassVar[tuple[str, ...]] = ("bids", "synthetic_hbn")
    metavars: ClassVar[dict[str, str]] = {"bids": "DIR", "synthetic_hbn": "N"}

    bids: str | None = Field(None, description="BIDS root (HBN layout: sub-*/eeg/sub-*_task-*[_run-*]_eeg.set)")
    synthetic_hbn: int | None = Field(None, ge=3, le=32, description="write an HBN-shaped synthetic BIDS tree "
                                      "with N subjects (real R1 sidecars): at --out on the command line, at "
                                      "bids (if missing) in an experiment")
    synthetic_sfreq: float = Field(500.0, gt=0, json_schema_extra={"unit": "Hz"},
                                   description="--synthetic-hbn sampling rate in Hz")
    synthetic_runs: int = Field(3, ge=1, le=3, description="--synthetic-hbn CCD runs per subject")
    synthetic_movie: bool = Field(False, description="--synthetic-hbn: add a DespicableMe recording")
    target: Target = Field("challenge1", description="challenge1: CCD response time; challenge2: externalizing "
                           "(+p_factor, ...); pretrain: unlabeled windows (movies carry stimulus times)")
    tasks: list[str] | None = Field(None, description="BIDS tasks (default: contrastChangeDetection for "
                                    "challenge1, all tasks otherwise)")
    subjects: list[str] | None = Field(None, description="subject labels (default: all)")
    sfreq: float = Field(100.0, gt=0, json_schema_extra={"unit": "Hz"}, description="resample to this rate in Hz")
    l_freq: float | None = Field(0.5, ge=0, json_schema_extra={"unit": "Hz"},
                                 description="band-pass low edge in Hz (0 = none)")
    h_freq: float | None = Field(40.0, ge=0, json_schema_extra={"unit": "Hz"},
                                 description="band-pass high edge in Hz (0 = none)")
    notch: float | None = Field(None, ge=0, json_schema_extra={"unit": "Hz"},
                                description="line frequency to notch with harmonics (50 or 60)")
    reference: str | None = Field(None, description="re-reference: average | CHANNEL[,CHANNEL]")
    channels: str | list[str] | None = Field(None, description="target channel layout: hbn129 | 1020 | "
                                             "NAME,NAME,...")
    channel_mode: Literal["zeropad", "select", "interpolate"] = Field(
        "zeropad", description="how --channels treats missing channels")
    montage: str | None = Field(None, description="MNE montage for --channel-mode interpolate")
    window_s: float | None = Field(None, gt=0, json_schema_extra={"unit": "s"},
                                   description="window length in s (default: the target's)")
    stride_s: float | None = Field(None, gt=0, json_schema_extra={"unit": "s"},
                                   description="window stride in s (challenge2/pretrain)")
    shift_s: float | None = Field(None, description="challenge1: window start after the target in s (0.5)")
    keep_no_response: bool = Field(False, description="challenge1: keep trials without a press")
    split_seed: int = Field(0, description="seed of the subject split")

    def config_kwargs(self) -> dict[str, object]:
        """The keyword arguments of ``prepare.make_config`` these options give."""
        return self.model_dump(include=set(DATA_FIELDS) - {"subjects"})


# What decides the windows (the rest says where the input comes from): compared with an existing shard set.
DATA_FIELDS = ("target", "tasks", "subjects", "sfreq", "l_freq", "h_freq", "notch", "reference", "channels",
               "channel_mode", "montage", "window_s", "stride_s", "shift_s", "keep_no_response", "split_seed")
