"""The report's test is itself tested (verdicts issue, item 7): on planted data, the A/B difference is found in
≥ 80 % of 20 repeats and identical arms differ at p < 0.05 in ≤ 10 % (benchmarks/verdicts.py; RESULTS.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/ lives beside src/

from benchmarks import verdicts  # noqa: E402


def test_rates_count_hits_and_false_positives_by_hand() -> None:
    """Planted scores: b is 0.1 better with small noise (every repeat a hit); a against itself is pure noise."""
    rng = np.random.default_rng(0)
    seeds = np.arange(40)
    a = 0.8 + rng.normal(0, 0.02, 40)
    scores = pd.DataFrame({"arm": ["a"] * 40 + ["b"] * 40, "seed": np.r_[seeds, seeds],
                           verdicts.METRIC: np.r_[a, a - 0.1 + rng.normal(0, 0.01, 40)]})
    r = verdicts.rates(scores, n=5, draws=200)
    assert r["ab_repeats"] == 8 and r["aa_repeats"] == 8 and r["power"] == 1.0 and r["power_resampled"] == 1.0
    assert r["delta"] == pytest.approx(-0.1, abs=0.01) and r["fpr_resampled"] <= 0.15


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_power_and_false_positive_rate_on_planted_data(tmp_path: Path) -> None:
    r = verdicts.measure(repeats=20, n=5, work=tmp_path)
    assert r["ab_repeats"] == 20 and r["aa_repeats"] == 20
    assert r["power"] >= verdicts.GOAL_POWER and r["delta"] < 0
    assert r["fpr_resampled"] <= verdicts.GOAL_FPR
