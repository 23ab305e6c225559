"""A temporal 3-D ViT over spectrogram sequences (trials × freq × time): tubelet tokens, factorized
trial/frequency/time position embeddings, pre-norm blocks with LayerScale and stochastic depth."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn
from torch.nn import functional as F

from neuroray.datasets.spec import SpectrogramSpec
from neuroray.errors import ConfigError

__all__ = ["ViTShape", "DropPath", "Attention", "Block", "token_grid", "TemporalViT", "attention_rollout"]


class ViTShape(Protocol):
    """The hparams a TemporalViT is built from (the temporal_vit task's hparams satisfy it)."""

    n_classes: int
    embed_dim: int
    depth: int
    n_heads: int
    mlp_ratio: float
    trial_patch: int
    freq_patch: int
    time_patch: int
    pad_to_patch: bool
    dropout: float
    drop_path: float
    layer_scale_init: float
    standardize_input: bool


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
        self.keep = False  # attention rollout: keep this pass's head-averaged attention in ``kept``
        self.kept: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = self.drop((q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1))
        if self.keep:
            self.kept = attn.mean(dim=1).detach()
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


def token_grid(spec: SpectrogramSpec, hp: ViTShape) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
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

    def __init__(self, spec: SpectrogramSpec, hp: ViTShape) -> None:
        super().__init__()
        if hp.embed_dim % hp.n_heads:
            raise ConfigError(f"hparams.embed_dim: {hp.embed_dim} is not divisible by hparams.n_heads={hp.n_heads}")
        if hp.n_classes < 2:
            raise ConfigError(f"hparams.n_classes: must be >= 2; got {hp.n_classes}")
        (gt, gf, gn), (pt, pf, pn) = token_grid(spec, hp)
        self.grid, self.pads = (gt, gf, gn), (pt, pf, pn)
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


def attention_rollout(vit: TemporalViT, x: torch.Tensor) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): how much each (trial, freq, time) token flows into the class
    token through all blocks. Per block the heads' attention is averaged and the residual path added as
    identity (0.5·A + 0.5·I, rows renormalized); the blocks' matrices are multiplied in order and the class
    token's row is kept. Returns (B, trial tokens, freq tokens, time tokens), each sample's map summing to 1."""
    attns: list[Attention] = [block.attn for block in vit.blocks if isinstance(block, Block)]
    for a in attns:
        a.keep = True
    try:
        with torch.no_grad():
            vit.eval()(x)
        kept = [a.kept for a in attns if a.kept is not None]
    finally:
        for a in attns:
            a.keep, a.kept = False, None
    b, n = x.shape[0], kept[0].shape[-1]
    eye = torch.eye(n, dtype=kept[0].dtype)
    rollout = eye.expand(b, n, n)
    for attn in kept:
        mixed = 0.5 * attn + 0.5 * eye
        rollout = (mixed / mixed.sum(dim=-1, keepdim=True)) @ rollout
    flow = rollout[:, 0, 1:]
    return (flow / flow.sum(dim=-1, keepdim=True)).reshape(b, *vit.grid)
