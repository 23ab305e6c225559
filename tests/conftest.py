"""ONE session-scoped Ray for the whole suite (DESIGN §6); plus small shared fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    import ray

    from neuroray.platform import session

    os.environ.pop("RAY_ADDRESS", None)
    os.environ["WANDB_MODE"] = "offline"
    session.start(num_cpus=4)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def small_eeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small planted-signal EEG shard set written through the production writer."""
    from neuroray.datasets.synthetic import write_synthetic_eeg

    out = tmp_path_factory.mktemp("shards") / "eeg"
    write_synthetic_eeg(out, n_subjects=8, windows_per_subject=40, n_chans=8, n_times=100, seed=3)
    return out
