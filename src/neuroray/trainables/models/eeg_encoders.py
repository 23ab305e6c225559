"""EEG window encoders: (B, n_chans, n_times) → (B, width) features that a task's heads read.

Two small encoders of our own (``shallow``, ``conv``) and braindecode's zoo (``eegnex``, ``eegnet``, …;
the model is braindecode's, built with ``n_outputs = width``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from neuroray.datasets.spec import EEGWindowSpec
from neuroray.trainables.models import braindecode_encoders

__all__ = ["ShallowEncoder", "ConvEncoder", "ENCODERS", "EncoderName", "build_encoder"]


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


def build_encoder(name: str, spec: EEGWindowSpec, width: int, dropout: float) -> nn.Module:
    """Window (B, n_chans, n_times) → features (B, width), whichever family the encoder comes from."""
    if name in ENCODERS:
        return ENCODERS[name](spec.n_chans, spec.n_times, width, dropout)
    return braindecode_encoders.build(name, spec, n_outputs=width, drop_prob=dropout)
