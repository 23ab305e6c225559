"""``data.cache: auto`` decides by a split's decoded size, not its Parquet bytes, and says which it chose
(object-storage issue, item 5): a set whose compressed files are tiny but whose decoded windows pass the
(test-lowered) bound is streamed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ray.data.dataset import MaterializedDataset

from neuroray.datasets.shards import ShardSetWriter, open_shard_set
from neuroray.datasets.spec import EEGWindowSpec
from neuroray.run import ingest


def _smooth_set(out: Path) -> Path:
    """Slow sines: Parquet compresses them many times over, as it does real maps."""
    t = np.linspace(0, 1, 100, dtype=np.float32)
    writer = ShardSetWriter(out, EEGWindowSpec(n_chans=8, n_times=100, sfreq=100.0))
    for split, n in (("train", 64), ("val", 8)):
        x = np.broadcast_to(np.round(np.sin(2 * np.pi * t), 1), (n, 8, 100)).astype(np.float32)
        writer.write(split, x, {"y": np.zeros(n), "subject": np.array([f"S{i % 4}" for i in range(n)])})
    writer.commit()
    return out


@pytest.mark.usefixtures("ray_session")
def test_auto_streams_what_would_not_fit_decoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    shard_set = open_shard_set(_smooth_set(tmp_path / "smooth"))
    decoded = ingest.decoded_bytes(shard_set, "train")
    on_disk = sum(Path(f).stat().st_size for f in shard_set.files("train"))
    assert decoded == shard_set.rows("train") * (4 * 8 * 100 + 8 * (len(ingest.tensor_columns(shard_set)) - 1))
    bound = (decoded + on_disk) // 2
    assert on_disk < bound < decoded  # the file size alone would have said "materialize"
    monkeypatch.setenv(ingest.CACHE_ENV, str(bound))
    out = ingest.load_datasets(shard_set, splits=("train",), say=True)["train"]
    assert not isinstance(out, MaterializedDataset)
    line = capsys.readouterr().out
    assert "data: train" in line and "streamed" in line and "exceeds" in line
    monkeypatch.setenv(ingest.CACHE_ENV, str(decoded * 2))
    out = ingest.load_datasets(shard_set, splits=("train",), say=True)["train"]
    assert isinstance(out, MaterializedDataset) and "in memory" in capsys.readouterr().out


@pytest.mark.usefixtures("ray_session")
def test_a_streamed_epoch_prints_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The train loop on a streamed split: lines with batches done / total and windows/s inside each epoch."""
    from neuroray.run.loop_config import LoopConfig, SpecRef
    from neuroray.run.train import run_phases
    from neuroray.search_spaces.schema import Phase

    shard_set = open_shard_set(_smooth_set(tmp_path / "smooth"))
    monkeypatch.setenv(ingest.CACHE_ENV, str(ingest.decoded_bytes(shard_set, "train") // 2))
    data = ingest.load_datasets(shard_set, splits=("train", "val"), say=True)
    assert not isinstance(data["train"], MaterializedDataset)
    phase = Phase(name="fit", trainable="eeg_regressor", target="y", epochs=2, batch_size=16,
                  hparams={"encoder": "shallow"})
    cfg = LoopConfig(phases=[phase], spec=SpecRef(modality="eeg", spec=shard_set.manifest["spec"]), seed=0,
                     metric="val/nrmse", mode="min", trial_name="t0", progress_s=1e-6,
                     train_rows=shard_set.rows("train"))
    reports: list[dict[str, object]] = []
    run_phases(cfg, get_shard=lambda split: data[split].iterator(), report=lambda m, _: reports.append(m))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("t0 fit: epoch")]
    assert len(reports) == 2
    for epoch in (1, 2):  # 64 train rows in batches of 16: four per epoch, the total known from the first
        assert [line.split(", ")[1] for line in lines if f"epoch {epoch}/2" in line] == [
            "batch 1/4 (25 %)", "batch 2/4 (50 %)", "batch 3/4 (75 %)", "batch 4/4 (100 %)"], lines
    assert all(line.endswith("windows/s") for line in lines)
