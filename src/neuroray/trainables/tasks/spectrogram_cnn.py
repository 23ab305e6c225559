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
from neuroray.trainables.base import ClassCount, Fraction, NonNegativeInt, PositiveInt, TaskHparams, register
from neuroray.trainables.models.spectrogram_cnn import spectrogram_cnn_body
from neuroray.trainables.tasks.classifier import ClassifierSteps
from neuroray.trainables.trial_subset import subset_spec


@dataclass
class SpectrogramCNNHparams(TaskHparams):
    """Spectrogram CNN hparams: classes, width, dropout, label smoothing, how many leading trials to read."""

    n_classes: ClassCount = 2
    width: PositiveInt = 32
    dropout: Fraction = 0.2
    label_smoothing: Fraction = 0.0
    n_trials: NonNegativeInt = 0  # the first n trials of each stored sequence (0 = all); 1 = a single-trial 2-D CNN


@register
class SpectrogramCNN(ClassifierSteps):
    """(trials × freq × time) → class logits; cross-entropy; monitors val/auroc."""

    name: ClassVar[str] = "spectrogram_cnn"
    modality: ClassVar[str] = "spectrogram"
    Hparams: ClassVar[type[TaskHparams]] = SpectrogramCNNHparams
    hp: SpectrogramCNNHparams

    def __init__(self, spec: SpectrogramSpec, hparams: Any = None, target: str | None = "label") -> None:
        super().__init__(spec, hparams, target=target or "label")
        self.init_metrics(self.hp.n_classes)
        self.n_trials = subset_spec(spec, self.hp.n_trials).n_trials
        self.body = spectrogram_cnn_body(self.n_trials, self.hp.width, self.hp.dropout, self.hp.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, : self.n_trials]
        # Per-sample standardization: spectrogram power scales differ across sessions and animals.
        x = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / (x.std(dim=(1, 2, 3), keepdim=True) + 1e-6)
        return self.body(x)

    def _loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = batch[str(self.target)].long().reshape(-1)
        logits = self(batch["x"].float())
        return nn.functional.cross_entropy(logits, y, label_smoothing=self.hp.label_smoothing), logits, y

