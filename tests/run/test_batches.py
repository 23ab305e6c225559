"""``Batches`` (run/train.py): the next epoch is opened during validation, and that changes nothing
about which batches each epoch yields."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import ray

from neuroray.run.train import Batches

ROWS, BATCH, EPOCHS = 100, 16, 3


def _epochs(batches: Batches, n: int) -> list[np.ndarray]:
    return [np.concatenate([b["i"].numpy() for b in batches]) for _ in range(n)]


def test_next_epoch_is_opened_ahead_and_yields_the_same_batches(ray_session: None) -> None:
    ds = ray.data.from_items([{"i": i} for i in range(ROWS)]).materialize()
    opened: list[str] = []

    def shard(split: str) -> Any:
        opened.append(split)
        return ds.iterator()

    ahead = Batches(shard, "train", BATCH, True, seed=3, epochs=EPOCHS)
    plain = Batches(lambda _split: ds.iterator(), "train", BATCH, True, seed=3)
    first = iter(ahead)
    next(first)
    assert ahead._ahead is None  # nothing opened ahead while an epoch runs
    for _ in first:
        pass
    assert ahead._ahead is not None and len(opened) == 2  # epoch 2 opened as soon as epoch 1 ran out
    got = [np.concatenate([b["i"].numpy() for b in ahead]) for _ in range(EPOCHS - 1)]
    assert ahead._ahead is None and len(opened) == EPOCHS  # nothing opened after the last epoch
    want = _epochs(plain, EPOCHS)[1:]
    for a, b in zip(got, want, strict=True):
        assert sorted(a) == list(range(ROWS)) and np.array_equal(a, b)  # same local-shuffle seeds per epoch
    assert not np.array_equal(got[0], got[1])


def test_an_error_opening_the_next_epoch_surfaces_in_that_epoch(ray_session: None) -> None:
    ds = ray.data.from_items([{"i": i} for i in range(ROWS)]).materialize()
    calls = []

    def shard(_split: str) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("shard gone")
        return ds.iterator()

    batches = Batches(shard, "train", BATCH, False, seed=0, epochs=2)
    assert len(_epochs(batches, 1)[0]) == ROWS
    with pytest.raises(RuntimeError, match="shard gone"):
        _epochs(batches, 1)
