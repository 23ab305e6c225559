"""Group-wise splits: by subject (EEG) or session (LFP), never by window."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from neuroray.errors import NeurorayError

SPLITS = ("train", "val", "test")


def split_groups(
    groups: Sequence[str], fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0
) -> dict[str, str]:
    """Assign every distinct group to one split, reproducibly from ``seed``.

    Each split gets at least one group when there are >= 3 groups, so val/test are never empty.
    """
    unique = sorted(set(groups))
    if len(unique) < 3:
        raise NeurorayError(f"need at least 3 distinct subjects/sessions to split train/val/test; got {len(unique)}")
    if any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise NeurorayError(f"split fractions must be >= 0 and sum to 1; got {fractions}")
    order = np.random.default_rng(seed).permutation(len(unique))
    n = len(unique)
    n_val = max(1, round(fractions[1] * n))
    n_test = max(1, round(fractions[2] * n))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise NeurorayError(f"split fractions {fractions} leave no training group out of {n}")
    out: dict[str, str] = {}
    for rank, idx in enumerate(order):
        out[unique[idx]] = "train" if rank < n_train else ("val" if rank < n_train + n_val else "test")
    return out
