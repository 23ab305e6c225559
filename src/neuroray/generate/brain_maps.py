"""`neuroray generate RUN_DIR --reconstruct N / --traverse DIM / --condition COL=V,…`: brain maps from a vae3d
trial of a finished run, as NIfTI on the shard set's MNI grid (its manifest's affine) with pictures beside
them (brain_pictures.py). From the checkpoint and the shard set alone, no Ray.

* ``reconstruct``: N studies of the split, input and reconstruction (from the latent mean, with each study's
  own conditioning), with the voxel Pearson r and SSIM of each pair (the task's own metric code).
* ``traverse``: the split's mean latent decoded with latent dimension DIM set to each of K values evenly
  spaced over [-R, R] (prior standard deviations), conditioning at 0 (an average study).
* ``condition``: the same latents (the mean latent, and the reconstructed studies when asked for) decoded with
  other conditioning values: every combination of the values given; columns not given keep the study's own
  value (0 for the mean latent).
"""

from __future__ import annotations

import gzip
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
import torch

from neuroray.datasets.shards import ShardSet, tensor_column_to_numpy
from neuroray.errors import NeurorayError
from neuroray.generate.trial_model import load_trial
from neuroray.outputs import atomic_write
from neuroray.reports.source import RunInfo
from neuroray.trainables.losses import pearson_per_sample, ssim3d

__all__ = ["VolumeModel", "Map", "load_volume_model", "reconstruct", "traverse", "condition", "parse_condition",
           "write_nifti"]


@dataclass
class Map:
    """One brain map written: its NIfTI, its title, and (for reconstructions) r and SSIM vs the input."""

    title: str
    volume: np.ndarray
    path: Path
    scores: dict[str, float] = field(default_factory=dict)


@dataclass
class VolumeModel:
    """A vae3d trial ready to encode and decode on its shard set's grid."""

    info: RunInfo
    row: pd.Series
    module: Any
    shards: ShardSet
    affine: np.ndarray

    @property
    def trial_id(self) -> str:
        """The trial's id in results.csv."""
        return str(self.row["trial_id"])

    @property
    def cond_names(self) -> list[str]:
        """The conditioning columns the model was trained with (``hparams.cond_columns``)."""
        return list(self.module.cond_names)


def load_volume_model(run_dir: Path, trial: str = "best") -> VolumeModel:
    """The run's ``trial`` (``best``: the best vae3d trial by the run's metric), its module and shard set."""
    t = load_trial(run_dir, trial, "vae3d", "brain maps (--reconstruct/--traverse/--condition)")
    grid = t.shards.manifest.get("grid") or {}
    if "affine" not in grid:
        raise NeurorayError(f"{t.info.shards}: its manifest records no MNI grid (grid.affine); prepare it with "
                            "`neuroray prepare volumes`")
    return VolumeModel(t.info, t.row, t.module, t.shards, np.asarray(grid["affine"], dtype=np.float64))


def write_nifti(volume: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    """``volume`` (X, Y, Z) as a gzipped NIfTI-1 with ``affine`` (voxel → MNI mm), written atomically."""
    img = nib.Nifti1Image(np.asarray(volume, dtype=np.float32), affine)
    img.header.set_xyzt_units("mm")
    atomic_write(path, lambda p: p.write_bytes(gzip.compress(img.to_bytes(), compresslevel=6)))
    return path


def _split(model: VolumeModel, split: str) -> str:
    if model.shards.rows(split) == 0:
        raise NeurorayError(f"--split {split}: {model.info.shards} has no {split} rows; choose "
                            f"{' or '.join(s for s in ('test', 'val', 'train') if model.shards.rows(s))}")
    return split


def _studies(model: VolumeModel, split: str, n: int | None) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """The first ``n`` studies of ``split`` (all when None): x (n, 1, X, Y, Z), ids, conditioning (NaN → 0)."""
    columns = ["x", *model.cond_names]
    ids = "study_id" if "study_id" in model.shards.manifest["columns"] else None
    table = model.shards.read_split(split, columns + ([ids] if ids else []))
    table = table.slice(0, n) if n is not None else table
    x = torch.from_numpy(tensor_column_to_numpy(table.column("x")).astype(np.float32))
    names = [str(v) for v in table.column(ids).to_pylist()] if ids else [f"row{i}" for i in range(len(x))]
    cond = torch.tensor(np.nan_to_num(np.stack([table.column(c).to_numpy(zero_copy_only=False).astype(np.float32)
                                                for c in model.cond_names], axis=1)), dtype=torch.float32) \
        if model.cond_names else torch.zeros(len(x), 0)
    return x, names, cond


def _cond_or_none(model: VolumeModel, cond: torch.Tensor) -> torch.Tensor | None:
    return cond if model.cond_names else None


@torch.no_grad()
def reconstruct(model: VolumeModel, n: int, out: Path, split: str = "test") -> list[tuple[Map, Map]]:
    """(input, reconstruction) maps of the first ``n`` studies of ``split``, each pair's r and SSIM."""
    x, names, cond = _studies(model, _split(model, split), n)
    mu, _ = model.module.encode(x, _cond_or_none(model, cond))
    recon = model.module.decode(mu, _cond_or_none(model, cond))
    r, s = pearson_per_sample(recon, x), ssim3d(recon, x)
    pairs = []
    for i, name in enumerate(names):
        scores = {"pearson_r": float(r[i]), "ssim": float(s[i])}
        pairs.append((Map(f"{name}: input", x[i, 0].numpy(), write_nifti(x[i, 0].numpy(), model.affine,
                                                                         out / f"{name}_input.nii.gz")),
                      Map(f"{name}: reconstruction", recon[i, 0].numpy(),
                          write_nifti(recon[i, 0].numpy(), model.affine, out / f"{name}_recon.nii.gz"), scores)))
    return pairs


@torch.no_grad()
def _mean_latent(model: VolumeModel, split: str) -> torch.Tensor:
    x, _, cond = _studies(model, split, None)
    mus = [model.module.encode(x[i:i + 32], _cond_or_none(model, cond[i:i + 32]))[0] for i in range(0, len(x), 32)]
    return torch.cat(mus).mean(dim=0, keepdim=True)


@torch.no_grad()
def traverse(model: VolumeModel, dim: int, steps: int, span: float, out: Path, split: str = "test") -> list[Map]:
    """The mean latent of ``split`` with dimension ``dim`` at ``steps`` values over [-span, span]."""
    latent = int(model.module.hp.latent_dim)
    if not 0 <= dim < latent:
        raise NeurorayError(f"--traverse {dim}: the model's latent has dimensions 0…{latent - 1}")
    z = _mean_latent(model, _split(model, split)).repeat(steps, 1)
    values = np.linspace(-span, span, steps)
    z[:, dim] = torch.from_numpy(values.astype(np.float32))
    vols = model.module.decode(z, _cond_or_none(model, torch.zeros(steps, len(model.cond_names))))
    return [Map(f"z[{dim}] = {v:+.2f}", vols[k, 0].numpy(),
                write_nifti(vols[k, 0].numpy(), model.affine, out / f"dim{dim}_step{k}.nii.gz"))
            for k, v in enumerate(values)]


def parse_condition(model: VolumeModel, items: list[str]) -> list[dict[str, float]]:
    """``["year_z=-1,0,1", "journal_code=2"]`` → every combination, checked against the model's columns."""
    if not model.cond_names:
        raise NeurorayError(f"--condition: trial {model.trial_id} was trained without conditioning "
                            "(hparams.cond_columns is empty); choose a conditional arm's trial with --trial")
    given: dict[str, list[float]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or key not in model.cond_names:
            raise NeurorayError(f"--condition {item}: give COLUMN=V1,V2,… with COLUMN one of the model's "
                                f"conditioning columns: {', '.join(model.cond_names)}")
        try:
            given[key] = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise NeurorayError(f"--condition {item}: values must be numbers, e.g. year_z=-1,0,1") from None
        if not given[key]:
            raise NeurorayError(f"--condition {item}: no values given")
    return [dict(zip(given, combo, strict=True)) for combo in itertools.product(*given.values())]


@torch.no_grad()
def condition(model: VolumeModel, combos: list[dict[str, float]], out: Path, studies: int = 0,
              split: str = "test") -> list[tuple[str, list[Map]]]:
    """Per latent (the mean latent, then ``studies`` studies of ``split``): one map per conditioning combination."""
    split = _split(model, split)
    rows: list[tuple[str, torch.Tensor, torch.Tensor]] = [
        ("mean latent", _mean_latent(model, split), torch.zeros(1, len(model.cond_names)))]
    if studies:
        x, names, cond = _studies(model, split, studies)
        mu, _ = model.module.encode(x, cond)
        rows += [(name, mu[i:i + 1], cond[i:i + 1]) for i, name in enumerate(names)]
    result = []
    for name, z, own in rows:
        maps = []
        for combo in combos:
            c = own.clone()
            for key, value in combo.items():
                c[0, model.cond_names.index(key)] = value
            vol = model.module.decode(z, c)[0, 0].numpy()
            label = ",".join(f"{k}={v:g}" for k, v in combo.items())
            stem = "mean" if name == "mean latent" else name
            path = out / f"{stem}_{label.replace(',', '_')}.nii.gz"
            maps.append(Map(label, vol, write_nifti(vol, model.affine, path)))
        result.append((name, maps))
    return result
