"""A finished run folder's files (run.json, results, history) and the report rebuilt from them.

At the end of `neuroray run` ``write_reports`` persists everything a report needs (run.json, results.csv/
.parquet, history.parquet), so `neuroray report RUN_DIR` rebuilds the report from the folder alone, without
Ray (build.py: statistics in stats.py, figures in plots.py, HTML in html.py). Tune's results become these
tables in run/results.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from neuroray.errors import NeurorayError
from neuroray.outputs import atomic_write
from neuroray.reports import build as report_build
from neuroray.reports.selection import best_index
from neuroray.reports.source import RunInfo, Source, markdown_table, resolve_baseline

__all__ = ["RUN_INFO", "HISTORY", "HISTORY_KEYS", "METRIC_PREFIXES", "best_trial", "markdown_table",
           "write_reports", "write_run", "load_run", "load_history", "load_source", "rebuild"]

RUN_INFO = "run.json"
HISTORY = "history.parquet"
SUBJECTS = "test_subjects.parquet"  # each cell's pick scored per test subject (≥ 5 test subjects)
RESULT_COLUMNS = ["trial_id", "arm", "seed", "status", "epochs", "checkpoint"]
HISTORY_KEYS = ["trial_id", "arm", "seed", "training_iteration", "phase", "phase_epoch"]
METRIC_PREFIXES = ("val/", "train/", "test/")


def best_trial(df: pd.DataFrame, metric: str, mode: str) -> pd.Series | None:
    """The trial row with the best ``metric`` by ``mode``; None when no trial has a value."""
    ok = df[df[metric].notna()]
    if ok.empty:
        return None
    return ok.loc[best_index(ok[metric], mode)]


def write_reports(run_dir: Path, df: pd.DataFrame, name: str, metric: str, mode: str,
                  arms: list[str], shards: str | None = None, baseline: str | None = None,
                  history: pd.DataFrame | None = None, pruning: str = "",
                  pruned_across_arms: bool = False, test: bool = False, folds: int = 0, fold_ratio: float = 0.0,
                  epochs: int = 0, subjects: pd.DataFrame | None = None) -> pd.DataFrame:
    """Persist the run (run.json, results.csv/.parquet, history.parquet), then write its report
    (report.csv/.md/.html + PNGs); returns the per-arm headline table (``test``: the trials carry held-out
    ``test/…`` scores, and the headline is on them)."""
    info = RunInfo(name=name, metric=metric, mode=mode, arms=arms, baseline=resolve_baseline(baseline, arms),
                   shards=shards, pruning=pruning, pruned_across_arms=pruned_across_arms, test=test,
                   folds=folds, fold_ratio=fold_ratio, epochs=epochs)
    return write_run(run_dir, df, info, history, subjects)


def write_run(run_dir: Path, df: pd.DataFrame, info: RunInfo, history: pd.DataFrame | None = None,
              subjects: pd.DataFrame | None = None) -> pd.DataFrame:
    """``write_reports`` for a run whose run.json is made already (``info.baseline`` resolved)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / RUN_INFO, lambda p: p.write_text(info.model_dump_json(indent=2)))
    atomic_write(run_dir / "results.csv", lambda p: df.to_csv(p, index=False))
    atomic_write(run_dir / "results.parquet", lambda p: df.to_parquet(p, index=False))
    if history is not None:
        atomic_write(run_dir / HISTORY, lambda p: history.to_parquet(p, index=False))
    if subjects is not None and not subjects.empty:
        atomic_write(run_dir / SUBJECTS, lambda p: subjects.to_parquet(p, index=False))
    else:
        (run_dir / SUBJECTS).unlink(missing_ok=True)
    hist = history if history is not None else load_history(run_dir)
    return report_build.build(Source(run_dir, info, df, hist, load_subjects(run_dir)), run_dir, info.baseline)


def load_run(run_dir: Path) -> tuple[RunInfo, pd.DataFrame]:
    """A finished run folder's info and trial table (for `neuroray report` / `export`)."""
    info_path, results = run_dir / RUN_INFO, run_dir / "results.parquet"
    if not info_path.is_file() or not results.is_file():
        raise NeurorayError(f"{run_dir}: not a finished neuroray run folder (no {RUN_INFO} / results.parquet)")
    try:
        info = json.loads(info_path.read_text())
    except json.JSONDecodeError as e:
        raise NeurorayError(f"{info_path}: not valid JSON ({e.msg} at line {e.lineno}); the run folder was edited or "
                            "cut short. Rebuild it by re-running the experiment") from None
    if not isinstance(info, dict):
        raise NeurorayError(f"{info_path}: a JSON {type(info).__name__}, not an object; the run folder was edited. "
                            "Rebuild it by re-running the experiment")
    try:
        parsed = RunInfo.model_validate(info)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise NeurorayError(f"{info_path}: {key}: {err['msg']}; the run folder was edited or written by another "
                            "tool. Rebuild it by re-running the experiment") from None
    return parsed, pd.read_parquet(results)


def load_history(run_dir: Path) -> pd.DataFrame:
    """Per-epoch history, empty for runs written before histories were kept."""
    path = run_dir / HISTORY
    return pd.read_parquet(path) if path.is_file() else pd.DataFrame(columns=HISTORY_KEYS)


def load_subjects(run_dir: Path) -> pd.DataFrame:
    """Each cell pick's scores per test subject (``test_subjects.parquet``), empty when the run has none."""
    path = run_dir / SUBJECTS
    return pd.read_parquet(path) if path.is_file() else pd.DataFrame()


def load_source(run_dir: Path) -> Source:
    """Everything the report of a finished run folder is built from."""
    info, trials = load_run(run_dir)
    return Source(run_dir, info, trials, load_history(run_dir), load_subjects(run_dir))


def rebuild(run_dir: Path, baseline: str | None = None, combine: Path | None = None,
            out: Path | None = None) -> tuple[pd.DataFrame, Path]:
    """`neuroray report`: the report of a finished run folder, into ``out`` (default: the run folder)."""
    src = load_source(run_dir)
    other = load_source(combine) if combine is not None else None
    out = out or run_dir
    base = baseline if baseline is not None else (src.info.baseline or None)
    return report_build.build(src, out, base, combine=other), out
