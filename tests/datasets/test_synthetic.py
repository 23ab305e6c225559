from pathlib import Path

import numpy as np

from neuroray.datasets.shards import open_shard_set, tensor_column_to_numpy
from neuroray.datasets.synthetic import ALPHA_HZ, eeg_band_power_windows


def test_target_is_planted_in_alpha_power() -> None:
    """An independent FFT computation of 10 Hz power recovers the target; broadband power does not."""
    x, y, _ = eeg_band_power_windows(n_subjects=6, windows_per_subject=30, n_chans=10, n_times=200, seed=5)
    spectrum = np.abs(np.fft.rfft(x, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(200, d=1 / 100.0)
    alpha = np.log(spectrum[:, 5:, np.abs(freqs - ALPHA_HZ) < 1.0].sum(axis=(1, 2)))
    broadband = np.log((x[:, :5] ** 2).sum(axis=(1, 2)))
    assert np.corrcoef(alpha, y)[0, 1] > 0.8
    assert abs(np.corrcoef(broadband, y)[0, 1]) < 0.3


def test_shard_set_is_split_by_subject_and_train_normalized(small_eeg: Path) -> None:
    s = open_shard_set(small_eeg)
    subjects = {split: set(s.read_split(split, ["subject"])["subject"].to_pylist())
                for split in ("train", "val", "test")}
    assert not subjects["train"] & subjects["val"] and not subjects["train"] & subjects["test"]
    assert not subjects["val"] & subjects["test"]
    x = tensor_column_to_numpy(s.read_split("train")["x"])
    np.testing.assert_allclose(x.mean(axis=(0, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(x.std(axis=(0, 2)), 1, atol=1e-3)
    assert s.manifest["normalization"]["from"] == "train"
    assert s.manifest["sources"][0]["params"]["seed"] == 3
