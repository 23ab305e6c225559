from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from train_step import assert_logs_declared

from neuroray.datasets.shards import open_shard_set, tensor_column_to_numpy
from neuroray.datasets.spec import EEGWindowSpec
from neuroray.errors import ConfigError
from neuroray.trainables import base
from neuroray.trainables.metrics import NRMSE, nrmse

SPEC = EEGWindowSpec(n_chans=8, n_times=100, sfreq=100.0)


def _loader(shards: Path, split: str, shuffle: bool) -> torch.utils.data.DataLoader:
    table = open_shard_set(shards).read_split(split, ["x", "y"])
    x = torch.from_numpy(tensor_column_to_numpy(table["x"]))
    y = torch.from_numpy(table["y"].to_numpy())
    rows = [{"x": a, "y": b} for a, b in zip(x, y, strict=True)]
    return torch.utils.data.DataLoader(rows, batch_size=16, shuffle=shuffle)  # type: ignore[arg-type]


def test_registry_lists_and_rejects_unknown() -> None:
    assert "eeg_regressor" in base.available()
    with pytest.raises(ConfigError, match="unknown trainable 'eeg_regresor'; available: .*eeg_regressor"):
        base.get("eeg_regresor")
    with pytest.raises(ConfigError, match=r"hparams.lrr: unknown hyper-parameter .* allowed: .*lr"):
        base.validate_hparams("eeg_regressor", {"lrr": 0.1})
    with pytest.raises(ConfigError, match="one of 'shallow', 'conv'"):
        base.validate_hparams("eeg_regressor", {"encoder": "resnet"})


@pytest.mark.parametrize("encoder", ["shallow", "conv"])
def test_tiny_input_step_is_finite(encoder: str) -> None:
    module = base.build("eeg_regressor", SPEC, {"encoder": encoder}, target="y")
    batch = {"x": torch.randn(4, 8, 100), "y": torch.tensor([0.1, float("nan"), -0.3, 1.0])}
    opt = module.configure_optimizers()
    loss = module.training_step(batch, 0)
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    assert module(batch["x"]).shape == (4,)


def test_nrmse_matches_challenge_definition() -> None:
    rng = np.random.default_rng(0)
    y, p = rng.normal(3, 2, 500), rng.normal(3, 2, 500)
    expected = np.sqrt(np.mean((p - y) ** 2)) / np.std(y)  # population std, as the EEG2025 rules
    assert nrmse(torch.tensor(p), torch.tensor(y)) == pytest.approx(expected, rel=1e-6)
    m = NRMSE()  # accumulated over batches equals one shot
    for i in range(0, 500, 64):
        m.update(torch.tensor(p[i:i + 64]), torch.tensor(y[i:i + 64]))
    assert float(m.compute()) == pytest.approx(expected, rel=1e-6)
    assert nrmse(torch.full((500,), y.mean()), torch.tensor(y)) == pytest.approx(1.0, rel=1e-6)


def test_plain_lightning_fit_beats_mean_predictor(small_eeg: Path) -> None:
    """Runs with a plain lightning.Trainer (no Ray) and learns the planted target."""
    L.seed_everything(0)
    module = base.build("eeg_regressor", open_shard_set(small_eeg).spec, {"encoder": "shallow", "lr": 5e-3}, "y")
    trainer = L.Trainer(max_epochs=8, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(module, _loader(small_eeg, "train", True), _loader(small_eeg, "val", False))
    assert float(trainer.callback_metrics["val/nrmse"]) < 0.8  # the mean predictor scores 1.0
    assert_logs_declared(trainer, module)


@pytest.mark.parametrize("encoder", ["shallow", "conv"])
def test_onnx_export_parity(tmp_path: Path, encoder: str) -> None:
    from neuroray.export.to_onnx import export_module, parity

    module = base.build("eeg_regressor", SPEC, {"encoder": encoder}, target="y").eval()
    path = export_module(module, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx.data").exists()  # one self-contained file
    x = np.random.default_rng(1).standard_normal((7, 8, 100)).astype(np.float32)  # batch 7: dynamic axis
    assert parity(module, path, x) <= 1e-4


def test_classifier_learns_a_planted_class() -> None:
    """Class 1 = strong posterior alpha (the band-power planted signal, thresholded); AUROC on held-out subjects."""
    from neuroray.datasets.synthetic import eeg_band_power_windows

    x, y, subject = eeg_band_power_windows(n_subjects=10, windows_per_subject=40, n_chans=8, n_times=100, seed=1)
    label = (y > 0).astype(np.float32)
    spec = EEGWindowSpec(n_chans=8, n_times=100, sfreq=100.0)
    train, val = subject < 8, subject >= 8

    def loader(mask: np.ndarray, shuffle: bool) -> torch.utils.data.DataLoader:
        rows = [{"x": torch.from_numpy(x[i]), "correct": torch.tensor(label[i])} for i in np.flatnonzero(mask)]
        return torch.utils.data.DataLoader(rows, batch_size=32, shuffle=shuffle)

    torch.manual_seed(0)
    module = base.build("eeg_classifier", spec, {"encoder": "shallow", "lr": 5e-3}, target="correct")
    trainer = L.Trainer(max_epochs=8, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(module, loader(train, True), loader(val, False))
    assert trainer.callback_metrics["val/auroc"] > 0.85  # chance is 0.5
    assert_logs_declared(trainer, module)
    assert module(torch.zeros(3, 8, 100)).shape == (3, 2)


def test_crop_s_random_in_training_centred_in_evaluation() -> None:
    # windows carry their sample index, so a crop's first value is its start
    module = base.build("eeg_regressor", SPEC, {"encoder": "shallow", "crop_s": 0.4}, target="y")
    assert module.crop_n == 40 and module.input_spec.n_times == 40 and module.spec.n_times == 100
    x = torch.arange(100.0).expand(64, 8, 100).contiguous()
    module.train()
    cut = module.crop(x)
    assert cut.shape == (64, 8, 40)
    starts = cut[:, 0, 0]
    assert bool((cut == starts[:, None, None] + torch.arange(40.0)).all())  # contiguous, same on every channel
    assert len(set(starts.tolist())) > 10 and starts.min() >= 0 and starts.max() <= 60  # fresh per window
    module.eval()
    assert bool((module.crop(x)[:, :, 0] == 30).all())  # centred: (100 - 40) / 2
    assert module.crop(x[..., :40]).shape == (64, 8, 40)  # a window of the crop's length passes
    with torch.no_grad():  # forward takes the data's windows and the crop's alike
        assert torch.allclose(module(x), module(x[..., 30:70]))
    batch = {"x": torch.randn(4, 8, 100), "y": torch.tensor([0.1, 0.2, -0.3, 1.0])}
    module.train()
    assert torch.isfinite(module.training_step(batch, 0))
    for name in ("eeg_classifier", "eeg_masked_pretrain", "eeg_contrastive"):
        other = base.build(name, SPEC, {"encoder": "conv", "crop_s": 0.5}, target="label")
        other.train()
        assert torch.isfinite(other.training_step({"x": torch.randn(4, 8, 100), "label": torch.tensor([0, 1, 0, 1])}, 0))
    with pytest.raises(ConfigError, match=r"hparams.crop_s: 1.5 s is 150 samples at 100 Hz; the windows have 100"):
        base.build("eeg_regressor", SPEC, {"crop_s": 1.5}, target="y")
