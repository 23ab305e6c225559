"""Challenge targets as windows: CCD response time (challenge 1), subject traits (challenge 2), pretraining.

Each function takes a preprocessed Raw (already at the target sampling rate) and returns
``(x, columns)``: windows (N, n_chans, n_times) float32 and one array per metadata/target column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mne
import numpy as np
import pandas as pd

TARGET_VALUES = {"left_target": "left", "right_target": "right"}
PRESS_VALUES = ("left_buttonPress", "right_buttonPress")
TRIAL_START = "contrastTrial_start"
FEEDBACK = {"smiley_face": True, "sad_face": False}
# HBN's naturalistic-viewing tasks.
MOVIE_TASKS = ("DespicableMe", "FunwithFractals", "ThePresent", "DiaryOfAWimpyKid")


@dataclass(frozen=True)
class Windowing:
    """Window length plus a stride (continuous windows) or a shift after each event (event-locked), in seconds."""

    window_s: float
    stride_s: float | None = None  # continuous windows (challenge 2, pretrain)
    shift_s: float = 0.0  # event-locked windows start this long after the event (challenge 1)

    def n_times(self, sfreq: float) -> int:
        """Samples per window at ``sfreq`` Hz (rounded)."""
        return int(round(self.window_s * sfreq))


def ccd_trials(events: pd.DataFrame) -> pd.DataFrame:
    """One row per contrast-change trial that shows a target: onset, side, response time (s), correctness.

    The challenge's reference trial table (eegdash's, for HBN): a trial spans [its ``contrastTrial_start``,
    the next one) — the last one ends at ``end_experiment`` when that is logged —; its stimulus is the first
    target inside it; its response the first button press at or after that target and strictly before the
    trial's end (a press logged at the next trial's very onset belongs to no trial); ``rt`` = press onset −
    target onset; ``correct`` from that press's feedback (smiley/sad face), null without a press or feedback.
    Targets outside every trial (e.g. one logged at onset 0) are no trial.
    """
    ev = events.sort_values("onset", kind="stable")
    onset = pd.to_numeric(ev["onset"], errors="coerce").to_numpy(dtype=np.float64)
    value = ev["value"].astype(str).to_numpy()
    feedback = (ev["feedback"] if "feedback" in ev else pd.Series([None] * len(ev))).to_numpy()
    starts = onset[value == TRIAL_START]
    end = onset[value == "end_experiment"]
    ends = np.append(starts[1:], end[0] if len(end) else np.inf)
    is_target = np.isin(value, list(TARGET_VALUES))
    is_press = np.isin(value, PRESS_VALUES)
    rows: list[dict[str, Any]] = []
    for t0, t1 in zip(starts, ends, strict=True):
        targets = np.flatnonzero(is_target & (onset >= t0) & (onset < t1))
        if not len(targets):
            continue
        k = targets[0]
        row: dict[str, Any] = {"target_onset_s": float(onset[k]), "side": TARGET_VALUES[value[k]], "rt": np.nan,
                               "correct": None}
        presses = np.flatnonzero(is_press & (onset >= onset[k]) & (onset < t1))
        if len(presses):
            p = presses[0]
            row["rt"] = float(onset[p] - onset[k])
            row["correct"] = FEEDBACK.get(feedback[p]) if isinstance(feedback[p], str) else None
        rows.append(row)
    return pd.DataFrame(rows, columns=["target_onset_s", "side", "rt", "correct"])


def _cut(data: np.ndarray, starts: np.ndarray, n_times: int) -> np.ndarray:
    if len(starts) == 0:
        return np.zeros((0, data.shape[0], n_times), dtype=np.float32)
    idx = starts[:, None] + np.arange(n_times)[None, :]
    return np.ascontiguousarray(data[:, idx].transpose(1, 0, 2), dtype=np.float32)


def challenge1_windows(raw: mne.io.BaseRaw, events: pd.DataFrame, win: Windowing,
                       drop_no_response: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Windows ``shift_s`` after each target; target ``rt``; ``correct`` and ``side`` kept as columns."""
    sfreq = raw.info["sfreq"]
    trials = ccd_trials(events)
    if drop_no_response:
        trials = trials[trials["rt"].notna()]
    n_times = win.n_times(sfreq)
    starts = np.round((trials["target_onset_s"].to_numpy() + win.shift_s) * sfreq).astype(np.int64)
    inside = (starts >= 0) & (starts + n_times <= raw.n_times)
    trials, starts = trials[inside], starts[inside]
    x = _cut(raw.get_data(), starts, n_times)
    return x, {
        "rt": trials["rt"].to_numpy(np.float32),
        "correct": np.array(trials["correct"].tolist(), dtype=object),
        "side": trials["side"].to_numpy(dtype=object),
        "target_onset_s": trials["target_onset_s"].to_numpy(np.float32),
        "onset_s": (starts / sfreq).astype(np.float32),
    }


def continuous_windows(raw: mne.io.BaseRaw, win: Windowing) -> tuple[np.ndarray, np.ndarray]:
    """Windows every ``stride_s`` (default: back to back) over the whole recording → (windows, start samples)."""
    sfreq = raw.info["sfreq"]
    n_times = win.n_times(sfreq)
    stride = int(round((win.stride_s or win.window_s) * sfreq))
    starts = np.arange(0, raw.n_times - n_times + 1, stride, dtype=np.int64)
    return _cut(raw.get_data(), starts, n_times), starts


def challenge2_windows(raw: mne.io.BaseRaw, win: Windowing) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Fixed windows over the whole recording; subject-level targets are added by the caller."""
    x, starts = continuous_windows(raw, win)
    return x, {"onset_s": (starts / raw.info["sfreq"]).astype(np.float32)}


def movie_start(task: str, events: pd.DataFrame | None) -> float | None:
    """Onset of the movie in a naturalistic-viewing recording (``video_start``), None if not a movie.

    Only the movie tasks count: HBN's CCD runs also mark ``video_start`` (an instruction video).
    """
    if task not in MOVIE_TASKS:
        return None
    if events is not None and "value" in events:
        starts = events.loc[events["value"] == "video_start", "onset"]
        if len(starts):
            return float(starts.iloc[0])
    return 0.0


def pretrain_windows(raw: mne.io.BaseRaw, task: str, events: pd.DataFrame | None,
                     win: Windowing) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Unlabeled windows; movie windows carry ``stimulus`` and ``stimulus_time_s`` for contrastive pairs."""
    x, starts = continuous_windows(raw, win)
    onset = (starts / raw.info["sfreq"]).astype(np.float32)
    start = movie_start(task, events)
    if start is None:
        stimulus = np.full(len(x), None, dtype=object)
        stim_time = np.full(len(x), np.nan, dtype=np.float32)
    else:
        stim_time = (onset - start).astype(np.float32)
        keep = stim_time >= 0  # windows before the movie starts are not stimulus-locked
        x, onset, stim_time = x[keep], onset[keep], stim_time[keep]
        stimulus = np.full(len(x), task, dtype=object)
    # A numeric id as well: only numeric columns reach the model (contrastive positives need it).
    index = np.full(len(x), -1 if start is None else MOVIE_TASKS.index(task), dtype=np.int32)
    return x, {"onset_s": onset, "stimulus": stimulus, "stimulus_index": index, "stimulus_time_s": stim_time}
