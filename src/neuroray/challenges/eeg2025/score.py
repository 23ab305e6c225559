"""The EEG Foundation Challenge 2025 score: 0.3 · challenge-1 NRMSE + 0.7 · challenge-2 NRMSE, within one
run (``…c1…``/``…c2…`` metric pairs) or across a challenge-1 run and a challenge-2 run (`neuroray report
--combine`)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from neuroray.errors import NeurorayError
from neuroray.reports.source import Source, best_arm, fmt
from neuroray.reports.stats import STAT_COLUMNS, arm_stats, best_per_cell, metric_columns

__all__ = ["EEG2025_WEIGHTS", "eeg2025_score", "challenge_pairs", "add_challenge_scores", "combined_cells",
           "challenge_kind", "combine_challenges"]

EEG2025_WEIGHTS = (0.3, 0.7)  # challenge 1 (response time), challenge 2 (externalizing)
_C1 = re.compile(r"(^|[/_.-])c1($|[/_.-])")


def eeg2025_score(c1: Any, c2: Any) -> Any:
    """The EEG2025 challenge's overall score: 0.3 · challenge-1 NRMSE + 0.7 · challenge-2 NRMSE."""
    return EEG2025_WEIGHTS[0] * c1 + EEG2025_WEIGHTS[1] * c2


def challenge_pairs(columns: list[str]) -> dict[str, tuple[str, str]]:
    """Metric pairs in one run: ``…c1…`` with the same name spelled ``…c2…`` → ``…eeg2025…`` (e.g.
    ``val/nrmse_c1`` + ``val/nrmse_c2`` → ``val/nrmse_eeg2025``)."""
    out: dict[str, tuple[str, str]] = {}
    for c in columns:
        m = _C1.search(c)
        if not m:
            continue
        c2 = c[:m.start()] + m.group(1) + "c2" + m.group(2) + c[m.end():]
        if c2 in columns:
            out[c[:m.start()] + m.group(1) + "eeg2025" + m.group(2) + c[m.end():]] = (c, c2)
    return out


def add_challenge_scores(cells: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Cells with an EEG2025 score column per c1/c2 metric pair found in the run; returns the new names."""
    pairs = challenge_pairs(list(cells.columns))
    cells = cells.copy()
    for name, (c1, c2) in pairs.items():
        cells[name] = eeg2025_score(cells[c1], cells[c2])
    return cells, list(pairs)


def combined_cells(c1_cells: pd.DataFrame, c2_cells: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Cells of two runs (challenge 1, challenge 2) joined on (arm, seed): ``eeg2025:<metric>`` columns."""
    keep = ["arm", "seed"]
    a = c1_cells[keep + [m for m in metrics if m in c1_cells]]
    b = c2_cells[keep + [m for m in metrics if m in c2_cells]]
    both = a.merge(b, on=keep, suffixes=("@c1", "@c2"))
    out = both[keep].copy()
    for m in metrics:
        out[f"eeg2025:{m}"] = eeg2025_score(both[f"{m}@c1"], both[f"{m}@c2"])
    return out


def challenge_kind(src: Source) -> str | None:
    """The target kind (challenge1/challenge2) the run's shard set was prepared for, if it can tell."""
    manifest = Path(src.info.shards or "") / "manifest.json"
    try:
        return str(json.loads(manifest.read_text())["target"]["kind"])
    except (OSError, KeyError, TypeError, ValueError):
        return None  # shard set moved or not an EEG prepare: trust the command line's order


def combine_challenges(src: Source, other: Source, baseline: str) -> tuple[pd.DataFrame, list[str]]:
    """EEG2025 score of a challenge-1 run and a challenge-2 run: per shared arm over shared seeds, and
    the best arm of each run together. Returns the score rows (``STAT_COLUMNS``) and explanatory lines."""
    c1, c2 = src, other
    kinds = (challenge_kind(src), challenge_kind(other))
    lines: list[str] = []
    if kinds == ("challenge2", "challenge1"):
        c1, c2 = other, src
        lines.append(f"{src.run_dir.name} holds challenge 2 (its shard set says so), so it is C2 here.")
    elif any(k is not None and k not in ("challenge1", "challenge2") for k in kinds) or (None not in kinds and
                                                                                        kinds[0] == kinds[1]):
        raise NeurorayError(f"--combine: needs a challenge1 run and a challenge2 run; {src.run_dir} is "
                            f"{kinds[0] or 'unknown'}, {other.run_dir} is {kinds[1] or 'unknown'}")
    shared = [m for m in metric_columns(c1.trials) if m in c2.trials.columns and "nrmse" in m]
    if not shared:
        raise NeurorayError(f"--combine: {c1.run_dir} and {c2.run_dir} share no val/…nrmse or test/…nrmse "
                            "metric; the EEG2025 score combines the two challenges' NRMSE")
    cells1, cells2 = best_per_cell(c1.trials, c1.metric, c1.mode), best_per_cell(c2.trials, c2.metric, c2.mode)
    lines.append(f"C1 = `{c1.run_dir.name}`, C2 = `{c2.run_dir.name}`; score = 0.3·C1 + 0.7·C2 (lower is better).")
    a1, a2 = best_arm(cells1, c1.metric, c1.mode), best_arm(cells2, c2.metric, c2.mode)
    if a1 is not None and a2 is not None:  # chosen on each run's monitored metric, never on a test metric
        for m in shared:
            v1, v2 = cells1.loc[cells1["arm"] == a1, m].mean(), cells2.loc[cells2["arm"] == a2, m].mean()
            lines.append(f"Best arms (by each run's `{c1.metric}` / `{c2.metric}`) on `{m}`: C1 {a1} ({fmt(v1)}) + "
                         f"C2 {a2} ({fmt(v2)}) → EEG2025 {fmt(eeg2025_score(v1, v2))}.")
    common = [a for a in c1.arms if a in c2.arms]
    if not common:
        lines.append("The runs share no arm name, so there is no per-arm score.")
        return pd.DataFrame(columns=STAT_COLUMNS), lines
    joined = combined_cells(cells1, cells2, shared)
    base = baseline if baseline in common else common[0]
    lines.append(f"Per arm (arms in both runs, seeds in both runs): rows `eeg2025:<metric>`; Δ vs {base}.")
    return arm_stats(joined, common, base, [f"eeg2025:{m}" for m in shared]), lines
