"""A plain 2-D CNN over spectrogram sequences with the trial axis as input channels (no attention across
trials, no positional structure): the baseline a temporal ViT must beat."""

from __future__ import annotations

from torch import nn

__all__ = ["spectrogram_cnn_body"]


def spectrogram_cnn_body(n_trials: int, width: int, dropout: float, n_classes: int) -> nn.Sequential:
    """(B, n_trials, freqs, frames) → (B, n_classes) logits: two conv blocks, global pooling, a linear head."""
    w = width
    return nn.Sequential(
        nn.Conv2d(n_trials, w, 3, padding=1), nn.BatchNorm2d(w), nn.GELU(), nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.GELU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(2 * w, n_classes),
    )
