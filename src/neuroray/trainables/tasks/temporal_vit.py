"""Temporal 3-D ViT: classify a whole sequence of spectrograms (trials x freq x time) at once.

Built for multi-trial LFP classification such as genotype (wild-type vs knock-out), where one trial
is weak evidence and the decision should pool many. Tubelets of (trial, freq, time) become tokens;
positions are factorized into separate trial, frequency and time embeddings (summed), so the model
can learn "gamma band" once instead of once per (trial, frame) cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.nn import functional as F

from neuroray.datasets.spec import SpectrogramSpec
from neuroray.errors import ConfigError
from neuroray.trainables.base import (
    ClassCount,
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    TaskHparams,
    register,
)
from neuroray.trainables.models.vit import TemporalViT, attention_rollout
from neuroray.trainables.tasks.classifier import ClassifierSteps
from neuroray.trainables.trial_subset import augment_sequences, subset_spec


def parse_class_weights(text: str, n_classes: int) -> list[float] | None:
    """``"1,2.5"`` → ``[1.0, 2.5]``; ``""`` → None (unweighted). Errors name the hparam."""
    if not text.strip():
        return None
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise ConfigError(f"hparams.class_weights: {text!r} is not comma-separated numbers, "
                          f"e.g. '1.0,3.0' (one per class); leave it empty for unweighted") from None
    if len(weights) != n_classes:
        raise ConfigError(f"hparams.class_weights: {len(weights)} weights given for n_classes={n_classes}; "
                          f"give one weight per class")
    if any(not w > 0 for w in weights):
        raise ConfigError(f"hparams.class_weights: every weight must be > 0; got {text!r}")
    return weights


@dataclass
class TemporalViTHparams(TaskHparams):
    """Patch sizes are in (trials, frequency bins, frames); each must divide its axis unless ``pad_to_patch``.

    ``class_weights``: comma-separated, one per class (e.g. ``"1,3"``), empty for unweighted.
    ``standardize_input`` z-scores each sequence on its own, which removes recording-level gain
    (an additive offset in log power) that otherwise separates sessions more than classes.
    """

    n_classes: ClassCount = 2
    embed_dim: PositiveInt = 64
    depth: PositiveInt = 4
    n_heads: PositiveInt = 4
    mlp_ratio: PositiveFloat = 2.0
    trial_patch: PositiveInt = 1
    freq_patch: PositiveInt = 4
    time_patch: PositiveInt = 4
    pad_to_patch: bool = False
    dropout: Fraction = 0.0
    drop_path: Fraction = 0.1
    layer_scale_init: NonNegativeFloat = 0.1
    label_smoothing: Fraction = 0.0
    class_weights: str = ""
    standardize_input: bool = True
    n_trials: NonNegativeInt = 0  # read the first n trials of each stored sequence (0 = all)
    augment: bool = False  # train-time trial-order shuffle + time masking

    def check(self) -> None:
        """Refuse an ``embed_dim`` that ``n_heads`` does not divide."""
        if self.embed_dim % self.n_heads:
            raise ValueError(f"embed_dim: {self.embed_dim} is not divisible by n_heads={self.n_heads}; choose an "
                             "embed_dim that is a multiple of n_heads")


@register
class TemporalViTClassifier(ClassifierSteps):
    """Spectrogram sequence → class; weighted, label-smoothed cross-entropy; monitors val/auroc."""

    name: ClassVar[str] = "temporal_vit"
    modality: ClassVar[str] = "spectrogram"
    Hparams: ClassVar[type[TaskHparams]] = TemporalViTHparams
    hp: TemporalViTHparams
    class_weight: torch.Tensor

    def __init__(self, spec: SpectrogramSpec, hparams: Any = None, target: str | None = "label") -> None:
        super().__init__(spec, hparams, target=target or "label")
        self.init_metrics(self.hp.n_classes)
        self.n_trials = subset_spec(spec, self.hp.n_trials).n_trials
        self.net = TemporalViT(subset_spec(spec, self.hp.n_trials), self.hp)
        if not 0.0 <= self.hp.label_smoothing < 1.0:
            raise ConfigError(f"hparams.label_smoothing: must be in [0, 1); got {self.hp.label_smoothing}")
        weights = parse_class_weights(self.hp.class_weights, self.hp.n_classes)
        # A buffer, so the weights move with the module to the training device and into checkpoints.
        self.register_buffer("class_weight", torch.tensor(weights or [1.0] * self.hp.n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x[:, : self.n_trials])

    def attention_rollout(self, x: torch.Tensor) -> torch.Tensor:
        """(B, trial tokens, freq tokens, time tokens): each sequence's attention rollout to the class token."""
        return attention_rollout(self.net, x[:, : self.n_trials].float())

    def _loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = batch[str(self.target)].long().reshape(-1)
        logits = self(batch["x"].float())
        loss = F.cross_entropy(logits, y, weight=self.class_weight, label_smoothing=self.hp.label_smoothing)
        return loss, logits, y

    def train_batch(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """With ``augment``: the batch with its first ``n_trials`` trials shuffled and time-masked; else as is."""
        if self.hp.augment:
            return {**batch, "x": augment_sequences(batch["x"].float()[:, : self.n_trials])}
        return batch
