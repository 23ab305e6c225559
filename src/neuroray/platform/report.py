"""Run results: one row per trial, per-epoch histories, the run folder's files; then the report.

At the end of `neuroray run` ``write_reports`` persists everything a report needs (run.json, results.csv/
.parquet, history.parquet), so `neuroray report RUN_DIR` rebuilds the report from the folder alone
(report_build.py: statistics in report_stats.py, figures in report_plots.py, HTML in report_html.py).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ray import tune

from neuroray.datasets.shards import atomic_write
from neuroray.errors import NeurorayError
from neuroray.platform import report_build
from neuroray.platform.report_build import Source, markdown_table, resolve_baseline

__all__ = ["RUN_INFO", "HISTORY", "trial_rows", "trial_histories", "best_trial", "markdown_table",
           "write_reports", "load_run", "load_history", "rebuild"]

RUN_INFO = "run.json"
HISTORY = "history.parquet"
RESULT_COLUMNS = ["trial_id", "arm", "seed", "status", "epochs", "checkpoint"]
HISTORY_KEYS = ["trial_id", "arm", "seed", "training_iteration", "phase", "phase_epoch"]
_METRIC_PREFIXES = ("val/", "train/", "test/")


def _checkpoint_path(result: tune.Result, history: pd.DataFrame, metric: str, mode: str) -> str | None:
    """The trial's checkpoint at its best epoch by the experiment's metric (what export ships), else its
    latest. Every epoch is checkpointed; Tune/Train keep the best and the latest (``num_to_keep=1``)."""
    if result.checkpoint is not None:
        from neuroray.platform.storage import checkpoint_uri  # s3://… when --storage is a URI

        scored = [(float(m[metric]), c) for c, m in (result.best_checkpoints or [])
                  if isinstance(m.get(metric), int | float) and math.isfinite(m[metric])]
        best = (min if mode == "min" else max)(scored, key=lambda sc: sc[0])[1] if scored else result.checkpoint
        return checkpoint_uri(best)
    if "checkpoint_path" in history and history["checkpoint_path"].notna().any():  # TorchTrainer engine
        saved = history[history["checkpoint_path"].notna()]
        if metric in saved and saved[metric].notna().any():
            at = saved[metric].idxmin() if mode == "min" else saved[metric].idxmax()
            return str(saved.loc[at, "checkpoint_path"])
        return str(saved["checkpoint_path"].iloc[-1])
    return None


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def error_text(error: BaseException) -> str:
    """The cause of a trial's failure in one line: Ray wraps it (``ray::ImplicitFunc.train() (pid=…)`` in
    colour, then a traceback); the row shows the exception's own type and message instead."""
    cause: BaseException = error
    while isinstance(inner := getattr(cause, "cause", None), BaseException) and inner is not cause:
        cause = inner
    if cause is not error:
        text = f"{type(cause).__name__}: {cause}"
    else:
        lines = [line for line in _ANSI.sub("", str(error)).splitlines() if line.strip()]
        text = lines[-1] if lines else type(error).__name__
    return " ".join(_ANSI.sub("", text).split())[:300]


def _trial_id(result: tune.Result) -> str:
    return str((result.metrics or {}).get("trial_id") or Path(result.path).name)


def _history(result: tune.Result) -> pd.DataFrame:
    return result.metrics_dataframe if result.metrics_dataframe is not None else pd.DataFrame()


def trial_rows(grid: tune.ResultGrid, metric: str, mode: str) -> pd.DataFrame:
    """One row per trial: its cell, params, and the metrics of its best epoch in the final phase."""
    rows: list[dict[str, Any]] = []
    for i in range(len(grid)):
        result = grid[i]
        cfg = result.config or {}
        history = _history(result)
        row: dict[str, Any] = {
            "trial_id": _trial_id(result), "arm": cfg.get("arm"), "seed": cfg.get("seed"),
            "status": "ERROR" if result.error else "OK",
            "epochs": int(history["training_iteration"].max()) if "training_iteration" in history else 0,
        }
        row.update({f"param.{k}": v for k, v in (cfg.get("params") or {}).items()})
        if metric in history and history[metric].notna().any():
            final = history[history["phase"] == history["phase"].iloc[-1]] if "phase" in history else history
            final = final[final[metric].notna()]
            best = final.loc[final[metric].idxmin() if mode == "min" else final[metric].idxmax()]
            for col in final.columns:
                if col.startswith(_METRIC_PREFIXES):
                    row[col] = float(best[col])
            row["best_epoch"] = int(best["training_iteration"])
        row["checkpoint"] = _checkpoint_path(result, history, metric, mode)
        row["error"] = error_text(result.error) if result.error else ""
        rows.append(row)
    df = pd.DataFrame(rows)
    if metric not in df:
        df[metric] = np.nan
    return df.sort_values(["arm", "seed", "trial_id"], kind="stable").reset_index(drop=True)


def trial_histories(grid: tune.ResultGrid) -> pd.DataFrame:
    """Every reported epoch of every trial (learning curves): ``HISTORY_KEYS`` + metric columns."""
    frames = []
    for i in range(len(grid)):
        result = grid[i]
        h = _history(result)
        if h.empty:
            continue
        cfg = result.config or {}
        keep = [c for c in h.columns if c in ("training_iteration", "phase", "phase_epoch")
                or str(c).startswith(_METRIC_PREFIXES)]
        h = h[keep].copy()
        if "training_iteration" in h.columns:  # a trial resumed from an older checkpoint reports some epochs again
            h = h.drop_duplicates("training_iteration", keep="last")
        h.insert(0, "trial_id", _trial_id(result))
        h.insert(1, "arm", cfg.get("arm"))
        h.insert(2, "seed", cfg.get("seed"))
        frames.append(h)
    if not frames:
        return pd.DataFrame(columns=HISTORY_KEYS)
    return pd.concat(frames, ignore_index=True)


def best_trial(df: pd.DataFrame, metric: str, mode: str) -> pd.Series | None:
    ok = df[df[metric].notna()]
    if ok.empty:
        return None
    return ok.loc[ok[metric].idxmin() if mode == "min" else ok[metric].idxmax()]


def write_reports(run_dir: Path, df: pd.DataFrame, name: str, metric: str, mode: str,
                  arms: list[str], shards: str | None = None, baseline: str | None = None,
                  history: pd.DataFrame | None = None) -> pd.DataFrame:
    """Persist the run (run.json, results.csv/.parquet, history.parquet), then write its report
    (report.csv/.md/.html + PNGs); returns the per-arm table of the monitored metric."""
    run_dir.mkdir(parents=True, exist_ok=True)
    base = resolve_baseline(baseline, arms)
    info = {"name": name, "metric": metric, "mode": mode, "arms": arms, "baseline": base, "shards": shards}
    atomic_write(run_dir / RUN_INFO, lambda p: p.write_text(json.dumps(info, indent=2)))
    atomic_write(run_dir / "results.csv", lambda p: df.to_csv(p, index=False))
    atomic_write(run_dir / "results.parquet", lambda p: df.to_parquet(p, index=False))
    if history is not None:
        atomic_write(run_dir / HISTORY, lambda p: history.to_parquet(p, index=False))
    hist = history if history is not None else load_history(run_dir)
    return report_build.build(Source(run_dir, info, df, hist), run_dir, base)


def load_run(run_dir: Path) -> tuple[dict[str, Any], pd.DataFrame]:
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
    return info, pd.read_parquet(results)


def load_history(run_dir: Path) -> pd.DataFrame:
    """Per-epoch history, empty for runs written before histories were kept."""
    path = run_dir / HISTORY
    return pd.read_parquet(path) if path.is_file() else pd.DataFrame(columns=HISTORY_KEYS)


def load_source(run_dir: Path) -> Source:
    info, trials = load_run(run_dir)
    return Source(run_dir, info, trials, load_history(run_dir))


def rebuild(run_dir: Path, baseline: str | None = None, combine: Path | None = None,
            out: Path | None = None) -> tuple[pd.DataFrame, Path]:
    """`neuroray report`: the report of a finished run folder, into ``out`` (default: the run folder)."""
    src = load_source(run_dir)
    other = load_source(combine) if combine is not None else None
    out = out or run_dir
    base = baseline if baseline is not None else src.info.get("baseline")
    return report_build.build(src, out, base, combine=other), out
