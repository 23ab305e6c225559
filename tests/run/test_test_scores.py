"""Test scoring's batch sizes: resolved once per (arm, seed, params), only for trials that left a checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from neuroray.run.test_scores import _batch_sizes
from neuroray.search_spaces.experiment import load

REPO = Path(__file__).resolve().parents[2]


def test_a_trial_that_died_before_starting_is_skipped() -> None:
    loaded = load(REPO / "experiments" / "demo.yaml")
    arm = loaded.arms[0]
    trials = pd.DataFrame([
        {"trial_id": "a", "arm": arm, "seed": 0, "checkpoint": "/ckpt/a"},
        {"trial_id": "b", "arm": arm, "seed": np.nan, "checkpoint": np.nan},  # killed as its actor started
        {"trial_id": "c", "arm": arm, "seed": 0, "checkpoint": "/ckpt/c"},
    ])
    want = loaded.resolve(arm, 0).phases[-1].batch_size
    assert _batch_sizes(loaded, trials) == {0: want, 2: want}
