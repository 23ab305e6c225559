"""Conditional β-VAE over brain volumes (``x``: (1, X, Y, Z), e.g. 4 mm MNI 46×55×46).

ResNet-style 3-D conv encoder/decoder with GroupNorm; study metadata (``cond_columns``) modulates every
block through FiLM; β follows a schedule or a PI controller that holds the KL at ``kl_target``; an optional
adversary reads a nuisance column from the latent mean through gradient reversal, pushing it out of the code.

``forward(x)`` (what ONNX export sees) is the deterministic reconstruction from the latent mean with the
conditioning set to zeros: conditioning columns are expected standardized, so zero is "an average study",
and the exported graph keeps the project's one-input contract (``x`` → ``y``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from neuroray.datasets.spec import VolumeSpec
from neuroray.errors import ConfigError
from neuroray.trainables.base import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Task,
    TaskHparams,
    register,
)
from neuroray.trainables.losses import pearson_per_sample, ssim3d
from neuroray.trainables.models.vae3d import Decoder3d, Encoder3d, GradReverse

BetaSchedule = Literal["constant", "linear", "cyclical"]


@dataclass
class VAE3DHparams(TaskHparams):
    """``depth`` halvings of the grid (input is zero-padded to a multiple of 2**depth, cropped back on decode).

    Loss per sample: ``recon + beta * kl / n_voxels`` with ``recon`` the voxel-mean squared error and ``kl``
    in nats summed over latent dims (so ``kl_target`` is in nats). ``beta_schedule``: ``linear`` ramps 0 → beta
    over ``beta_warmup_epochs``; ``cyclical`` ramps over ``beta_warmup_epochs``, holds as long, and repeats.
    With ``kl_target`` set, a PI controller (gains ``kl_kp``, ``kl_ki`` on the relative KL error) replaces
    the schedule, starting from ``beta``. ``cond_columns``: comma-separated numeric batch columns (NaN → 0).
    """

    latent_dim: PositiveInt = 32
    base_channels: PositiveInt = 16
    max_channels: PositiveInt = 128
    depth: PositiveInt = 3
    cond_columns: str = ""
    beta: NonNegativeFloat = 1.0
    beta_schedule: BetaSchedule = "linear"
    beta_warmup_epochs: NonNegativeInt = 10
    kl_target: PositiveFloat | None = None
    kl_kp: NonNegativeFloat = 0.1
    kl_ki: NonNegativeFloat = 0.01
    adversary_column: str = ""
    adversary_weight: NonNegativeFloat = 0.1


def scheduled_beta(schedule: BetaSchedule, beta: float, warmup_epochs: int, epoch: float) -> float:
    """β at (fractional) ``epoch``; cyclical follows Fu et al. 2019 with half of each cycle spent ramping."""
    if schedule == "constant" or warmup_epochs <= 0:
        return beta
    if schedule == "linear":
        return beta * min(1.0, epoch / warmup_epochs)
    phase = epoch % (2 * warmup_epochs)
    return beta * min(1.0, phase / warmup_epochs)


class KLController(nn.Module):
    """PI control of β toward a KL target (after ControlVAE); state lives in buffers so checkpoints resume it."""

    beta: torch.Tensor
    integral: torch.Tensor

    def __init__(self, beta0: float, target: float, kp: float, ki: float) -> None:
        super().__init__()
        self.beta0, self.target, self.kp, self.ki = beta0, target, kp, ki
        self.register_buffer("beta", torch.tensor(float(beta0)))
        self.register_buffer("integral", torch.tensor(0.0))

    @torch.no_grad()
    def update(self, kl: torch.Tensor) -> torch.Tensor:
        # Relative error makes the gains independent of the latent size and of the KL's scale in nats.
        error = (kl.detach().float().to(self.beta.device) - self.target) / max(abs(self.target), 1e-8)
        integral = self.integral + error
        beta = self.beta0 + self.kp * error + self.ki * integral
        # Anti-windup: stop integrating while clamped at 0, so β recovers as soon as the KL rises again.
        self.integral.copy_(torch.where(beta < 0, self.integral, integral))
        self.beta.copy_(beta.clamp_min(0.0))
        return self.beta.clone()


@register
class VAE3D(Task):
    """Volume → latent → volume; monitors val/pearson_r (voxel-wise, per sample, averaged)."""

    name: ClassVar[str] = "vae3d"
    modality: ClassVar[str] = "volume"
    monitor: ClassVar[str] = "val/pearson_r"
    logs: ClassVar[tuple[str, ...]] = (  # besides train/loss and val/loss
        "train/recon", "train/kl", "train/beta", "val/recon", "val/kl", "val/pearson_r", "val/ssim")
    mode: ClassVar[str] = "max"
    output: ClassVar[str] = "reconstruction of the input volume from the latent mean (no conditioning)"
    scorer: ClassVar[str] = "volume_reconstruction"
    Hparams: ClassVar[type[TaskHparams]] = VAE3DHparams
    hp: VAE3DHparams
    spec: VolumeSpec

    def __init__(self, spec: VolumeSpec, hparams: Any = None, target: str | None = None) -> None:
        super().__init__(spec, hparams, target=target)
        hp = self.hp
        for field_name in ("latent_dim", "base_channels", "max_channels", "depth"):
            if getattr(hp, field_name) < 1:
                raise ConfigError(f"hparams.{field_name}: must be >= 1, got {getattr(hp, field_name)}")
        if hp.beta < 0 or hp.adversary_weight < 0 or (hp.kl_target is not None and hp.kl_target <= 0):
            raise ConfigError("hparams.beta and hparams.adversary_weight must be >= 0, hparams.kl_target > 0")
        self.cond_names = [c.strip() for c in hp.cond_columns.split(",") if c.strip()]
        n_cond = len(self.cond_names)
        factor = 2**hp.depth
        self.padded = tuple(math.ceil(s / factor) * factor for s in spec.shape)
        bottleneck = (self.padded[0] // factor, self.padded[1] // factor, self.padded[2] // factor)
        channels = [min(hp.base_channels * 2**i, hp.max_channels) for i in range(hp.depth)]
        self.encoder = Encoder3d(channels, n_cond, bottleneck, hp.latent_dim)
        self.decoder = Decoder3d(channels, n_cond, bottleneck, hp.latent_dim)
        self.adversary = (nn.Sequential(nn.Linear(hp.latent_dim, 32), nn.SiLU(), nn.Linear(32, 1))
                          if hp.adversary_column else None)
        self.controller = (KLController(hp.beta, float(hp.kl_target), hp.kl_kp, hp.kl_ki)
                           if hp.kl_target is not None else None)
        self.val_r = MeanMetric()
        self.val_ssim = MeanMetric()

    def example_input(self, batch_size: int = 2) -> torch.Tensor:
        """A zero input (batch_size, 1, X, Y, Z) for export and smoke tests."""
        # VolumeSpec.shape is the grid only; samples carry a leading channel axis.
        return torch.zeros(batch_size, 1, *self.spec.shape)

    # --- model ---------------------------------------------------------------------------------------------

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        px, py, pz = (p - s for p, s in zip(self.padded, self.spec.shape, strict=True))
        return F.pad(x, (0, pz, 0, py, 0, px)) if px or py or pz else x

    def _crop(self, x: torch.Tensor) -> torch.Tensor:
        sx, sy, sz = self.spec.shape
        return x[:, :, :sx, :sy, :sz]

    def encode(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (padded to the network's grid) and ``cond`` (zeros if needed but omitted) → latent mean, log-var."""
        return self.encoder(self._pad(x), self._cond_or_zeros(cond, x))

    def decode(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Latent ``z`` and ``cond`` (zeros if needed but omitted) → volume cropped back to the spec's grid."""
        return self._crop(self.decoder(z, self._cond_or_zeros(cond, z)))

    def _cond_or_zeros(self, cond: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
        if not self.cond_names:
            return None
        return cond if cond is not None else like.new_zeros(like.shape[0], len(self.cond_names))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu, _ = self.encode(x)
        return self.decode(mu)

    # --- training ------------------------------------------------------------------------------------------

    def _column(self, batch: dict[str, torch.Tensor], name: str) -> torch.Tensor:
        if name not in batch:
            raise ConfigError(f"vae3d: batch has no column {name!r} (named in hparams); columns: {sorted(batch)}")
        return torch.as_tensor(batch[name], device=self.device).float().reshape(-1)

    def _cond(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        if not self.cond_names:
            return None
        cols = torch.stack([self._column(batch, c) for c in self.cond_names], dim=1)
        return torch.nan_to_num(cols, nan=0.0)

    def current_beta(self, batch_idx: int = 0) -> float:
        """The KL weight now: the controller's β, else the schedule's at the current (fractional) epoch."""
        if self.controller is not None:
            return float(self.controller.beta)
        trainer = getattr(self, "_trainer", None)  # absent when stepped by hand (tests, notebooks)
        n = getattr(trainer, "num_training_batches", 0) if trainer is not None else 0
        frac = batch_idx / n if isinstance(n, int) and n > 0 else 0.0
        return scheduled_beta(self.hp.beta_schedule, self.hp.beta, self.hp.beta_warmup_epochs,
                              self.current_epoch + frac)

    def _step(self, batch: dict[str, torch.Tensor], sample: bool) -> dict[str, torch.Tensor]:
        x = batch["x"].float()
        cond = self._cond(batch)
        mu, logvar = self.encode(x, cond)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        recon = self.decode(z, cond)
        rec = F.mse_loss(recon, x)
        kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(dim=1)).mean()
        out = {"recon_x": recon, "mu": mu, "recon": rec, "kl": kl}
        if self.adversary is not None:
            out["adv"] = self._adversary_loss(self.adversary, mu, batch)
        return out

    def _adversary_loss(self, head: nn.Module, mu: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        y = self._column(batch, self.hp.adversary_column)
        pred = head(GradReverse.apply(mu)).reshape(-1)
        keep = ~torch.isnan(y)
        if int(keep.sum()) < 2:  # batch standardization below needs two values
            return pred.sum() * 0.0
        # Batch-standardized target: a nuisance such as scan year is on an arbitrary scale, and only its
        # variation within the data can leak into the code.
        y_k = y[keep]
        y_k = (y_k - y_k.mean()) / y_k.std().clamp_min(1e-6)
        return F.mse_loss(pred[keep], y_k)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self._step(batch, sample=True)
        beta = self.current_beta(batch_idx)
        n_vox = math.prod(self.spec.shape)
        loss = out["recon"] + beta * out["kl"] / n_vox
        if "adv" in out:
            # The head learns to predict the nuisance; through gradient reversal the encoder learns to hide it.
            loss = loss + self.hp.adversary_weight * out["adv"]
            self.log("train/adv", out["adv"], on_step=False, on_epoch=True, batch_size=len(batch["x"]))
        if self.controller is not None:
            self.controller.update(out["kl"])
        bs = len(batch["x"])
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=bs)
        self.log("train/recon", out["recon"], on_step=False, on_epoch=True, batch_size=bs)
        self.log("train/kl", out["kl"], on_step=False, on_epoch=True, batch_size=bs)
        self.log("train/beta", beta, on_step=False, on_epoch=True, batch_size=bs)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        out = self._step(batch, sample=False)
        x = batch["x"].float()
        loss = out["recon"] + self.current_beta() * out["kl"] / math.prod(self.spec.shape)
        self.val_r.update(pearson_per_sample(out["recon_x"], x))
        self.val_ssim.update(ssim3d(out["recon_x"], x))
        bs = len(x)
        self.log("val/loss", loss, on_step=False, on_epoch=True, batch_size=bs, sync_dist=True)
        self.log("val/recon", out["recon"], on_step=False, on_epoch=True, batch_size=bs, sync_dist=True)
        self.log("val/kl", out["kl"], on_step=False, on_epoch=True, batch_size=bs, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self.log("val/pearson_r", self.val_r.compute(), sync_dist=False)
        self.log("val/ssim", self.val_ssim.compute(), sync_dist=False)
        self.val_r.reset()
        self.val_ssim.reset()
