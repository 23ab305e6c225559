"""Every registered trainable: a tiny-input step and an ONNX parity check; a missing case fails the suite.

Model-specific learning tests live beside each module's own test file; this table makes sure no
trainable is registered without at least these two checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from train_step import step_changes

from neuroray.datasets.spec import EEGWindowSpec, Spec, SpectrogramSpec, VolumeSpec
from neuroray.export.to_onnx import export_module, parity
from neuroray.trainables import base

EEG = EEGWindowSpec(n_chans=8, n_times=128, sfreq=64.0)
VOL = VolumeSpec(shape=(12, 14, 12), voxel_mm=8.0)
SPEC_SEQ = SpectrogramSpec(n_trials=4, n_freqs=16, n_frames=16)
SPEC_RX = SpectrogramSpec(n_trials=4, n_freqs=16, n_frames=16)


def _eeg(n: int) -> dict[str, torch.Tensor]:
    return {"x": torch.randn(n, 8, 128), "y": torch.randn(n), "label": torch.randint(0, 2, (n,)).float()}


@dataclass
class Case:
    spec: Spec
    batch: Callable[[int], dict[str, torch.Tensor]]
    target: str | None = None
    hparams: dict[str, Any] = field(default_factory=dict)


CASES: dict[str, Case] = {
    "eeg_regressor": Case(EEG, _eeg, "y", {"encoder": "conv"}),
    "eeg_classifier": Case(EEG, _eeg, "label", {"encoder": "shallow"}),
    "eeg_masked_pretrain": Case(EEG, _eeg, None, {"encoder": "conv"}),
    "eeg_contrastive": Case(EEG, _eeg, None, {"encoder": "conv"}),
    "vae3d": Case(VOL, lambda n: {"x": torch.randn(n, 1, 12, 14, 12)}, None, {"depth": 2, "base_channels": 8}),
    "temporal_vit": Case(SPEC_SEQ, lambda n: {"x": torch.randn(n, 4, 16, 16), "label": torch.randint(0, 2, (n,))},
                         "label", {"embed_dim": 32, "depth": 2}),
    "spectrogram_cnn": Case(SPEC_SEQ, lambda n: {"x": torch.randn(n, 4, 16, 16), "label": torch.randint(0, 2, (n,))},
                            "label", {"width": 8}),
    "rf_localizer": Case(SPEC_RX, lambda n: {"x": torch.randn(n, 4, 16, 16), "pos_x": torch.rand(n),
                                             "pos_y": torch.rand(n)}, None, {}),
}


def test_every_registered_trainable_has_a_case() -> None:
    missing = sorted(set(base.available()) - set(CASES))
    assert not missing, f"registered trainables without a zoo test case: {missing}"
    assert len(base.available()) >= 8  # the five studies: EEG (4), atlas VAE, LFP (ViT + CNN baseline), RF


@pytest.mark.parametrize("name", sorted(CASES))
def test_tiny_input_step(name: str) -> None:
    case = CASES[name]
    torch.manual_seed(0)
    module = base.build(name, case.spec, case.hparams, target=case.target)
    assert any(step_changes(module, case.batch(6), torch.optim.AdamW(module.parameters(), lr=1e-2)))


@pytest.mark.parametrize("name", sorted(CASES))
def test_onnx_export_parity(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    module = base.build(name, case.spec, case.hparams, target=case.target).eval()
    path = export_module(module, tmp_path / "model.onnx")
    x = case.batch(3)["x"].numpy().astype(np.float32)  # exported at batch 2: the batch axis is dynamic
    assert parity(module, path, x) <= 1e-4
