"""The CCD trial table against the challenge's reference semantics on all 293 real HBN R1 events.tsv files
(studies issue, item 5). The reference is written here again, independently: a trial spans [its
contrastTrial_start, the next one); its stimulus is the first target in it; its response the first press at or
after the target and strictly before the trial's end; correct from that press's feedback."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from neuroray.datasets.eeg.targets import ccd_trials

EVENTS = sorted((Path(__file__).resolve().parents[2] / "data" / "hbn_r1_ccd").glob("*_events.tsv"))


def reference(events: pd.DataFrame) -> list[tuple[float, str, float, Any]]:
    rows = events.sort_values("onset", kind="stable").to_dict("records")
    starts = [r["onset"] for r in rows if r["value"] == "contrastTrial_start"]
    end = next((r["onset"] for r in rows if r["value"] == "end_experiment"), math.inf)
    out = []
    for i, t0 in enumerate(starts):
        t1 = starts[i + 1] if i + 1 < len(starts) else end
        inside = [r for r in rows if t0 <= r["onset"] < t1]
        target = next((r for r in inside if r["value"] in ("left_target", "right_target")), None)
        if target is None:
            continue
        press = next((r for r in inside if r["value"] in ("left_buttonPress", "right_buttonPress")
                      and r["onset"] >= target["onset"]), None)
        rt = press["onset"] - target["onset"] if press else math.nan
        correct = {"smiley_face": True, "sad_face": False}.get(press["feedback"]) if press else None
        out.append((target["onset"], target["value"].split("_")[0], rt, correct))
    return out


def test_all_r1_files_are_here() -> None:
    assert len(EVENTS) == 293


@pytest.mark.parametrize("path", EVENTS, ids=[p.name.split("_task")[0] + p.name.split("run")[-1][:2] for p in EVENTS])
def test_trial_table_matches_the_reference(path: Path) -> None:
    events = pd.read_csv(path, sep="\t")
    got = ccd_trials(events)
    want = reference(events)
    assert len(got) == len(want)
    for row, (onset, side, rt, correct) in zip(got.itertuples(index=False), want, strict=True):
        assert row.target_onset_s == pytest.approx(onset) and row.side == side
        assert (math.isnan(row.rt) and math.isnan(rt)) or row.rt == pytest.approx(rt)
        assert row.correct == correct


def test_a_press_at_the_next_trials_onset_is_no_response() -> None:
    """The three R1 files where the old table counted such a press (rt 2.4 s): now no response."""
    for name, onset in (("sub-NDARBK082PDD_task-contrastChangeDetection_run-1", 176.732),
                        ("sub-NDARKD134TCX_task-contrastChangeDetection_run-1", 494.958),
                        ("sub-NDARLY585ZVN_task-contrastChangeDetection_run-2", 155.584)):
        trials = ccd_trials(pd.read_csv(EVENTS[0].parent / f"{name}_events.tsv", sep="\t"))
        row = trials[trials["target_onset_s"].sub(onset).abs() < 1e-6].iloc[0]
        assert math.isnan(row["rt"]) and row["correct"] is None
