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
from torch import nn
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
    Task,
    TaskHparams,
    register,
)
from neuroray.trainables.metrics import ClassificationMetrics
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


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per sample, so deep stacks train like shallow ones."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep  # rescale so the expected branch output matches eval mode


class Attention(nn.Module):
    """Plain multi-head self-attention written with matmuls: exports to ONNX op-for-op, no fused kernel."""

    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.scale = (dim // n_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = self.drop((q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1))
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block; LayerScale starts each branch small so early training stays stable."""

    def __init__(self, dim: int, n_heads: int, mlp_ratio: float, dropout: float, drop_path: float,
                 layer_scale_init: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, n_heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim),
                                 nn.Dropout(dropout))
        self.gamma1 = nn.Parameter(torch.full((dim,), layer_scale_init))
        self.gamma2 = nn.Parameter(torch.full((dim,), layer_scale_init))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.gamma1 * self.attn(self.norm1(x)))
        return x + self.drop_path(self.gamma2 * self.mlp(self.norm2(x)))


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
        if self.embed_dim % self.n_heads:
            raise ValueError(f"embed_dim: {self.embed_dim} is not divisible by n_heads={self.n_heads}; choose an "
                             "embed_dim that is a multiple of n_heads")


def _grid(spec: SpectrogramSpec, hp: TemporalViTHparams) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Token grid (trials, freqs, frames) and the zero padding each axis needs; validates the patch hparams."""
    grid: list[int] = []
    pads: list[int] = []
    for key, size, patch in (("trial_patch", spec.n_trials, hp.trial_patch),
                             ("freq_patch", spec.n_freqs, hp.freq_patch),
                             ("time_patch", spec.n_frames, hp.time_patch)):
        if patch < 1:
            raise ConfigError(f"hparams.{key}: must be >= 1; got {patch}")
        if patch > size:
            raise ConfigError(f"hparams.{key}: {patch} is larger than the axis it patches ({size}); "
                              f"choose {key} <= {size}")
        pad = -size % patch
        if pad and not hp.pad_to_patch:
            divisors = [d for d in range(1, size + 1) if size % d == 0]
            raise ConfigError(f"hparams.{key}: {patch} does not divide {size}; choose one of {divisors} "
                              f"or set hparams.pad_to_patch: true")
        grid.append((size + pad) // patch)
        pads.append(pad)
    return (grid[0], grid[1], grid[2]), (pads[0], pads[1], pads[2])


class TemporalViT(nn.Module):
    """(B, trials, freqs, frames) → (B, n_classes) logits."""

    def __init__(self, spec: SpectrogramSpec, hp: TemporalViTHparams) -> None:
        super().__init__()
        if hp.embed_dim % hp.n_heads:
            raise ConfigError(f"hparams.embed_dim: {hp.embed_dim} is not divisible by hparams.n_heads={hp.n_heads}")
        if hp.n_classes < 2:
            raise ConfigError(f"hparams.n_classes: must be >= 2; got {hp.n_classes}")
        (gt, gf, gn), (pt, pf, pn) = _grid(spec, hp)
        self.pads = (pt, pf, pn)
        self.standardize = hp.standardize_input
        d = hp.embed_dim
        patch = (hp.trial_patch, hp.freq_patch, hp.time_patch)
        self.embed = nn.Conv3d(1, d, kernel_size=patch, stride=patch)
        self.pos_trial = nn.Parameter(torch.zeros(1, gt, 1, 1, d))
        self.pos_freq = nn.Parameter(torch.zeros(1, 1, gf, 1, d))
        self.pos_time = nn.Parameter(torch.zeros(1, 1, 1, gn, d))
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        for p in (self.pos_trial, self.pos_freq, self.pos_time, self.cls):
            nn.init.trunc_normal_(p, std=0.02)
        # Stochastic depth grows linearly with depth: early blocks carry low-level features every step.
        rates = [hp.drop_path * i / max(hp.depth - 1, 1) for i in range(hp.depth)]
        self.blocks = nn.Sequential(*[Block(d, hp.n_heads, hp.mlp_ratio, hp.dropout, r, hp.layer_scale_init)
                                      for r in rates])
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, hp.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.standardize:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            std = ((x - mean) ** 2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
            x = (x - mean) / (std + 1e-5)
        pt, pf, pn = self.pads
        if pt or pf or pn:  # padding goes after the standardization, so it reads as "average power"
            x = F.pad(x, (0, pn, 0, pf, 0, pt))
        h = self.embed(x.unsqueeze(1)).permute(0, 2, 3, 4, 1)  # (B, gt, gf, gn, D)
        h = h + self.pos_trial + self.pos_freq + self.pos_time
        tokens = h.flatten(1, 3)
        tokens = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = self.norm(self.blocks(tokens))
        return self.head(tokens[:, 0])


@register
class TemporalViTClassifier(Task):
    """Spectrogram sequence → class; weighted, label-smoothed cross-entropy; monitors val/auroc."""

    name: ClassVar[str] = "temporal_vit"
    modality: ClassVar[str] = "spectrogram"
    monitor: ClassVar[str] = "val/auroc"
    logs: ClassVar[tuple[str, ...]] = ("val/auroc", "val/acc", "val/f1")  # besides train/loss and val/loss
    mode: ClassVar[str] = "max"
    Hparams: ClassVar[type[TaskHparams]] = TemporalViTHparams
    hp: TemporalViTHparams
    class_weight: torch.Tensor

    def __init__(self, spec: SpectrogramSpec, hparams: Any = None, target: str | None = "label") -> None:
        super().__init__(spec, hparams, target=target or "label")
        self.n_trials = subset_spec(spec, self.hp.n_trials).n_trials
        self.net = TemporalViT(subset_spec(spec, self.hp.n_trials), self.hp)
        if not 0.0 <= self.hp.label_smoothing < 1.0:
            raise ConfigError(f"hparams.label_smoothing: must be in [0, 1); got {self.hp.label_smoothing}")
        weights = parse_class_weights(self.hp.class_weights, self.hp.n_classes)
        # A buffer, so the weights move with the module to the training device and into checkpoints.
        self.register_buffer("class_weight", torch.tensor(weights or [1.0] * self.hp.n_classes))
        self.val_metrics = ClassificationMetrics(self.hp.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x[:, : self.n_trials])

    def _loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = batch[str(self.target)].long().reshape(-1)
        logits = self(batch["x"].float())
        loss = F.cross_entropy(logits, y, weight=self.class_weight, label_smoothing=self.hp.label_smoothing)
        return loss, logits, y

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.hp.augment:
            batch = {**batch, "x": augment_sequences(batch["x"].float()[:, : self.n_trials])}
        loss, _, y = self._loss(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, logits, y = self._loss(batch)
        self.val_metrics.update(logits, y)
        self.log("val/loss", loss, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        for name, value in self.val_metrics.compute_and_reset().items():
            self.log(f"val/{name}", value, sync_dist=False)
