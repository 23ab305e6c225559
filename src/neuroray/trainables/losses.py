"""Losses and per-sample scores the tasks train and validate with (and export's scorers reuse)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["masked_mse", "gaussian_nll", "positive_mask", "info_nce", "patch_mask", "pearson_per_sample", "ssim3d"]


def masked_mse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MSE over the non-null (non-NaN) targets; zero (with a graph) when the batch has none."""
    keep = ~torch.isnan(y)
    return nn.functional.mse_loss(pred[keep], y[keep]) if keep.any() else pred.sum() * 0.0


def gaussian_nll(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean per-coordinate Gaussian NLL (with the 0.5·log 2π constant, so the value is a true NLL)."""
    mu, logvar = pred[:, :2], pred[:, 2:]
    return 0.5 * (logvar + (target - mu) ** 2 * torch.exp(-logvar) + math.log(2 * math.pi)).mean()


def positive_mask(stimulus: torch.Tensor | None, time_s: torch.Tensor | None, n: int) -> torch.Tensor:
    """(2n, 2n) bool: view pairs, plus cross-window pairs of the same stimulus at the same moment."""
    eye = torch.eye(n, dtype=torch.bool)
    same = torch.zeros(n, n, dtype=torch.bool)
    if stimulus is not None and time_s is not None:
        valid = (stimulus >= 0) & ~torch.isnan(time_s)
        same = (valid[:, None] & valid[None, :] & (stimulus[:, None] == stimulus[None, :])
                & ((time_s[:, None] - time_s[None, :]).abs() < 1e-3) & ~eye)
    block = eye | same
    pos = torch.cat([torch.cat([same, block], 1), torch.cat([block, same], 1)], 0)
    return pos


def info_nce(z: torch.Tensor, pos: torch.Tensor, log_temp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-positive InfoNCE over L2-normalized ``z`` (2n, d); returns (loss, mean positive cosine)."""
    z = nn.functional.normalize(z, dim=1)
    sim = z @ z.T
    logits = sim / log_temp.exp()
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, -1e9)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = pos.to(z.device)
    loss = -(log_prob * pos).sum(1) / pos.sum(1).clamp_min(1)
    return loss.mean(), sim[pos].mean()


def patch_mask(batch: int, n_chans: int, n_times: int, patch_c: int, patch_t: int, ratio: float,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, C, T) bool mask, True = hidden; whole channel×time patches are hidden together."""
    gc, gt = -(-n_chans // patch_c), -(-n_times // patch_t)
    grid = torch.rand(batch, gc, gt, generator=generator) < ratio
    return grid.repeat_interleave(patch_c, 1).repeat_interleave(patch_t, 2)[:, :n_chans, :n_times]


def pearson_per_sample(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Voxel-wise Pearson r of each sample pair; a constant volume scores 0 rather than NaN."""
    a = a.flatten(1).double()
    b = b.flatten(1).double()
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    r = (a * b).sum(1) / torch.sqrt((a * a).sum(1) * (b * b).sum(1)).clamp_min(eps)
    return r.float()


def ssim3d(pred: torch.Tensor, target: torch.Tensor, window: int = 7, sigma: float = 1.5) -> torch.Tensor:
    """3-D SSIM per sample (Gaussian window, valid positions only, data range = each target's max − min).

    Own implementation rather than torchmetrics' (which takes 5-D input) for the per-sample data range:
    volumes are standardized per shard set, so a global range would under-weight low-contrast subjects.
    """
    spatial = pred.shape[2:]
    window = min(window, *spatial)
    window -= 1 - window % 2  # odd, so the window has a centre
    coords = torch.arange(window, dtype=pred.dtype, device=pred.device) - window // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    kernel = (g[:, None, None] * g[None, :, None] * g[None, None, :])[None, None]
    data_range = (target.flatten(1).amax(1) - target.flatten(1).amin(1)).clamp_min(1e-8)
    c1 = ((0.01 * data_range) ** 2)[:, None, None, None, None]
    c2 = ((0.03 * data_range) ** 2)[:, None, None, None, None]

    def blur(v: torch.Tensor) -> torch.Tensor:
        return F.conv3d(v, kernel)

    mu_p, mu_t = blur(pred), blur(target)
    var_p = blur(pred * pred) - mu_p**2
    var_t = blur(target * target) - mu_t**2
    cov = blur(pred * target) - mu_p * mu_t
    ssim_map = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))
    return ssim_map.flatten(1).mean(1)
