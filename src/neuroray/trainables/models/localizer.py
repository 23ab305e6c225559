"""RF localization network: mel stacks of several receivers → 2-D position mean and log-variance.

Receivers are the conv's input channels, so the first layer compares power across receivers at each
(mel, frame) cell, which is where range information lives.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["LOGVAR_MIN", "LOGVAR_MAX", "ConvLocalizer"]

# Bounds on the predicted log-variance: exp(-10) is far below any position error we can measure and
# exp(10) far above the area; without them one outlier batch can push the NLL to inf/NaN.
LOGVAR_MIN, LOGVAR_MAX = -10.0, 10.0


class ConvLocalizer(nn.Module):
    """(B, receivers, mels, frames) → (B, 4) = [mu_x, mu_y, logvar_x, logvar_y]."""

    def __init__(self, n_receivers: int, n_blocks: int, n_filters: int, dropout: float, position_scale: float,
                 log_input: bool) -> None:
        super().__init__()
        self.log_input = log_input
        layers: list[nn.Module] = []
        c_in = n_receivers
        for i in range(n_blocks):
            # Stride only after the first block: the 1st layer sees full resolution across receivers.
            stride = 1 if i == 0 else 2
            layers += [nn.Conv2d(c_in, n_filters, kernel_size=3, stride=stride, padding=1),
                       nn.BatchNorm2d(n_filters), nn.GELU()]
            c_in = n_filters
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_filters, n_filters), nn.GELU(),
                                  nn.Linear(n_filters, 4))
        self.log_scale = math.log(position_scale)
        self.scale = position_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.log_input:
            x = torch.log(x + 1e-6)
        out = self.head(self.body(x).mean(dim=(2, 3)))
        mu = out[:, :2] * self.scale
        # Var scales with scale², so log-variance shifts by 2·log(scale) to stay in target units.
        logvar = out[:, 2:].clamp(LOGVAR_MIN, LOGVAR_MAX) + 2.0 * self.log_scale
        return torch.cat([mu, logvar], dim=1)
