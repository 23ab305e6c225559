"""EEG regression on fixed windows (response time, externalizing, band-power targets).

Every encoder maps a window to ``n_filters`` features that a linear head reads: two small encoders of our
own (``shallow``, ``conv``) and braindecode's zoo (``eegnex``, ``eegnet``, ...; the model is braindecode's,
built with ``n_outputs = n_filters``). The same encoder, under the same module name ``encoder``, is used
by the self-supervised tasks (``pretrain.py``, ``contrastive.py``), so a phase that starts ``from`` one of
them carries every encoder tensor over. Optional: an auxiliary regression head (e.g. p_factor, weight 0.15)
that ignores null targets, ``freeze_epochs`` that keep the carried-over encoder fixed at first, and ``crop_s``:
the encoder takes crops of that length (a random crop per window and step in training, the centred crop in
evaluation and export), the EEG2025 challenge-2 recipe of 2 s out of 4 s windows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
from torch import nn
from torchmetrics import PearsonCorrCoef

from neuroray.datasets.spec import EEGWindowSpec
from neuroray.errors import ConfigError
from neuroray.trainables.base import (
    ClassCount,
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    Task,
    TaskHparams,
    register,
)
from neuroray.trainables.losses import masked_mse
from neuroray.trainables.metrics import NRMSE
from neuroray.trainables.models.eeg_encoders import EncoderName, build_encoder
from neuroray.trainables.models.pretrained import load_encoder_weights
from neuroray.trainables.tasks.classifier import ClassifierSteps


@dataclass
class EEGEncoderHparams(TaskHparams):
    """Shared by every EEG task. ``n_filters`` is the feature width the heads read (braindecode models are
    built with ``n_outputs = n_filters``); ``dropout`` is every encoder's dropout (braindecode's ``drop_prob``).
    ``aux_target``: a numeric column regressed from the features with weight ``aux_weight`` ('' = none).
    ``encoder_weights``: a local state dict the encoder starts from (pretrained weights; '' = none).
    ``crop_s``: seconds of each window the encoder sees (0 = the whole window)."""

    encoder: EncoderName = "shallow"
    n_filters: PositiveInt = 16
    dropout: Fraction = 0.1
    aux_target: str = ""
    aux_weight: NonNegativeFloat = 0.15
    freeze_epochs: NonNegativeInt = 0
    encoder_weights: str = ""
    crop_s: NonNegativeFloat = 0.0


def crop_samples(spec: EEGWindowSpec, crop_s: float) -> int:
    """Samples in a ``crop_s`` crop of ``spec``'s windows (0 = no crop); ConfigError if it does not fit."""
    if crop_s <= 0:
        return 0
    n = round(crop_s * spec.sfreq)
    if not 1 <= n <= spec.n_times:
        raise ConfigError(f"hparams.crop_s: {crop_s:g} s is {n} samples at {spec.sfreq:g} Hz; the windows have "
                          f"{spec.n_times} ({spec.n_times / spec.sfreq:g} s); allowed: 0 (no crop) up to "
                          f"{spec.n_times / spec.sfreq:g}")
    return n


class EEGTask(Task):
    """An EEG encoder plus an optional auxiliary head; freezes the encoder for ``freeze_epochs``; crops windows
    to ``crop_s`` before the encoder."""

    hp: EEGEncoderHparams

    input_spec: EEGWindowSpec

    def __init__(self, spec: EEGWindowSpec, hparams: Any = None, target: str | list[str] | None = None) -> None:
        super().__init__(spec, hparams, target=target)
        self.crop_n = crop_samples(spec, self.hp.crop_s)
        self.input_spec = replace(spec, n_times=self.crop_n) if self.crop_n else spec
        self.encoder = build_encoder(self.hp.encoder, self.input_spec, self.hp.n_filters, self.hp.dropout)
        self.encoder_load = (load_encoder_weights(self.encoder, self.hp.encoder_weights)
                             if self.hp.encoder_weights else None)
        self.aux_head = nn.Linear(self.hp.n_filters, 1) if self.hp.aux_target else None

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, T) cut to ``crop_s``: a fresh random crop per window in training, else the centred one.

        Windows already of the crop's length pass unchanged (the challenge scorer feeds 2 s)."""
        n = self.crop_n
        if not n or x.shape[-1] == n:
            return x
        if not self.training:
            start = (x.shape[-1] - n) // 2
            return x[..., start:start + n]
        starts = torch.randint(0, x.shape[-1] - n + 1, (x.shape[0],), device=x.device)
        index = (starts[:, None] + torch.arange(n, device=x.device)[None, :])[:, None, :].expand(-1, x.shape[1], -1)
        return x.gather(-1, index)

    def aux_loss(self, features: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Weighted masked MSE of the auxiliary head on ``aux_target``; zero (with a graph) without an aux head."""
        if self.aux_head is None:
            return features.sum() * 0.0
        if self.hp.aux_target not in batch:
            raise KeyError(f"aux_target {self.hp.aux_target!r} is not a numeric column of the batch; "
                           f"columns: {', '.join(batch)}")
        return self.hp.aux_weight * masked_mse(self.aux_head(features).squeeze(-1), batch[self.hp.aux_target].float())

    def encoder_frozen(self) -> bool:
        """Whether the encoder is still frozen this epoch (before ``freeze_epochs``)."""
        return self.current_epoch < self.hp.freeze_epochs

    def on_train_epoch_start(self) -> None:
        frozen = self.encoder_frozen()
        for p in self.encoder.parameters():
            p.requires_grad_(not frozen)
        if frozen:  # BatchNorm statistics stay those of the phase the encoder came from
            self.encoder.eval()


@dataclass
class EEGRegressorHparams(EEGEncoderHparams):
    """Hyper-parameters of ``eeg_regressor``: the shared encoder ones."""
    pass


@register
class EEGRegressor(EEGTask):
    """Window → scalar target, or one head per target (``targets``); MSE that ignores null (NaN) targets;
    monitors val/nrmse.

    With several targets each is standardized with its own train stats, nulls are masked per target, and
    the loss is the mean of the per-target losses; ``val/nrmse/<t>`` and ``val/r/<t>`` are logged per target
    and ``val/nrmse`` / ``val/r`` are their means. ``forward`` then returns (batch, n_targets).
    """

    name: ClassVar[str] = "eeg_regressor"
    modality: ClassVar[str] = "eeg"
    monitor: ClassVar[str] = "val/nrmse"
    logs: ClassVar[tuple[str, ...]] = ("val/nrmse", "val/r")  # besides train/loss and val/loss
    per_target: ClassVar[tuple[str, ...]] = ("val/nrmse", "val/r")  # also logged as <name>/<target>
    mode: ClassVar[str] = "min"
    output: ClassVar[str] = ("the target(s) in raw units (the network's standardization is undone inside the "
                             "graph); several targets: one column each, in the order named")
    scorer: ClassVar[str] = "regression"
    multi_target: ClassVar[bool] = True
    Hparams: ClassVar[type[TaskHparams]] = EEGRegressorHparams
    hp: EEGRegressorHparams
    target_mean: torch.Tensor
    target_std: torch.Tensor

    def __init__(self, spec: EEGWindowSpec, hparams: Any = None, target: str | list[str] | None = "y") -> None:
        names = [str(t) for t in target] if isinstance(target, list | tuple) else [target or "y"]
        super().__init__(spec, hparams, target=names if len(names) > 1 else names[0])
        self.targets = names
        k = len(names)
        self.head = nn.Linear(self.hp.n_filters, k)
        self.val_nrmse: list[NRMSE] = nn.ModuleList(NRMSE() for _ in names)  # type: ignore[assignment]
        self.val_r: list[PearsonCorrCoef] = nn.ModuleList(PearsonCorrCoef() for _ in names)  # type: ignore[assignment]
        # The network works on standardized targets (train-split stats from the shard set's manifest), so
        # a raw-unit target such as response time in seconds needs no special init; outputs are in raw units.
        # One target keeps scalar buffers (the shape of every checkpoint written before multi-target heads).
        shape = (k,) if k > 1 else ()
        self.register_buffer("target_mean", torch.zeros(shape))
        self.register_buffer("target_std", torch.ones(shape))

    def set_target_stats(self, mean: float | list[float], std: float | list[float]) -> None:
        """Store the train-split mean/std (one per target) the output is de-standardized with (std <= 0 → 1)."""
        m = torch.as_tensor(mean, dtype=torch.float32).reshape(self.target_mean.shape)
        s = torch.as_tensor(std, dtype=torch.float32).reshape(self.target_std.shape)
        self.target_mean.copy_(m)
        self.target_std.copy_(torch.where(s > 0, s, torch.ones_like(s)))

    def _head(self, features: torch.Tensor) -> torch.Tensor:
        out = self.head(features)
        out = out.squeeze(-1) if len(self.targets) == 1 else out  # (batch,): no len(), which pins batch in export
        return out * self.target_std + self.target_mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._head(self.encoder(self.crop(x)))

    def _y(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ys = [batch[t].float() for t in self.targets]
        return ys[0] if len(ys) == 1 else torch.stack(ys, 1)

    def _loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = self._y(batch)
        features = self.encoder(self.crop(batch["x"].float()))
        pred = self._head(features)
        z_pred, z_y = pred / self.target_std, y / self.target_std
        if len(self.targets) == 1:
            loss = masked_mse(z_pred, z_y)
        else:  # each target's own mask and mean: a sparse target is not outweighed by a dense one
            loss = torch.stack([masked_mse(z_pred[:, i], z_y[:, i]) for i in range(len(self.targets))]).mean()
        return loss + self.aux_loss(features, batch), pred, y

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _, y = self._loss(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, pred, y = self._loss(batch)
        pred, y = pred.reshape(len(y), -1), y.reshape(len(y), -1)
        for i in range(len(self.targets)):
            keep = ~torch.isnan(y[:, i])
            self.val_nrmse[i].update(pred[:, i], y[:, i])
            self.val_r[i].update(pred[keep, i], y[keep, i])
        self.log("val/loss", loss, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        nrmse = [m.compute() for m in self.val_nrmse]
        r = [m.compute() for m in self.val_r]
        if len(self.targets) > 1:
            for name, a, b in zip(self.targets, nrmse, r, strict=True):
                self.log(f"val/nrmse/{name}", a, sync_dist=False)
                self.log(f"val/r/{name}", b, sync_dist=False)
        self.log("val/nrmse", torch.stack(nrmse).double().mean(), sync_dist=False)
        self.log("val/r", torch.stack(r).double().mean(), sync_dist=False)
        for m in (*self.val_nrmse, *self.val_r):
            m.reset()


@dataclass
class EEGClassifierHparams(EEGEncoderHparams):
    """Hyper-parameters of ``eeg_classifier``: the encoder ones plus class count and label smoothing."""

    n_classes: ClassCount = 2
    label_smoothing: Fraction = 0.0


@register
class EEGClassifier(ClassifierSteps, EEGTask):
    """Window → class (e.g. ``correct`` of a CCD trial); cross-entropy ignoring null labels; monitors val/auroc.

    Labels are integer class ids (a bool column counts as 0/1); ``forward`` returns class logits.
    """

    name: ClassVar[str] = "eeg_classifier"
    modality: ClassVar[str] = "eeg"
    Hparams: ClassVar[type[TaskHparams]] = EEGClassifierHparams
    hp: EEGClassifierHparams

    def __init__(self, spec: EEGWindowSpec, hparams: Any = None, target: str | None = "label") -> None:
        super().__init__(spec, hparams, target=target or "label")
        self.init_metrics(self.hp.n_classes)
        self.head = nn.Linear(self.hp.n_filters, self.hp.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.crop(x)))

    def _loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = batch[str(self.target)].float()
        features = self.encoder(self.crop(batch["x"].float()))
        logits = self.head(features)
        keep = ~torch.isnan(y)
        labels = y[keep].long()
        ce = (nn.functional.cross_entropy(logits[keep], labels, label_smoothing=self.hp.label_smoothing)
              if keep.any() else logits.sum() * 0.0)
        return ce + self.aux_loss(features, batch), logits[keep], labels

