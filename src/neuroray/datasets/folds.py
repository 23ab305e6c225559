"""Subject folds over a shard set's train+val rows (``matrix.folds: K``): which group (subject; session or animal
for LFP; study for volumes) is validated on in which fold. The test split is never touched.

Groups, not windows, are assigned, so no subject is on both sides of a fold (scikit-learn's ``GroupKFold``, or
``StratifiedGroupKFold`` when the target is a class label). The assignment is a pure function of the shard set
and K, written once to the run folder (``folds.json``) and shared by every arm. Imports no Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from neuroray.datasets.shards import ShardSet
from neuroray.errors import ConfigError

__all__ = ["FOLDS_FILE", "FoldPlan", "group_column", "plan_folds"]

FOLDS_FILE = "folds.json"
_DEFAULT_GROUP = {"eeg": "subject", "volume": "study_id", "spectrogram": "session"}
SEED = 0  # folds are part of the design, not of a seed: the same for every arm and seed


def group_column(shard_set: ShardSet) -> str:
    """The column the shard set was split by (what a fold must keep on one side)."""
    split = shard_set.manifest.get("split") or {}
    return str(split.get("by") or _DEFAULT_GROUP.get(shard_set.manifest["modality"], "subject"))


@dataclass(frozen=True)
class FoldPlan:
    """K folds: ``fold_of`` maps each train+val group to the fold it is validated in; ``rows`` the (train, val)
    row counts per fold (the corrected resampled t-test needs their ratio)."""

    k: int
    by: str
    method: str
    fold_of: dict[str, int]
    rows: list[tuple[int, int]] = field(default_factory=list)
    test_groups: list[str] = field(default_factory=list)

    def val_groups(self, fold: int) -> list[str]:
        """The groups validated on in ``fold`` (the others of train+val train it)."""
        return sorted(g for g, f in self.fold_of.items() if f == fold)

    @property
    def test_train_ratio(self) -> float:
        """Mean over folds of val rows / train rows (n_test/n_train of the Nadeau–Bengio correction)."""
        return float(np.mean([v / t for t, v in self.rows])) if self.rows else 0.0

    def to_json(self) -> dict[str, Any]:
        """``folds.json``: K, the grouping column, the method, group → fold, rows per fold, the test groups."""
        return {"k": self.k, "by": self.by, "method": self.method, "fold_of": dict(sorted(self.fold_of.items())),
                "rows": [list(r) for r in self.rows], "test_groups": self.test_groups}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FoldPlan:
        """Read back ``to_json``'s mapping."""
        return cls(int(d["k"]), str(d["by"]), str(d["method"]), {str(g): int(f) for g, f in d["fold_of"].items()},
                   [(int(t), int(v)) for t, v in d.get("rows", [])], [str(g) for g in d.get("test_groups", [])])


def _column(shard_set: ShardSet, split: str, name: str) -> np.ndarray:
    if shard_set.rows(split) == 0 or not shard_set.files(split):
        return np.array([], dtype=object)
    col = shard_set.read_split(split, [name]).column(name)
    return np.asarray(col.to_numpy(zero_copy_only=False) if isinstance(col, pa.ChunkedArray) else col)


def plan_folds(shard_set: ShardSet, k: int, class_target: str | None = None, key: str = "matrix.folds") -> FoldPlan:
    """K group folds over train+val; ``class_target``: stratify by that class column (StratifiedGroupKFold).
    Refuses (one line naming ``key``) a K the groups cannot fill."""
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    by = group_column(shard_set)
    if by not in shard_set.manifest["columns"]:
        raise ConfigError(f"{key}: the shard set {shard_set.root} has no {by!r} column to build subject folds from")
    groups = np.concatenate([_column(shard_set, s, by) for s in ("train", "val")]).astype(str)
    unique = sorted(set(groups))
    if k > len(unique):
        raise ConfigError(f"{key}: {k} folds, but the train+val splits of {shard_set.root} hold only {len(unique)} "
                          f"distinct {by} values; use 2..{len(unique)}")
    x = np.zeros((len(groups), 1))
    if class_target is not None:
        labels = np.concatenate([_column(shard_set, s, class_target) for s in ("train", "val")]).astype(float)
        labels = np.where(np.isfinite(labels), labels, -1).astype(int)
        splitter: Any = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=SEED)
        method, splits = "StratifiedGroupKFold", splitter.split(x, labels, groups)
    else:
        splitter = GroupKFold(n_splits=k, shuffle=True, random_state=SEED)
        method, splits = "GroupKFold", splitter.split(x, groups=groups)
    fold_of: dict[str, int] = {}
    rows: list[tuple[int, int]] = []
    for fold, (train_idx, val_idx) in enumerate(splits):
        fold_of.update({str(g): fold for g in set(groups[val_idx])})
        rows.append((len(train_idx), len(val_idx)))
    test = sorted(str(g) for g in set(_column(shard_set, "test", by).astype(str)))
    return FoldPlan(k, by, method, fold_of, rows, test)
