"""Results and ablation reports: one row per trial, then per-arm mean ± std over seeds."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ray import tune

from neuroray.datasets.shards import atomic_write

RUN_INFO = "run.json"
RESULT_COLUMNS = ["trial_id", "arm", "seed", "status", "epochs", "checkpoint"]


def _checkpoint_path(result: tune.Result, history: pd.DataFrame) -> str | None:
    if result.checkpoint is not None:
        return str(result.checkpoint.path)
    if "checkpoint_path" in history and history["checkpoint_path"].notna().any():
        return str(history["checkpoint_path"].dropna().iloc[-1])  # TorchTrainer engine
    return None


def trial_rows(grid: tune.ResultGrid, metric: str, mode: str) -> pd.DataFrame:
    """One row per trial: its cell, params, and the metrics of its best epoch in the final phase."""
    rows: list[dict[str, Any]] = []
    for i in range(len(grid)):
        result = grid[i]
        cfg = result.config or {}
        history = result.metrics_dataframe if result.metrics_dataframe is not None else pd.DataFrame()
        row: dict[str, Any] = {
            "trial_id": (result.metrics or {}).get("trial_id") or Path(result.path).name,
            "arm": cfg.get("arm"), "seed": cfg.get("seed"),
            "status": "ERROR" if result.error else "OK",
            "epochs": int(history["training_iteration"].max()) if "training_iteration" in history else 0,
        }
        row.update({f"param.{k}": v for k, v in (cfg.get("params") or {}).items()})
        if metric in history and history[metric].notna().any():
            final = history[history["phase"] == history["phase"].iloc[-1]] if "phase" in history else history
            final = final[final[metric].notna()]
            best = final.loc[final[metric].idxmin() if mode == "min" else final[metric].idxmax()]
            for col in final.columns:
                if col.startswith(("val/", "train/", "test/")):
                    row[col] = float(best[col])
            row["best_epoch"] = int(best["training_iteration"])
        row["checkpoint"] = _checkpoint_path(result, history)
        row["error"] = str(result.error).splitlines()[0][:300] if result.error else ""
        rows.append(row)
    df = pd.DataFrame(rows)
    if metric not in df:
        df[metric] = np.nan
    return df.sort_values(["arm", "seed", "trial_id"], kind="stable").reset_index(drop=True)


def best_trial(df: pd.DataFrame, metric: str, mode: str) -> pd.Series | None:
    ok = df[df[metric].notna()]
    if ok.empty:
        return None
    return ok.loc[ok[metric].idxmin() if mode == "min" else ok[metric].idxmax()]


def arm_table(df: pd.DataFrame, metric: str, mode: str, arms: list[str]) -> pd.DataFrame:
    """Per arm: best trial per (arm, seed) cell, then mean ± std over seeds and Δ vs the first arm."""
    ok = df[df[metric].notna()]
    pick = ok.groupby(["arm", "seed"])[metric].min() if mode == "min" else ok.groupby(["arm", "seed"])[metric].max()
    out = []
    baseline = float(pick.loc[arms[0]].mean()) if arms and arms[0] in pick.index.get_level_values(0) else math.nan
    for arm in arms:
        vals = pick.loc[arm].to_numpy(dtype=float) if arm in pick.index.get_level_values(0) else np.array([])
        mean = float(vals.mean()) if len(vals) else math.nan
        out.append({"arm": arm, "seeds": len(vals), "trials": int((df["arm"] == arm).sum()),
                    "mean": mean, "std": float(vals.std(ddof=1)) if len(vals) > 1 else math.nan,
                    "delta_vs_" + (arms[0] if arms else "first"): mean - baseline})
    return pd.DataFrame(out)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "—" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def markdown_table(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def write_reports(run_dir: Path, df: pd.DataFrame, name: str, metric: str, mode: str,
                  arms: list[str], shards: str | None = None) -> pd.DataFrame:
    """results.csv/.parquet (one row per trial) and report.md (per-arm comparison); returns the arm table."""
    run_dir.mkdir(parents=True, exist_ok=True)
    info = {"name": name, "metric": metric, "mode": mode, "arms": arms, "shards": shards}
    atomic_write(run_dir / RUN_INFO, lambda p: p.write_text(json.dumps(info, indent=2)))
    atomic_write(run_dir / "results.csv", lambda p: df.to_csv(p, index=False))
    atomic_write(run_dir / "results.parquet", lambda p: df.to_parquet(p, index=False))
    table = arm_table(df, metric, mode, arms)
    best = best_trial(df, metric, mode)
    lines = [
        f"# {name}: ablation report", "",
        f"Monitored metric: `{metric}` ({mode}). Per arm: the best trial of each (arm, seed) cell over the "
        f"search, then mean ± std over seeds; Δ is against the first arm, `{arms[0] if arms else ''}`.", "",
        markdown_table(table.rename(columns={"mean": f"{metric} mean", "std": f"{metric} std"})), "",
        f"Trials: {len(df)} ({int((df['status'] == 'ERROR').sum())} failed).",
    ]
    if best is not None:
        lines += ["", f"Best trial: `{best['trial_id']}` (arm {best['arm']}, seed {best['seed']}): "
                  f"{metric} = {best[metric]:.4f}; checkpoint `{best['checkpoint']}`."]
    lines += ["", "## All trials", "", markdown_table(df.drop(columns=["checkpoint", "error"], errors="ignore")), ""]
    atomic_write(run_dir / "report.md", lambda p: p.write_text("\n".join(lines)))
    return table


def load_run(run_dir: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """A finished run folder's info and trial table (for `neuroray report` / `export`)."""
    from neuroray.errors import NeurorayError

    info_path, results = run_dir / RUN_INFO, run_dir / "results.parquet"
    if not info_path.is_file() or not results.is_file():
        raise NeurorayError(f"{run_dir}: not a finished neuroray run folder (no {RUN_INFO} / results.parquet)")
    return json.loads(info_path.read_text()), pd.read_parquet(results)
