"""Masked-reconstruction pretraining of an EEG encoder (phase 1 of multi-phase EEG training).

Patches of channels × time are zeroed; the encoder sees the masked window and a linear decoder
reconstructs the whole window from its features; the loss counts only the masked entries, so the
encoder must infer them from context. An auxiliary head (e.g. p_factor) can ride along.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from neuroray.datasets.spec import EEGWindowSpec
from neuroray.errors import ConfigError
from neuroray.trainables.base import OpenFraction, PositiveFloat, PositiveInt, TaskHparams, register
from neuroray.trainables.losses import patch_mask
from neuroray.trainables.tasks.eeg import EEGEncoderHparams, EEGTask


@dataclass
class MaskedPretrainHparams(EEGEncoderHparams):
    """Masked pretraining hparams: share of patches hidden, patch size in channels and seconds."""

    mask_ratio: OpenFraction = 0.5
    patch_chans: PositiveInt = 4  # channels per patch
    patch_s: PositiveFloat = 0.25  # seconds per patch


@register
class EEGMaskedPretrain(EEGTask):
    """Reconstruct hidden channel×time patches; monitors val/recon (MSE on hidden entries, z-scored data)."""

    name: ClassVar[str] = "eeg_masked_pretrain"
    modality: ClassVar[str] = "eeg"
    monitor: ClassVar[str] = "val/recon"
    logs: ClassVar[tuple[str, ...]] = ("train/recon", "val/recon")  # besides train/loss and val/loss
    mode: ClassVar[str] = "min"
    output: ClassVar[str] = "reconstruction of the (z-scored) input window"
    scorer: ClassVar[str] = "masked_reconstruction"
    Hparams: ClassVar[type[TaskHparams]] = MaskedPretrainHparams
    hp: MaskedPretrainHparams

    def __init__(self, spec: EEGWindowSpec, hparams: Any = None, target: str | None = None) -> None:
        super().__init__(spec, hparams, target=target)
        if not 0.0 < self.hp.mask_ratio < 1.0:
            raise ConfigError(f"hparams.mask_ratio: {self.hp.mask_ratio} must be between 0 and 1")
        self.patch_t = max(1, round(self.hp.patch_s * spec.sfreq))
        self.decoder = nn.Linear(self.hp.n_filters, spec.n_chans * self.input_spec.n_times)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``x`` (B, C, T) from its features (export: the unmasked autoencoder; with ``crop_s``
        that of the centred crop)."""
        x = self.crop(x)
        return self.decoder(self.encoder(x)).reshape(x.shape)

    def _loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.crop(batch["x"].float())
        mask = patch_mask(x.shape[0], x.shape[1], x.shape[2], self.hp.patch_chans, self.patch_t,
                          self.hp.mask_ratio).to(x.device)
        features = self.encoder(x.masked_fill(mask, 0.0))
        recon = self.decoder(features).reshape(x.shape)
        hidden = mask.float()
        recon_loss = ((recon - x) ** 2 * hidden).sum() / hidden.sum().clamp_min(1.0)
        return recon_loss, self.aux_loss(features, batch)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        recon, aux = self._loss(batch)
        n = len(batch["x"])
        self.log("train/recon", recon, on_step=False, on_epoch=True, batch_size=n)
        self.log("train/loss", recon + aux, on_step=False, on_epoch=True, batch_size=n)
        return recon + aux

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        recon, aux = self._loss(batch)
        n = len(batch["x"])
        self.log("val/recon", recon, on_step=False, on_epoch=True, batch_size=n)
        self.log("val/loss", recon + aux, on_step=False, on_epoch=True, batch_size=n)
