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
import torch

from neuroray.datasets.shards import tensor_column_to_numpy
from neuroray.errors import NeurorayError
from neuroray.generate.trial_model import load_trial
from neuroray.outputs import atomic_write

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


def attention_maps(run_dir: Path, trial: str = "best", out: Path | None = None,
                   batch_size: int = 64) -> AttentionMaps:
    """The chosen trial's per-class mean attention rollout over the test split, written to ``out`` (default
    ``RUN_DIR/generate/<trial>/attention``); ``best`` is the best temporal_vit trial."""
    t = load_trial(run_dir, trial, "temporal_vit", "--attention (rollout over (trial, frequency, time) tokens)")
    info, row, module, shards, trial_id = t.info, t.row, t.module, t.shards, t.trial_id
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
    record = {"trial_id": trial_id, "arm": row.get("arm"), "checkpoint": str(row.get("checkpoint")),
              "shards": info.shards, "split": "test", "target": target, "counts": counts,
              "shape": list(next(iter(maps.values())).shape), "axes": ["trial token", "time token"],
              "patch": {"trial": patch[0], "freq": int(hp.freq_patch), "time": patch[1]},
              "method": "attention rollout (Abnar & Zuidema 2020): heads averaged, 0.5·A + 0.5·I per block, "
                        "class-token row, summed over frequency tokens, mean over each class's sequences"}
    meta = out / "attention.json"
    atomic_write(meta, lambda p: p.write_text(json.dumps(record, indent=2, default=str)))
    files.append(meta)
    return AttentionMaps(trial_id, out, maps, counts, files)
