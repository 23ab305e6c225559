"""The report's statistics, tested (verdicts issue, item 7): power on a planted A/B difference and the false-
positive rate of A/A, over R ≥ 20 repeats of a tiny experiment on planted data.

One `neuroray run` trains every seed of two arms on a planted-signal EEG set — ``a``: the generic conv encoder,
``b``: the band-power (shallow) encoder, which fits the planted alpha-power target better — and scores each
trial's chosen checkpoint on the held-out test subjects. A *repeat* is a disjoint group of ``n`` seeds, with
the report's own paired test (``reports.stats.paired``) on ``test/nrmse``:
- A/B: arm b vs arm a over the repeat's ``n`` seeds → a hit when p < 0.05 and Δ < 0 (b better);
- A/A: one arm against itself, ``n`` seeds vs ``n`` other seeds (identical arms, independent randomness) →
  a false positive when p < 0.05. Half the A/A repeats use arm a, half arm b.
Disjoint repeats are independent; the resampled rates (random seed groups, 500 draws) are steadier.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from benchmarks.common import row

ALPHA = 0.05
GOAL_POWER, GOAL_FPR = 0.8, 0.10
METRIC = "test/nrmse"


def experiment(shards: Path, seeds: int) -> dict[str, Any]:
    """Two arms × ``seeds`` seeds, one trial per cell, 2 epochs of a tiny eeg_regressor."""
    return {
        "name": "verdicts", "data": {"shards": str(shards)},
        "phases": [{"name": "fit", "trainable": "eeg_regressor", "target": "y", "epochs": 2, "batch_size": 32,
                    "hparams": {"lr": 0.005, "n_filters": 8}}],
        "matrix": {"arm": {"a": {"phases.fit.hparams.encoder": "conv"},
                           "b": {"phases.fit.hparams.encoder": "shallow"}},
                   "seed": list(range(seeds))},
        "resources": {"workers": 1, "cpus_per_worker": 1},
    }


def _p(x: pd.Series, y: pd.Series) -> tuple[float, float]:
    """(Δ, p) of the report's paired test of ``x`` against ``y`` (both indexed by unit)."""
    from neuroray.reports.stats import paired

    out = paired(x.reset_index(drop=True), y.reset_index(drop=True))
    return float(out["delta"]), float(out["p_value"])


def rates(scores: pd.DataFrame, n: int, draws: int = 500, seed: int = 0) -> dict[str, Any]:
    """Power and false-positive rate from per-(arm, seed) ``scores`` (columns arm, seed, METRIC)."""
    by = scores.pivot(index="seed", columns="arm", values=METRIC).dropna()
    seeds = by.index.to_numpy()
    ab = [_p(by.loc[g, "b"], by.loc[g, "a"]) for g in np.array_split(seeds, len(seeds) // n) if len(g) == n]
    halves = [g for g in np.array_split(seeds, len(seeds) // (2 * n)) if len(g) == 2 * n]
    aa = [_p(by.loc[g[:n], arm], by.loc[g[n:], arm]) for arm in ("a", "b") for g in halves]
    rng = np.random.default_rng(seed)
    ab_r = [_p(by.loc[g, "b"], by.loc[g, "a"]) for g in (rng.choice(seeds, n, replace=False) for _ in range(draws))]
    aa_r = []
    for i in range(draws):
        g = rng.choice(seeds, 2 * n, replace=False)
        arm = "ab"[i % 2]
        aa_r.append(_p(by.loc[g[:n], arm], by.loc[g[n:], arm]))
    diff = (by["b"] - by["a"]).to_numpy(float)
    return {
        "power": float(np.mean([p < ALPHA and d < 0 for d, p in ab])), "ab_repeats": len(ab),
        "fpr": float(np.mean([p < ALPHA for _, p in aa])), "aa_repeats": len(aa),
        "power_resampled": float(np.mean([p < ALPHA and d < 0 for d, p in ab_r])),
        "fpr_resampled": float(np.mean([p < ALPHA for _, p in aa_r])),
        "delta": float(diff.mean()), "delta_sd": float(diff.std(ddof=1)),
        "effect_dz": float(diff.mean() / diff.std(ddof=1)), "seeds": len(seeds),
        "a_mean": float(by["a"].mean()), "b_mean": float(by["b"].mean()),
    }


def measure(repeats: int = 20, n: int = 5, work: Path | None = None) -> dict[str, Any]:
    """Run the experiment with ``repeats × n`` seeds per arm and compute the rates (``work``: keep the run)."""
    from neuroray.datasets.synthetic import write_synthetic_eeg
    from neuroray.run.runner import run
    from neuroray.search_spaces.experiment import load

    with tempfile.TemporaryDirectory() as tmp:
        root = work or Path(tmp)
        shards = root / "eeg"
        if not (shards / "manifest.json").is_file():
            write_synthetic_eeg(shards, n_subjects=16, windows_per_subject=30, n_chans=8, n_times=100, seed=11)
        path = root / "verdicts.yaml"
        path.write_text(yaml.safe_dump(experiment(shards, repeats * n), sort_keys=False))
        summary = run(load(path), storage=root / "runs", verbose=0)
        out = rates(summary.trials[["arm", "seed", METRIC]], n)
    out.update(repeats_asked=repeats, n=n, seconds=summary.seconds)
    return out


def run(repeats: int = 20, n: int = 5, quick: bool = False) -> dict[str, Any]:
    """`make bench` entry: the measured power and false-positive rate, with their goals."""
    if quick:
        repeats, n = 2, 3
    r = measure(repeats, n)
    return {
        "name": "verdicts",
        "title": "Verdicts: power and false positives of the report's test (verdicts issue, item 7)",
        "what": f"one `neuroray run`: arms a (conv encoder) and b (band-power encoder) × {r['seeds']} seeds, "
                f"2 epochs, on a planted alpha-power EEG set (16 subjects, test = held-out subjects); each "
                f"trial's chosen checkpoint scored on test. Repeat = {n} seeds; the report's paired t-test on "
                f"{METRIC}, α = {ALPHA}. Planted advantage measured over all seeds: Δ(b − a) = {r['delta']:.3f} "
                f"(sd {r['delta_sd']:.3f}; d_z = {r['effect_dz']:.2f}; a {r['a_mean']:.3f}, b {r['b_mean']:.3f}). "
                "A/A = one arm's seeds against its other seeds.",
        "rows": [
            row(f"A/B: share of {r['ab_repeats']} disjoint repeats with p < {ALPHA} and b better", [r["power"]], "",
                goal=f"≥ {GOAL_POWER}", met=r["power"] >= GOAL_POWER),
            row(f"A/A: share of {r['aa_repeats']} disjoint repeats with p < {ALPHA}", [r["fpr"]], "",
                goal=f"≤ {GOAL_FPR}", met=r["fpr"] <= GOAL_FPR),
            row("A/B, resampled seed groups (500 draws)", [r["power_resampled"]], ""),
            row("A/A, resampled seed groups (500 draws)", [r["fpr_resampled"]], ""),
        ],
        "findings": [f"{2 * r['seeds']} trials in {r['seconds']:.0f} s (training, test scoring, report)."],
        "raw": r,
    }
