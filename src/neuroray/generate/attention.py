"""`neuroray generate RUN_DIR --attention`: a temporal_vit trial's attention rollout on the held-out test
split, averaged per true class, as (trial, time) maps: one NPY per class, a PNG of them all (with the
difference of two classes) and attention.json saying what was read. From the checkpoint and the shard set
alone; the rollout itself is ``trainables/models/vit.attention_rollout``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from neuroray.datasets.shards import open_shard_set, tensor_column_to_numpy
from neuroray.errors import NeurorayError
from neuroray.export.to_onnx import checkpoint_of, select_trial
from neuroray.outputs import atomic_write
from neuroray.reports.folder import best_trial, load_run
from neuroray.reports.source import RunInfo
from neuroray.run_folder.checkpoints import CKPT_META, load_checkpoint
from neuroray.run_folder.storage import is_uri

__all__ = ["AttentionMaps", "attention_maps"]


@dataclass
class AttentionMaps:
    """What ``attention_maps`` wrote: per class, its mean map (trial tokens × time tokens) and file."""

    trial_id: str
    out: Path
    maps: dict[int, np.ndarray]
    counts: dict[int, int]
    files: list[Path]


def _rollouts(module: torch.nn.Module, x: np.ndarray, batch_size: int) -> np.ndarray:
    """(N, trial tokens, time tokens): each test sequence's rollout, summed over frequency tokens."""
    parts = [module.attention_rollout(torch.from_numpy(x[i:i + batch_size])).sum(dim=2).numpy()  # type: ignore[operator]
             for i in range(0, len(x), batch_size)]
    return np.concatenate(parts).astype(np.float32)


def _save_npy(path: Path, values: np.ndarray) -> None:
    with path.open("wb") as f:  # a file object: np.save would add ".npy" to the temp name
        np.save(f, values)


def _png(maps: dict[int, np.ndarray], counts: dict[int, int], patch: tuple[int, int], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(f"class {k} (n = {counts[k]})", m, "viridis") for k, m in maps.items()]
    if len(maps) == 2:
        (a, ma), (b, mb) = maps.items()
        panels.append((f"class {b} − class {a}", mb - ma, "RdBu_r"))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 0.6, 3.4), squeeze=False)
    # one scale for the class maps, from their own range: rollout is near-uniform where little is learnt
    low, top = min(float(m.min()) for m in maps.values()), max(float(m.max()) for m in maps.values())
    for ax, (name, m, cmap) in zip(axes[0], panels, strict=True):
        if cmap == "RdBu_r":
            lim = float(np.abs(m).max()) or 1.0
            im = ax.imshow(m, aspect="auto", cmap=cmap, vmin=-lim, vmax=lim, interpolation="nearest")
        else:
            im = ax.imshow(m, aspect="auto", cmap=cmap, vmin=low, vmax=top, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(f"time token ({patch[1]} frames each)")
        ax.set_ylabel(f"trial token ({patch[0]} trial{'s' if patch[0] > 1 else ''} each)")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    try:
        atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)


def _is_vit(checkpoint: object) -> bool:
    meta = Path(str(checkpoint)) / CKPT_META
    return isinstance(checkpoint, str) and not is_uri(checkpoint) and meta.is_file() and \
        json.loads(meta.read_text()).get("trainable") == "temporal_vit"


def _choose(run_dir: Path, trial: str) -> tuple[RunInfo, pd.Series]:
    """``best``: the best temporal_vit trial by the run's metric (a run may compare it with a CNN arm)."""
    if trial != "best":
        return select_trial(run_dir, trial)
    info, trials = load_run(run_dir)
    vit = trials[[_is_vit(c) for c in trials["checkpoint"]]]
    row = best_trial(vit, info.metric, info.mode) if not vit.empty else None
    return (info, row) if row is not None else select_trial(run_dir, trial)  # its error or trainable says why


def attention_maps(run_dir: Path, trial: str = "best", out: Path | None = None,
                   batch_size: int = 64) -> AttentionMaps:
    """The chosen trial's per-class mean attention rollout over the test split, written to ``out`` (default
    ``RUN_DIR/generate/<trial>/attention``); ``best`` is the best temporal_vit trial."""
    info, row = _choose(run_dir, trial)
    trial_id = str(row["trial_id"])
    module = load_checkpoint(checkpoint_of(row, run_dir))
    if not hasattr(module, "attention_rollout"):
        raise NeurorayError(f"--attention: trial {trial_id} is a {module.name} model; attention rollout needs a "
                            "temporal_vit trial (its tokens are (trial, frequency, time) tubelets)")
    if not info.shards or not Path(info.shards).is_dir():
        raise NeurorayError(f"{run_dir}/run.json: its shard set {info.shards!r} is not there; the test split "
                            "is read from it")
    shards = open_shard_set(info.shards)
    target = str(module.target)
    if shards.rows("test") == 0:
        raise NeurorayError(f"{info.shards}: the test split has no rows; attention maps are made on it")
    table = shards.read_split("test", ["x", target])
    x = tensor_column_to_numpy(table.column("x")).astype(np.float32)
    y = np.asarray(table.column(target).to_pylist(), dtype=object)
    known = np.array([v is not None and not (isinstance(v, float) and np.isnan(v)) for v in y])
    rollouts = _rollouts(module, x[known], batch_size)
    labels = np.array([int(v) for v in y[known]])
    classes = sorted(set(labels.tolist()))
    maps = {k: rollouts[labels == k].mean(axis=0) for k in classes}
    counts = {k: int((labels == k).sum()) for k in classes}
    out = out or run_dir / "generate" / trial_id / "attention"
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for k, m in maps.items():
        path = out / f"attention_class{k}.npy"
        atomic_write(path, partial(_save_npy, values=m))
        files.append(path)
    hp: Any = module.hp
    patch = (int(hp.trial_patch), int(hp.time_patch))
    png = out / "attention.png"
    _png(maps, counts, patch, f"{info.name}: attention rollout of trial {trial_id} (arm {row.get('arm')}), "
         f"test split", png)
    files.append(png)
    record = {"trial_id": trial_id, "arm": row.get("arm"), "checkpoint": str(checkpoint_of(row, run_dir)),
              "shards": info.shards, "split": "test", "target": target, "counts": counts,
              "shape": list(next(iter(maps.values())).shape), "axes": ["trial token", "time token"],
              "patch": {"trial": patch[0], "freq": int(hp.freq_patch), "time": patch[1]},
              "method": "attention rollout (Abnar & Zuidema 2020): heads averaged, 0.5·A + 0.5·I per block, "
                        "class-token row, summed over frequency tokens, mean over each class's sequences"}
    meta = out / "attention.json"
    atomic_write(meta, lambda p: p.write_text(json.dumps(record, indent=2, default=str)))
    files.append(meta)
    return AttentionMaps(trial_id, out, maps, counts, files)
