"""A plain 2-D CNN baseline over spectrogram sequences: the arm a temporal ViT must beat in an ablation.

The trial axis is treated as input channels (no attention across trials, no positional structure), so
the comparison with ``temporal_vit`` isolates what modelling the trial sequence buys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from neuroray.datasets.spec import SpectrogramSpec
from neuroray.errors import ConfigError
from neuroray.trainables.base import ClassCount, Fraction, NonNegativeInt, PositiveInt, Task, TaskHparams, register
from neuroray.trainables.metrics import ClassificationMetrics
from neuroray.trainables.trial_subset import subset_spec


@dataclass
class SpectrogramCNNHparams(TaskHparams):
    n_classes: ClassCount = 2
    width: PositiveInt = 32
    dropout: Fraction = 0.2
    label_smoothing: Fraction = 0.0
    n_trials: NonNegativeInt = 0  # the first n trials of each stored sequence (0 = all); 1 = a single-trial 2-D CNN


@register
class SpectrogramCNN(Task):
    """(trials × freq × time) → class logits; cross-entropy; monitors val/auroc."""

    name: ClassVar[str] = "spectrogram_cnn"
    modality: ClassVar[str] = "spectrogram"
    monitor: ClassVar[str] = "val/auroc"
    logs: ClassVar[tuple[str, ...]] = ("val/auroc", "val/acc", "val/f1")  # besides train/loss and val/loss
    mode: ClassVar[str] = "max"
    Hparams: ClassVar[type[TaskHparams]] = SpectrogramCNNHparams
    hp: SpectrogramCNNHparams

    def __init__(self, spec: SpectrogramSpec, hparams: Any = None, target: str | None = "label") -> None:
        super().__init__(spec, hparams, target=target or "label")
        if self.hp.n_classes < 2:
            raise ConfigError(f"hparams.n_classes: {self.hp.n_classes}; a classifier needs at least 2")
        w = self.hp.width
        self.n_trials = subset_spec(spec, self.hp.n_trials).n_trials
        self.body = nn.Sequential(
            nn.Conv2d(self.n_trials, w, 3, padding=1), nn.BatchNorm2d(w), nn.GELU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.GELU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(self.hp.dropout), nn.Linear(2 * w, self.hp.n_classes),
        )
        self.val_metrics = ClassificationMetrics(self.hp.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, : self.n_trials]
        # Per-sample standardization: spectrogram power scales differ across sessions and animals.
        x = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / (x.std(dim=(1, 2, 3), keepdim=True) + 1e-6)
        return self.body(x)

    def _loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = batch[str(self.target)].long().reshape(-1)
        logits = self(batch["x"].float())
        return nn.functional.cross_entropy(logits, y, label_smoothing=self.hp.label_smoothing), logits, y

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _, y = self._loss(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, logits, y = self._loss(batch)
        self.val_metrics.update(logits, y)
        self.log("val/loss", loss, on_step=False, on_epoch=True, batch_size=len(y))

    def on_validation_epoch_end(self) -> None:
        for name, value in self.val_metrics.compute_and_reset().items():
            self.log(f"val/{name}", value)
