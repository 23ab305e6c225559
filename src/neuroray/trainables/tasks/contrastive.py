"""Contrastive (InfoNCE) training of an EEG encoder: same stimulus, same moment, different subjects.

Each window is seen in two augmented views (noise, channel dropout, small time shift); a view's
positives are its other view and every window of the batch that shows the same movie
(``stimulus_index`` ≥ 0) at the same ``stimulus_time_s``; all other windows are negatives. A projection
head sits between encoder and loss; the temperature is learned (as a log, clamped).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from neuroray.datasets.spec import EEGWindowSpec
from neuroray.trainables.base import Fraction, NonNegativeFloat, PositiveFloat, PositiveInt, TaskHparams, register
from neuroray.trainables.losses import info_nce, positive_mask
from neuroray.trainables.tasks.eeg import EEGEncoderHparams, EEGTask


@dataclass
class ContrastiveHparams(EEGEncoderHparams):
    """Contrastive hparams: projection width, initial temperature, augmentation (noise, channel dropout, shift)."""

    proj_dim: PositiveInt = 32
    temperature: PositiveFloat = 0.1  # initial value; learned
    noise: NonNegativeFloat = 0.1
    channel_dropout: Fraction = 0.1
    max_shift_s: NonNegativeFloat = 0.05


@register
class EEGContrastive(EEGTask):
    """InfoNCE with a projection head and learnable temperature; monitors val/infonce."""

    name: ClassVar[str] = "eeg_contrastive"
    modality: ClassVar[str] = "eeg"
    monitor: ClassVar[str] = "val/infonce"
    logs: ClassVar[tuple[str, ...]] = (  # besides train/loss and val/loss
        "train/infonce", "train/pos_sim", "train/temperature", "val/infonce", "val/pos_sim")
    mode: ClassVar[str] = "min"
    output: ClassVar[str] = "L2-normalized embedding"
    scorer: ClassVar[str] = "contrastive"
    Hparams: ClassVar[type[TaskHparams]] = ContrastiveHparams
    hp: ContrastiveHparams

    def __init__(self, spec: EEGWindowSpec, hparams: Any = None, target: str | None = None) -> None:
        super().__init__(spec, hparams, target=target)
        w = self.hp.n_filters
        self.projection = nn.Sequential(nn.Linear(w, w), nn.ReLU(), nn.Linear(w, self.hp.proj_dim))
        self.log_temp = nn.Parameter(torch.tensor(math.log(self.hp.temperature)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized projection of ``x`` (B, proj_dim): the embedding a retrieval or probe would use."""
        return nn.functional.normalize(self.projection(self.encoder(self.crop(x))), dim=1)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """A random view of ``x``: a time roll of up to ``max_shift_s`` (one for the batch), channel dropout, noise."""
        shift = int(self.hp.max_shift_s * self.spec.sfreq)  # type: ignore[union-attr]
        if shift:
            x = torch.roll(x, int(torch.randint(-shift, shift + 1, (1,))), dims=-1)
        keep = (torch.rand(x.shape[0], x.shape[1], 1, device=x.device) >= self.hp.channel_dropout).float()
        return x * keep + self.hp.noise * torch.randn_like(x)

    def _loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = batch["x"].float()
        views = self.crop(torch.cat([self.augment(x), self.augment(x)], 0))  # two views: two crops
        features = self.encoder(views)
        z = self.projection(features)
        with torch.no_grad():
            self.log_temp.clamp_(math.log(0.01), math.log(1.0))
        pos = positive_mask(batch.get("stimulus_index"), batch.get("stimulus_time_s"), len(x))
        loss, pos_sim = info_nce(z, pos, self.log_temp)
        aux = self.aux_loss(features[: len(x)], batch)
        return loss, aux, pos_sim

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, aux, pos_sim = self._loss(batch)
        n = len(batch["x"])
        self.log("train/infonce", loss, on_step=False, on_epoch=True, batch_size=n)
        self.log("train/pos_sim", pos_sim, on_step=False, on_epoch=True, batch_size=n)
        self.log("train/temperature", self.log_temp.exp(), on_step=False, on_epoch=True, batch_size=n)
        self.log("train/loss", loss + aux, on_step=False, on_epoch=True, batch_size=n)
        return loss + aux

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, aux, pos_sim = self._loss(batch)
        n = len(batch["x"])
        self.log("val/infonce", loss, on_step=False, on_epoch=True, batch_size=n)
        self.log("val/pos_sim", pos_sim, on_step=False, on_epoch=True, batch_size=n)
        self.log("val/loss", loss + aux, on_step=False, on_epoch=True, batch_size=n)
