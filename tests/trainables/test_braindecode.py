"""braindecode models as ``eeg_regressor`` encoders: build, step, export, learn."""

import subprocess
import sys
import typing
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from train_step import step_changes

from neuroray.datasets.spec import EEGWindowSpec
from neuroray.datasets.synthetic import eeg_band_power_windows
from neuroray.errors import ConfigError
from neuroray.trainables import base
from neuroray.trainables.models import braindecode_encoders
from neuroray.trainables.models.eeg_encoders import ENCODERS

BRAINDECODE = list(braindecode_encoders.MODELS)
# Small windows with 10-20 names, so 'labram' can place the channels on the scalp.
SMALL = EEGWindowSpec(n_chans=8, n_times=256, sfreq=128.0, ch_names=("Fz", "Cz", "Pz", "Oz", "C3", "C4", "O1", "O2"))
# The EEG2025 / HBN layout: GSN-HydroCel-129 names, 2 s at 100 Hz.
HBN = EEGWindowSpec(n_chans=129, n_times=200, sfreq=100.0,
                    ch_names=tuple(f"E{i}" for i in range(1, 129)) + ("Cz",))


def _build(encoder: str, spec: EEGWindowSpec = SMALL, **hparams: object) -> base.Task:
    return base.build("eeg_regressor", spec, {"encoder": encoder, **hparams}, target="y")


def test_encoder_literal_names_every_encoder_once() -> None:
    names = typing.get_args(base.hparam_fields("eeg_regressor")["encoder"])
    assert sorted(names) == sorted([*ENCODERS, *BRAINDECODE])
    assert {"eegnex", "eegnet", "shallowfbcsp", "deep4"} <= set(BRAINDECODE)


def test_importing_the_trainable_does_not_import_braindecode() -> None:
    code = "import sys, neuroray.trainables.tasks.eeg; assert 'braindecode' not in sys.modules, 'imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("encoder", BRAINDECODE)
def test_tiny_input_step_is_finite(encoder: str) -> None:
    torch.manual_seed(0)
    module = _build(encoder)
    batch = {"x": torch.randn(4, 8, 256), "y": torch.tensor([0.1, float("nan"), -0.3, 1.0])}
    assert any(step_changes(module, batch))
    assert module(batch["x"]).shape == (4,)
    assert module(batch["x"][:1]).shape == (1,)  # one window: still one prediction, not a 0-d tensor


@pytest.mark.parametrize("encoder", BRAINDECODE)
def test_builds_at_the_hbn_layout(encoder: str) -> None:
    module = _build(encoder, HBN).eval()
    with torch.no_grad():
        assert module(torch.randn(2, 129, 200)).shape == (2,)


@pytest.mark.parametrize("encoder", BRAINDECODE)
def test_onnx_export_parity(tmp_path: Path, encoder: str) -> None:
    from neuroray.export.to_onnx import PARITY_TOL, export_module, parity

    torch.manual_seed(0)
    module = _build(encoder).eval()
    path = export_module(module, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx.data").exists()  # one self-contained file
    x = np.random.default_rng(1).standard_normal((7, 8, 256)).astype(np.float32)  # batch 7: dynamic axis
    diff = parity(module, path, x)
    with torch.no_grad():
        scale = float(module(torch.from_numpy(x)).abs().max())  # labram's fresh head outputs ~1e-4
    assert diff <= PARITY_TOL and diff <= 1e-4 * scale, (diff, scale)


def test_unfit_windows_fail_at_build_naming_the_encoder() -> None:
    with pytest.raises(ConfigError, match=r"'signaljepa_prelocal' .* 8 channels x 100 samples at 100 Hz"):
        _build("signaljepa_prelocal", EEGWindowSpec(n_chans=8, n_times=100, sfreq=100.0))
    unnamed = EEGWindowSpec(n_chans=8, n_times=256, sfreq=128.0)
    with pytest.raises(ConfigError, match="'labram' needs channel names"):
        _build("labram", unnamed)
    synthetic = EEGWindowSpec(n_chans=2, n_times=256, sfreq=128.0, ch_names=("Cz", "EEG001"))
    with pytest.raises(ConfigError, match=r"lacks EEG001: 1 of 2\); rename the channels or choose another encoder"):
        _build("labram", synthetic)
    with pytest.raises(ConfigError, match="unknown braindecode encoder 'eegnetv4'; available: eegnex, eegnet"):
        braindecode_encoders.build("eegnetv4", SMALL)


def test_eegnex_learns_planted_band_power() -> None:
    """A plain lightning.Trainer on CPU: EEGNeX beats the mean predictor (NRMSE 1.0) on held-out subjects."""
    x, y, subject = eeg_band_power_windows(n_subjects=8, windows_per_subject=40, n_chans=8, n_times=200, seed=0)
    x = (x - x.mean(axis=(0, 2), keepdims=True)) / x.std(axis=(0, 2), keepdims=True)
    val = subject >= 6  # subjects 6, 7 never seen in training

    def loader(mask: np.ndarray, shuffle: bool) -> torch.utils.data.DataLoader:
        rows = [{"x": torch.from_numpy(a), "y": torch.tensor(b)} for a, b in zip(x[mask], y[mask], strict=True)]
        return torch.utils.data.DataLoader(rows, batch_size=32, shuffle=shuffle)  # type: ignore[arg-type]

    L.seed_everything(0)
    module = _build("eegnex", EEGWindowSpec(n_chans=8, n_times=200, sfreq=100.0), lr=3e-3)
    trainer = L.Trainer(max_epochs=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(module, loader(~val, True), loader(val, False))
    assert float(trainer.callback_metrics["val/nrmse"]) < 0.8  # the mean predictor scores 1.0
