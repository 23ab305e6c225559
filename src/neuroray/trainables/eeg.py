"""EEG regression on fixed windows (response time, externalizing, band-power targets).

Two small encoders of our own (``shallow``, ``conv``: features → linear head) and braindecode's zoo
(``eegnex``, ``eegnet``, ...: each model ends in its own head, so its output is the prediction), chosen
by the same ``encoder`` hyper-parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torchmetrics import PearsonCorrCoef

from neuroray.datasets.spec import EEGWindowSpec
from neuroray.trainables import braindecode_encoders
from neuroray.trainables.base import Task, TaskHparams, register
from neuroray.trainables.metrics import NRMSE


class ShallowEncoder(nn.Module):
    """Temporal filter → spatial filter → square → mean pool → log: a learnable band-power extractor."""

    def __init__(self, n_chans: int, n_times: int, n_filters: int, dropout: float) -> None:
        super().__init__()
        k = max(3, min(25, n_times // 4))
        self.temporal = nn.Conv1d(n_chans, n_filters, kernel_size=k, bias=False)
        self.spatial = nn.Conv1d(n_filters, n_filters, kernel_size=1)
        self.bn = nn.BatchNorm1d(n_filters)
        self.dropout = nn.Dropout(dropout)
        self.out_features = n_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn(self.spatial(self.temporal(x)))
        power = (h * h).mean(dim=-1)
        return self.dropout(torch.log(power + 1e-6))


class ConvEncoder(nn.Module):
    """Three strided conv blocks + global average pooling."""

    def __init__(self, n_chans: int, n_times: int, n_filters: int, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = n_chans
        for _ in range(3):
            layers += [nn.Conv1d(c_in, n_filters, kernel_size=7, stride=2, padding=3),
                       nn.BatchNorm1d(n_filters), nn.ELU()]
            c_in = n_filters
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.out_features = n_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.body(x).mean(dim=-1))


ENCODERS: dict[str, type[nn.Module]] = {"shallow": ShallowEncoder, "conv": ConvEncoder}
# Every name here is a key of ENCODERS or of braindecode_encoders.MODELS (a test checks both ways).
EncoderName = Literal["shallow", "conv", "eegnex", "eegnet", "shallowfbcsp", "deep4", "signaljepa_prelocal", "labram"]


@dataclass
class EEGRegressorHparams(TaskHparams):
    """``n_filters`` sizes the shallow/conv encoders only; braindecode models keep their published widths.

    ``dropout`` is every encoder's dropout (braindecode's ``drop_prob``).
    """

    encoder: EncoderName = "shallow"
    n_filters: int = 16
    dropout: float = 0.1


@register
class EEGRegressor(Task):
    """Window → scalar target; MSE loss that ignores null (NaN) targets; monitors val/nrmse."""

    name: ClassVar[str] = "eeg_regressor"
    modality: ClassVar[str] = "eeg"
    monitor: ClassVar[str] = "val/nrmse"
    mode: ClassVar[str] = "min"
    Hparams: ClassVar[type[TaskHparams]] = EEGRegressorHparams
    hp: EEGRegressorHparams

    def __init__(self, spec: EEGWindowSpec, hparams: Any = None, target: str | None = "y") -> None:
        super().__init__(spec, hparams, target=target or "y")
        self.encoder: nn.Module
        self.head: nn.Module
        if self.hp.encoder in ENCODERS:
            self.encoder = ENCODERS[self.hp.encoder](spec.n_chans, spec.n_times, self.hp.n_filters, self.hp.dropout)
            self.head = nn.Linear(self.hp.n_filters, 1)
        else:  # a braindecode model: its own head already gives one output per window
            self.encoder = braindecode_encoders.build(self.hp.encoder, spec, n_outputs=1, drop_prob=self.hp.dropout)
            self.head = nn.Identity()
        self.val_nrmse = NRMSE()
        self.val_r = PearsonCorrCoef()
        # The network works on a standardized target (train-split stats from the shard set's manifest), so
        # a raw-unit target such as response time in seconds needs no special init; outputs are in raw units.
        self.register_buffer("target_mean", torch.tensor(0.0))
        self.register_buffer("target_std", torch.tensor(1.0))

    def set_target_stats(self, mean: float, std: float) -> None:
        self.target_mean.fill_(float(mean))
        self.target_std.fill_(float(std) if std > 0 else 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x)).reshape(x.shape[0]) * self.target_std + self.target_mean

    def _loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = batch[str(self.target)].float()
        pred = self(batch["x"].float())
        keep = ~torch.isnan(y)
        scale = self.target_std
        loss = nn.functional.mse_loss(pred[keep] / scale, y[keep] / scale) if keep.any() else pred.sum() * 0.0
        return loss, pred, y

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _, y = self._loss(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, pred, y = self._loss(batch)
        self.val_nrmse.update(pred, y)
        keep = ~torch.isnan(y)
        self.val_r.update(pred[keep], y[keep])
        self.log("val/loss", loss, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self.log("val/nrmse", self.val_nrmse.compute(), sync_dist=False)
        self.log("val/r", self.val_r.compute(), sync_dist=False)
        self.val_nrmse.reset()
        self.val_r.reset()
