"""Tune's results as the run folder's tables: one row per trial (its best epoch of the final phase), every
reported epoch, and each failure's cause in one line. The only report code that needs Ray."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ray import tune

from neuroray.reports.folder import HISTORY_KEYS, METRIC_PREFIXES
from neuroray.reports.selection import best_index
from neuroray.run.train import TRAIN_ROWS
from neuroray.run_folder.storage import checkpoint_uri, location_uri  # s3://… when --storage is a URI

__all__ = ["trial_row", "as_table", "trial_rows", "history_frame", "trial_histories",
           "error_text"]


def _checkpoint_path(result: tune.Result, history: pd.DataFrame, metric: str, mode: str) -> str | None:
    """The trial's checkpoint at its best epoch by the experiment's metric (what export ships), else its
    latest. Every epoch is checkpointed; Tune/Train keep the best and the latest (``num_to_keep=1``)."""
    if result.checkpoint is not None:
        scored = [(float(m[metric]), c) for c, m in (result.best_checkpoints or [])
                  if isinstance(m.get(metric), int | float) and math.isfinite(m[metric])]
        best = (min if mode == "min" else max)(scored, key=lambda sc: sc[0])[1] if scored else result.checkpoint
        return checkpoint_uri(best)
    if "checkpoint_path" in history and history["checkpoint_path"].notna().any():  # TorchTrainer engine
        saved = history[history["checkpoint_path"].notna()]
        at = best_index(saved[metric], mode) if metric in saved and saved[metric].notna().any() else saved.index[-1]
        # Train reports the path on its storage's filesystem (``bucket/key`` on S3): the same as Tune's
        return location_uri(result.filesystem, str(saved.loc[at, "checkpoint_path"]))
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


def trial_row(trial_id: str, cfg: dict[str, Any], history: pd.DataFrame, metric: str, mode: str,
              failed: bool) -> dict[str, Any]:
    """One trial's row without its checkpoint and error: its cell, params, and the metrics of its best epoch
    in the final phase (also what the live report lists while the run goes on)."""
    row: dict[str, Any] = {
        "trial_id": trial_id, "arm": cfg.get("arm"), "seed": cfg.get("seed"),
        **({"fold": cfg["fold"]} if cfg.get("fold") is not None else {}),
        "status": "ERROR" if failed else "OK",
        "epochs": int(history["training_iteration"].max()) if "training_iteration" in history else 0,
    }
    row.update({f"param.{k}": v for k, v in (cfg.get("params") or {}).items()})
    if metric in history and history[metric].notna().any():
        final = history[history["phase"] == history["phase"].iloc[-1]] if "phase" in history else history
        final = final[final[metric].notna()]
        best = final.loc[best_index(final[metric], mode)]
        for col in final.columns:
            if col.startswith(METRIC_PREFIXES):
                row[col] = float(best[col])
        row["best_epoch"] = int(best["training_iteration"])
        if TRAIN_ROWS in best and pd.notna(best[TRAIN_ROWS]):  # which data the final phase read
            row[TRAIN_ROWS] = int(best[TRAIN_ROWS])
    return row


def as_table(rows: list[dict[str, Any]], metric: str) -> pd.DataFrame:
    """Trial rows as the run folder's table: sorted by cell, the metric's column always present."""
    df = pd.DataFrame(rows)
    if metric not in df:
        df[metric] = np.nan
    order = ["arm", "seed", *(["fold"] if "fold" in df else []), "trial_id"]
    return df.sort_values(order, kind="stable").reset_index(drop=True)


def trial_rows(grid: tune.ResultGrid, metric: str, mode: str) -> pd.DataFrame:
    """One row per trial: its cell, params, the metrics of its best epoch in the final phase, its checkpoint
    and the cause of its failure."""
    rows: list[dict[str, Any]] = []
    for i in range(len(grid)):
        result = grid[i]
        history = _history(result)
        row = trial_row(_trial_id(result), result.config or {}, history, metric, mode, failed=bool(result.error))
        row["checkpoint"] = _checkpoint_path(result, history, metric, mode)
        row["error"] = error_text(result.error) if result.error else ""
        rows.append(row)
    return as_table(rows, metric)


def history_frame(trial_id: str, cfg: dict[str, Any], h: pd.DataFrame) -> pd.DataFrame:
    """One trial's reported epochs as history rows: ``HISTORY_KEYS`` + metric columns, each epoch once."""
    keep = [c for c in h.columns if c in ("training_iteration", "phase", "phase_epoch")
            or str(c).startswith(METRIC_PREFIXES)]
    h = h[keep].copy()
    if "training_iteration" in h.columns:  # a trial resumed from an older checkpoint reports some epochs again
        h = h.drop_duplicates("training_iteration", keep="last")
    h.insert(0, "trial_id", trial_id)
    h.insert(1, "arm", cfg.get("arm"))
    h.insert(2, "seed", cfg.get("seed"))
    if cfg.get("fold") is not None:
        h.insert(3, "fold", cfg["fold"])
    return h


def trial_histories(grid: tune.ResultGrid) -> pd.DataFrame:
    """Every reported epoch of every trial (learning curves): ``HISTORY_KEYS`` + metric columns."""
    frames = []
    for i in range(len(grid)):
        result = grid[i]
        h = _history(result)
        if not h.empty:
            frames.append(history_frame(_trial_id(result), result.config or {}, h))
    if not frames:
        return pd.DataFrame(columns=HISTORY_KEYS)
    return pd.concat(frames, ignore_index=True)
