"""RF source localization: mel spectrogram stacks from several receivers → 2-D position with uncertainty.

The spectrogram spec is read as (receivers, mel bins, frames): receivers are the conv's input
channels, so the first layer compares power across receivers at each (mel, frame) cell, which is
where range information lives. The head predicts a mean and a log-variance per axis and trains with
Gaussian NLL, so a deployment can tell a confident fix from a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torchmetrics import MeanMetric

from neuroray.datasets.spec import SpectrogramSpec
from neuroray.errors import ConfigError
from neuroray.trainables.base import Fraction, PositiveFloat, PositiveInt, Task, TaskHparams, register
from neuroray.trainables.losses import gaussian_nll
from neuroray.trainables.models.localizer import ConvLocalizer


def parse_target_columns(text: str) -> tuple[str, str]:
    """``"pos_x,pos_y"`` → the two column names; ConfigError unless exactly two non-empty names."""
    names = tuple(c.strip() for c in text.split(","))
    if len(names) != 2 or not all(names):
        raise ConfigError(f"hparams.target_columns: {text!r} must name two columns, e.g. 'pos_x,pos_y'")
    return names[0], names[1]


@dataclass
class RFLocalizerHparams(TaskHparams):
    """``position_scale`` is the target unit per network unit (e.g. 10 for a 10 m room): the net works
    near unit scale and outputs are in target units, so positions need no normalization upstream.

    ``log_input`` applies log(x + 1e-6) first, for stacks stored as linear power rather than dB.
    """

    target_columns: str = "pos_x,pos_y"
    n_filters: PositiveInt = 32
    n_blocks: PositiveInt = 3
    dropout: Fraction = 0.1
    position_scale: PositiveFloat = 1.0
    log_input: bool = False


@register
class RFLocalizer(Task):
    """Receiver spectrograms → 2-D source position (mean + log-variance); Gaussian NLL; monitors val/mean_dist."""

    name: ClassVar[str] = "rf_localizer"
    modality: ClassVar[str] = "spectrogram"
    monitor: ClassVar[str] = "val/mean_dist"
    logs: ClassVar[tuple[str, ...]] = ("val/mean_dist", "val/nll")  # besides train/loss and val/loss
    mode: ClassVar[str] = "min"
    output: ClassVar[str] = "source position mean (2) and log-variance (2), in target units"
    scorer: ClassVar[str] = "localization"
    Hparams: ClassVar[type[TaskHparams]] = RFLocalizerHparams
    hp: RFLocalizerHparams

    def __init__(self, spec: SpectrogramSpec, hparams: Any = None, target: str | None = None) -> None:
        super().__init__(spec, hparams, target=target)
        self.columns = parse_target_columns(self.hp.target_columns)
        hp = self.hp
        self.net = ConvLocalizer(spec.n_trials, hp.n_blocks, hp.n_filters, hp.dropout, hp.position_scale, hp.log_input)
        self.val_dist = MeanMetric()
        self.val_nll = MeanMetric()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _targets(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        missing = [c for c in self.columns if c not in batch]
        if missing:
            raise ConfigError(f"hparams.target_columns: batch has no column(s) {missing}; "
                              f"it has {sorted(batch)}")
        return torch.stack([batch[c].float().reshape(-1) for c in self.columns], dim=1)

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = self._targets(batch)
        pred = self(batch["x"].float())
        # Rows without a known position (NaN) are dropped: one NaN target would make the whole batch loss NaN.
        keep = ~torch.isnan(y).any(dim=1)
        pred, y = pred[keep], y[keep]
        loss = gaussian_nll(pred, y) if len(y) else pred.sum() * 0.0
        return loss, pred, y

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _, y = self._step(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=max(len(y), 1))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, pred, y = self._step(batch)
        if len(y):
            self.val_dist.update(torch.linalg.vector_norm(pred[:, :2] - y, dim=1))
            self.val_nll.update(loss, weight=len(y))
        self.log("val/loss", loss, on_step=False, on_epoch=True, batch_size=max(len(y), 1), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self.log("val/mean_dist", self.val_dist.compute(), sync_dist=False)
        self.log("val/nll", self.val_nll.compute(), sync_dist=False)
        self.val_dist.reset()
        self.val_nll.reset()
