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

    from neuroray.run import session

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


# A synthetic HBN tree (real R1 sidecars, synthetic signals) and its challenge1 shard set, once per session.
# 20 subjects, one CCD run each, at 100 Hz: ~250 MB, the smallest tree the acceptance asks for.
N_SUBJECTS = 20
C1_ARGS = ["--target", "challenge1", "--quiet"]


@pytest.fixture(scope="session")
def c1_args() -> list[str]:
    return list(C1_ARGS)


@pytest.fixture(scope="session")
def n_subjects() -> int:
    return N_SUBJECTS


@pytest.fixture(scope="session")
def hbn_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from neuroray.cli import main

    out = tmp_path_factory.mktemp("bids") / "hbn"
    assert main(["prepare", "eeg", "--synthetic-hbn", str(N_SUBJECTS), "--synthetic-sfreq", "100",
                 "--synthetic-runs", "1", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def c1_shards(hbn_tree: Path, ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from neuroray.cli import main

    out = tmp_path_factory.mktemp("shards") / "c1"
    assert main(["prepare", "eeg", "--bids", str(hbn_tree), "--out", str(out), *C1_ARGS]) == 0
    return out


@pytest.fixture(scope="session")
def demo_smoke_run(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`neuroray run experiments/demo.yaml --smoke`, once per session (4 trials); tests read it, and may add to
    it (export/, a rebuilt report), but do not remove what others read."""
    from neuroray.cli import main

    work = tmp_path_factory.mktemp("demo")
    cwd = os.getcwd()
    os.chdir(work)  # data/ (relative in demo.yaml) lands in the temp folder
    try:
        assert main(["run", str(REPO / "experiments" / "demo.yaml"), "--smoke", "--quiet",
                     "--storage", str(work / "runs")]) == 0
    finally:
        os.chdir(cwd)
    return work / "runs" / "demo-smoke"
