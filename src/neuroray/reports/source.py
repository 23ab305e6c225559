"""What a report is built from (one finished run folder) and how its numbers are written.

Numbers are formatted once (``fmt``: 6 significant digits, empty when undefined) and the same strings go
into report.csv and the HTML/Markdown tables, so the three always agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from neuroray.errors import NeurorayError
from neuroray.reports.selection import best_index

__all__ = ["NA", "CONFUSION", "RunInfo", "Source", "held_out", "fmt", "markdown_table", "resolve_baseline", "best_arm"]

NA = "—"
CONFUSION = "test_confusion"  # results column: a classifier trial's test-split confusion matrix (JSON counts)


class RunInfo(BaseModel):
    """run.json: what a finished run was (name, monitored metric and mode, arms, baseline, shard set)."""

    model_config = ConfigDict(extra="ignore")  # newer runs may record more

    name: str
    metric: str
    mode: Literal["min", "max"]
    arms: list[str]
    baseline: str = ""
    shards: str | None = None
    pruning: str = ""  # the scheduler and its scope ("asha within each cell"); "" = none
    pruned_across_arms: bool = False  # a scheduler compared trials of different arms (scheduler.scope: global)
    test: bool = False  # each trial's chosen checkpoint was scored on the held-out test split (test/… columns)
    folds: int = 0  # matrix.folds (0: one fixed split; units are seeds)
    fold_ratio: float = 0.0  # the folds' mean n_val/n_train: the Nadeau–Bengio correction
    epochs: int = 0  # the final phase's epochs: a chosen trial that ended before them was stopped early
    live: str = ""  # a report rebuilt while the run goes on: how far it is ("3 of 8 trials finished at …")
    refresh_s: int = 0  # report.html reloads itself this often while the run is live (0: never)


@dataclass
class Source:
    """One finished run folder: run.json, results.parquet and (newer runs) history.parquet."""

    run_dir: Path
    info: RunInfo
    trials: pd.DataFrame
    history: pd.DataFrame
    subjects: pd.DataFrame = field(default_factory=pd.DataFrame)  # per test subject scores of each cell's pick

    @property
    def metric(self) -> str:
        """The monitored metric named in run.json."""
        return self.info.metric

    @property
    def headline(self) -> str:
        """What the report ranks arms on: the held-out ``test/…`` twin of the monitored metric when the run
        scored it, else the monitored (selection) metric itself."""
        twin = held_out(self.metric)
        return twin if self.info.test and twin in self.trials else self.metric

    @property
    def mode(self) -> str:
        """``min`` or ``max``: which way the monitored metric is better."""
        return self.info.mode

    @property
    def arms(self) -> list[str]:
        """The run's arms, in the experiment's order."""
        return list(self.info.arms)


def held_out(metric: str) -> str:
    """``val/nrmse`` → ``test/nrmse``: the held-out column of a monitored metric."""
    return "test/" + metric.split("/", 1)[1] if metric.startswith("val/") else "test/" + metric


def fmt(v: Any) -> str:
    """A cell's text: 6 significant digits, empty when undefined."""
    if v is None or isinstance(v, bool | np.bool_):
        return "" if v is None else str(v)
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        return "" if math.isnan(v) else f"{float(v):.6g}"
    return str(v)


def markdown_table(df: pd.DataFrame) -> str:
    """A Markdown table; raw floats at 4 decimals (for terminals), strings as given."""
    def cell(v: Any) -> str:
        if isinstance(v, float | np.floating):
            return NA if math.isnan(v) else f"{v:.4f}"
        return str(v)

    head = "| " + " | ".join(str(c) for c in df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def resolve_baseline(baseline: str | None, arms: list[str]) -> str:
    """The baseline arm: the one named (it must be an arm), else the first."""
    if baseline is None:
        return arms[0] if arms else ""
    if baseline not in arms:
        raise NeurorayError(f"baseline {baseline!r}: not an arm of this run; arms: {', '.join(arms)}")
    return baseline


def best_arm(cells: pd.DataFrame, metric: str, mode: str) -> str | None:
    """The arm with the best mean of ``metric`` over its cells, by ``mode``."""
    means = cells.groupby("arm")[metric].mean().dropna() if not cells.empty else pd.Series(dtype=float)
    if means.empty:
        return None
    return str(best_index(means, mode))
