"""ResNet-style 3-D conv encoder/decoder with GroupNorm, FiLM conditioning in every block, and the
gradient-reversal function the nuisance adversary reads the latent through."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GradReverse", "FiLM", "ResBlock3d", "Encoder3d", "Decoder3d"]


class GradReverse(torch.autograd.Function):
    """Gradient reversal: identity forward, negated gradient backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        """The incoming gradient, negated."""
        return -grad


def _groups(channels: int) -> int:
    return math.gcd(8, channels)


class FiLM(nn.Module):
    """Per-channel scale and shift from the conditioning vector; zero-initialised so training starts unconditional."""

    def __init__(self, n_cond: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(n_cond, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gamma, shift = self.proj(cond)[:, :, None, None, None].chunk(2, dim=1)
        return h * (1.0 + gamma) + shift


class ResBlock3d(nn.Module):
    """Pre-activation residual block; FiLM sits after the second norm, where it steers the block's output."""

    def __init__(self, c_in: int, c_out: int, n_cond: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv3d(c_in, c_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.conv2 = nn.Conv3d(c_out, c_out, 3, padding=1)
        self.film = FiLM(n_cond, c_out) if n_cond > 0 else None
        self.skip: nn.Module = nn.Conv3d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.film is not None and cond is not None:
            h = self.film(h, cond)
        return self.skip(x) + self.conv2(F.silu(h))


class Encoder3d(nn.Module):
    """(B, 1, X, Y, Z) volume (+ conditioning) → latent mean and log-variance (clamped to ±10), each (B, latent_dim)."""

    def __init__(self, channels: list[int], n_cond: int, bottleneck: tuple[int, int, int], latent_dim: int) -> None:
        super().__init__()
        self.stem = nn.Conv3d(1, channels[0], 3, padding=1)
        self.blocks = nn.ModuleList(
            ResBlock3d(channels[max(i - 1, 0)], channels[i], n_cond) for i in range(len(channels)))
        self.down = nn.ModuleList(nn.Conv3d(c, c, 3, stride=2, padding=1) for c in channels)
        self.norm = nn.GroupNorm(_groups(channels[-1]), channels[-1])
        self.head = nn.Linear(channels[-1] * math.prod(bottleneck), 2 * latent_dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.stem(x)
        for block, down in zip(self.blocks, self.down, strict=True):
            h = down(block(h, cond))
        mu, logvar = self.head(F.silu(self.norm(h)).flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 10.0)  # keeps exp() finite in early, unstable steps


class Decoder3d(nn.Module):
    """(B, latent_dim) latent (+ conditioning) → (B, 1, X, Y, Z) volume on the padded grid."""

    def __init__(self, channels: list[int], n_cond: int, bottleneck: tuple[int, int, int], latent_dim: int) -> None:
        super().__init__()
        self.bottleneck = bottleneck
        self.c_top = channels[-1]
        self.fc = nn.Linear(latent_dim, channels[-1] * math.prod(bottleneck))
        rev = channels[::-1]
        # Nearest-neighbour upsampling + conv rather than transposed conv: no checkerboard artefacts.
        self.up = nn.ModuleList(nn.Conv3d(c, c, 3, padding=1) for c in rev)
        self.blocks = nn.ModuleList(ResBlock3d(rev[i], rev[min(i + 1, len(rev) - 1)], n_cond) for i in range(len(rev)))
        self.norm = nn.GroupNorm(_groups(channels[0]), channels[0])
        self.out = nn.Conv3d(channels[0], 1, 3, padding=1)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        h = self.fc(z).reshape(-1, self.c_top, *self.bottleneck)
        for up, block in zip(self.up, self.blocks, strict=True):
            h = block(up(F.interpolate(h, scale_factor=2.0, mode="nearest")), cond)
        return self.out(F.silu(self.norm(h)))
