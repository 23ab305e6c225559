"""RF source localization: mel spectrogram stacks from several receivers → 2-D position with uncertainty.

The spectrogram spec is read as (receivers, mel bins, frames): receivers are the conv's input
channels, so the first layer compares power across receivers at each (mel, frame) cell, which is
where range information lives. The head predicts a mean and a log-variance per axis and trains with
Gaussian NLL, so a deployment can tell a confident fix from a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torchmetrics import MeanMetric

from neuroray.datasets.spec import SpectrogramSpec
from neuroray.errors import ConfigError
from neuroray.trainables.base import Fraction, PositiveFloat, PositiveInt, Task, TaskHparams, register

# Bounds on the predicted log-variance: exp(-10) is far below any position error we can measure and
# exp(10) far above the area; without them one outlier batch can push the NLL to inf/NaN.
LOGVAR_MIN, LOGVAR_MAX = -10.0, 10.0


def parse_target_columns(text: str) -> tuple[str, str]:
    names = tuple(c.strip() for c in text.split(","))
    if len(names) != 2 or not all(names):
        raise ConfigError(f"hparams.target_columns: {text!r} must name two columns, e.g. 'pos_x,pos_y'")
    return names[0], names[1]


def gaussian_nll(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean per-coordinate Gaussian NLL (with the 0.5·log 2π constant, so the value is a true NLL)."""
    mu, logvar = pred[:, :2], pred[:, 2:]
    return 0.5 * (logvar + (target - mu) ** 2 * torch.exp(-logvar) + math.log(2 * math.pi)).mean()


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


class ConvLocalizer(nn.Module):
    """(B, receivers, mels, frames) → (B, 4) = [mu_x, mu_y, logvar_x, logvar_y]."""

    def __init__(self, spec: SpectrogramSpec, hp: RFLocalizerHparams) -> None:
        super().__init__()
        if hp.n_blocks < 1 or hp.n_filters < 1:
            raise ConfigError(f"hparams.n_blocks and hparams.n_filters must be >= 1; "
                              f"got {hp.n_blocks}, {hp.n_filters}")
        if hp.position_scale <= 0:
            raise ConfigError(f"hparams.position_scale: must be > 0; got {hp.position_scale}")
        self.log_input = hp.log_input
        layers: list[nn.Module] = []
        c_in = spec.n_trials
        for i in range(hp.n_blocks):
            # Stride only after the first block: the 1st layer sees full resolution across receivers.
            stride = 1 if i == 0 else 2
            layers += [nn.Conv2d(c_in, hp.n_filters, kernel_size=3, stride=stride, padding=1),
                       nn.BatchNorm2d(hp.n_filters), nn.GELU()]
            c_in = hp.n_filters
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(hp.dropout), nn.Linear(hp.n_filters, hp.n_filters), nn.GELU(),
                                  nn.Linear(hp.n_filters, 4))
        self.log_scale = math.log(hp.position_scale)
        self.scale = hp.position_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.log_input:
            x = torch.log(x + 1e-6)
        out = self.head(self.body(x).mean(dim=(2, 3)))
        mu = out[:, :2] * self.scale
        # Var scales with scale², so log-variance shifts by 2·log(scale) to stay in target units.
        logvar = out[:, 2:].clamp(LOGVAR_MIN, LOGVAR_MAX) + 2.0 * self.log_scale
        return torch.cat([mu, logvar], dim=1)


@register
class RFLocalizer(Task):
    """Receiver spectrograms → 2-D source position (mean + log-variance); Gaussian NLL; monitors val/mean_dist."""

    name: ClassVar[str] = "rf_localizer"
    modality: ClassVar[str] = "spectrogram"
    monitor: ClassVar[str] = "val/mean_dist"
    logs: ClassVar[tuple[str, ...]] = ("val/mean_dist", "val/nll")  # besides train/loss and val/loss
    mode: ClassVar[str] = "min"
    Hparams: ClassVar[type[TaskHparams]] = RFLocalizerHparams
    hp: RFLocalizerHparams

    def __init__(self, spec: SpectrogramSpec, hparams: Any = None, target: str | None = None) -> None:
        super().__init__(spec, hparams, target=target)
        self.columns = parse_target_columns(self.hp.target_columns)
        self.net = ConvLocalizer(spec, self.hp)
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
