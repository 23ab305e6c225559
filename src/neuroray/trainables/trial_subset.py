"""Multi-trial spectrogram inputs: use the first ``n_trials`` of each stored sequence, and train-time augmentation.

One shard set prepared with ``--n-trials 8`` then serves single-trial, 4-trial and 8-trial models side by side
(an ablation over sequence length needs no re-preparation).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from neuroray.datasets.spec import SpectrogramSpec
from neuroray.errors import ConfigError


def subset_spec(spec: SpectrogramSpec, n_trials: int) -> SpectrogramSpec:
    """The spec a model sees when it reads the first ``n_trials`` trials (0 = all of them)."""
    if not 0 <= n_trials <= spec.n_trials:
        raise ConfigError(f"hparams.n_trials: {n_trials}; the shard set holds sequences of {spec.n_trials} trials "
                          f"(use 1..{spec.n_trials}, or 0 for all)")
    return replace(spec, n_trials=n_trials or spec.n_trials)


def augment_sequences(x: torch.Tensor, time_mask: float = 0.1) -> torch.Tensor:
    """(B, trials, freqs, frames): shuffle the trial order per sequence (the label belongs to the animal, not to
    the order) and zero one random block of ``time_mask`` of the frames (SpecAugment-style)."""
    b, t, _, n = x.shape
    order = torch.argsort(torch.rand(b, t, device=x.device), dim=1)
    x = torch.gather(x, 1, order[:, :, None, None].expand_as(x))
    width = max(1, int(round(time_mask * n)))
    start = torch.randint(0, n - width + 1, (b, 1, 1, 1), device=x.device)
    frames = torch.arange(n, device=x.device).view(1, 1, 1, n)
    return x.masked_fill((frames >= start) & (frames < start + width), 0.0)
