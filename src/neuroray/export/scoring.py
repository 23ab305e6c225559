"""A trainable's own validation metric, computed from an exported model's outputs.

Quantization is judged by the metric the trainable monitors during training (``val/nrmse`` for a
regressor, ``val/auroc`` for a classifier, ...), computed over the whole validation split with the
trainable's own metric code. Tasks whose validation step corrupts the input (masked reconstruction,
contrastive views) get the same corruption from a fixed seed per batch, so the fp32 and the quantized model
are scored on identical inputs. One documented difference: ``vae3d`` is scored without its conditioning
columns (the exported graph takes only the volume; zeros mean "an average study").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from neuroray.datasets.shards import ShardSet
from neuroray.errors import NeurorayError
from neuroray.export.inference import iter_split
from neuroray.trainables.base import Task
from neuroray.trainables.losses import info_nce, patch_mask, pearson_per_sample, positive_mask
from neuroray.trainables.metrics import NRMSE, ClassificationMetrics
from neuroray.trainables.tasks.contrastive import EEGContrastive
from neuroray.trainables.tasks.localization import RFLocalizer
from neuroray.trainables.tasks.pretrain import EEGMaskedPretrain

RunFn = Callable[[np.ndarray], np.ndarray]
SEED = 20_250  # per-batch seeds for masks/augmentations: SEED + batch index


def _float_column(batch: pa.RecordBatch, name: str) -> torch.Tensor:
    """A numeric or bool column as float64, nulls as NaN."""
    col = batch.column(name)
    return torch.from_numpy(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64))


class Scorer:
    """Accumulates one metric over batches: ``inputs`` → model → ``update``; then ``compute``."""

    columns: tuple[str, ...] = ()
    optional = False  # columns are used when present

    def __init__(self, module: Task) -> None:
        self.module = module
        self.metric, self.mode = module.monitor, module.mode

    def inputs(self, x: torch.Tensor, batch_idx: int) -> torch.Tensor:
        """What the model is fed for batch ``batch_idx``: ``x`` itself (subclasses corrupt or augment it)."""
        return x

    def update(self, out: torch.Tensor, x: torch.Tensor, batch: pa.RecordBatch) -> None:
        raise NotImplementedError

    def compute(self) -> float:
        raise NotImplementedError


class _Mean(Scorer):
    """Batch values averaged with batch-size weights (Lightning's ``on_epoch`` mean)."""

    def __init__(self, module: Task) -> None:
        super().__init__(module)
        self.total, self.count = 0.0, 0

    def add(self, value: float, n: int) -> None:
        """Add one batch's mean ``value`` over ``n`` windows."""
        self.total += value * n
        self.count += n

    def compute(self) -> float:
        return self.total / self.count if self.count else math.nan


class Regression(Scorer):
    """``val/nrmse`` of the predictions against the target column (several targets: the mean of theirs, as
    the regressor's own ``val/nrmse``)."""

    def __init__(self, module: Task) -> None:
        super().__init__(module)
        self.metric, self.columns = "val/nrmse", tuple(module.target_names())
        self.nrmse = [NRMSE() for _ in self.columns]

    def update(self, out: torch.Tensor, x: torch.Tensor, batch: pa.RecordBatch) -> None:
        out = out.reshape(out.shape[0], -1)
        for i, (column, metric) in enumerate(zip(self.columns, self.nrmse, strict=True)):
            metric.update(out[:, i], _float_column(batch, column))

    def compute(self) -> float:
        return float(sum(float(m.compute()) for m in self.nrmse) / len(self.nrmse))


class Classification(Scorer):
    """The classifier's monitored metric (e.g. ``val/auroc``) over the rows that have a label."""

    def __init__(self, module: Task) -> None:
        super().__init__(module)
        self.columns = (str(module.target),)
        self.metrics = ClassificationMetrics(int(module.hp.n_classes))  # type: ignore[attr-defined]

    def update(self, out: torch.Tensor, x: torch.Tensor, batch: pa.RecordBatch) -> None:
        y = _float_column(batch, self.columns[0])
        keep = ~torch.isnan(y)
        if keep.any():
            self.metrics.update(out[keep].float(), y[keep].long())

    def compute(self) -> float:
        return float(self.metrics.compute_and_reset()[self.metric.split("/", 1)[1]])


class Localization(_Mean):
    """Mean Euclidean distance between the predicted position (first two outputs) and the target columns."""

    def __init__(self, module: Task) -> None:
        super().__init__(module)
        self.columns = tuple(cast(RFLocalizer, module).columns)

    def update(self, out: torch.Tensor, x: torch.Tensor, batch: pa.RecordBatch) -> None:
        y = torch.stack([_float_column(batch, c) for c in self.columns], dim=1)
        keep = ~torch.isnan(y).any(dim=1)
        if keep.any():
            dist = torch.linalg.vector_norm(out[keep, :2].double() - y[keep], dim=1)
            self.add(float(dist.mean()), int(keep.sum()))


class VolumeReconstruction(_Mean):
    """Mean per-sample Pearson r between the reconstruction and the input volume."""

    def update(self, out: torch.Tensor, x: torch.Tensor, batch: pa.RecordBatch) -> None:
        r = pearson_per_sample(out.reshape(x.shape), x)
        self.add(float(r.mean()), len(x))


class MaskedReconstruction(_Mean):
    """MSE on the hidden entries of seeded patch masks, as in masked pretraining's validation."""

    def inputs(self, x: torch.Tensor, batch_idx: int) -> torch.Tensor:
        """``x`` with seeded random patches zeroed (the mask is kept for ``update``)."""
        module = cast(EEGMaskedPretrain, self.module)
        gen = torch.Generator().manual_seed(SEED + batch_idx)
        self.mask = patch_mask(x.shape[0], x.shape[1], x.shape[2], module.hp.patch_chans, module.patch_t,
                               module.hp.mask_ratio, generator=gen)
        return x.masked_fill(self.mask, 0.0)

    def update(self, out: torch.Tensor, x: torch.Tensor, batch: pa.RecordBatch) -> None:
        hidden = self.mask.float()
        loss = ((out.reshape(x.shape) - x) ** 2 * hidden).sum() / hidden.sum().clamp_min(1.0)
        self.add(float(loss), len(x))


class Contrastive(_Mean):
    """InfoNCE over two seeded augmented views; positives from the stimulus columns when present."""

    columns = ("stimulus_index", "stimulus_time_s")  # positives across windows of one stimulus, if present
    optional = True

    def inputs(self, x: torch.Tensor, batch_idx: int) -> torch.Tensor:
        """Two augmented views of ``x`` stacked along the batch axis, from a seed per batch."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED + batch_idx)
            module = cast(EEGContrastive, self.module)
            return torch.cat([module.augment(x), module.augment(x)], 0)

    def update(self, out: torch.Tensor, x: torch.Tensor, batch: pa.RecordBatch) -> None:
        names = batch.schema.names
        stim, time_s = ((_float_column(batch, c) for c in self.columns) if set(self.columns) <= set(names)
                        else (None, None))
        pos = positive_mask(stim, time_s, len(x))
        loss, _ = info_nce(out.float(), pos, cast(EEGContrastive, self.module).log_temp.detach())
        self.add(float(loss), len(x))


SCORERS: dict[str, type[Scorer]] = {  # by the ``scorer`` each task declares
    "regression": Regression,
    "classification": Classification,
    "localization": Localization,
    "volume_reconstruction": VolumeReconstruction,
    "masked_reconstruction": MaskedReconstruction,
    "contrastive": Contrastive,
}


@dataclass(frozen=True)
class Score:
    """A validation metric of an exported model: its name, mode (min/max), value and window count."""

    metric: str
    mode: str
    value: float
    n_windows: int


def evaluate(module: Task, run: RunFn, shard_set: ShardSet, split: str = "val", batch_size: int = 256) -> Score:
    """``run`` (fp32 or quantized model: numpy in, numpy out) scored with ``module``'s validation metric."""
    if module.scorer not in SCORERS:
        raise NeurorayError(f"no validation metric for trainable {module.name!r} outside training (it declares "
                            f"scorer {module.scorer!r}; known: {', '.join(sorted(SCORERS))})")
    scorer = SCORERS[module.scorer](module)
    files = shard_set.files(split)
    schema_names = set(pq.read_schema(files[0], filesystem=shard_set.fs).names) if files else set()
    missing = [] if scorer.optional else [c for c in scorer.columns if c not in schema_names]
    if missing:
        raise NeurorayError(f"{shard_set.root}: split {split!r} has no column(s) {missing} needed for "
                            f"{scorer.metric}; columns: {', '.join(sorted(schema_names))}")
    cols = [c for c in scorer.columns if c in schema_names]
    n = 0
    with torch.no_grad():
        for i, (x_np, batch) in enumerate(iter_split(shard_set, split, cols, batch_size)):
            x = torch.from_numpy(np.require(x_np, requirements="W"))  # Arrow buffers are read-only
            out = torch.from_numpy(np.asarray(run(scorer.inputs(x, i).numpy())))
            scorer.update(out, x, batch)
            n += len(x)
    if n == 0:
        raise NeurorayError(f"{shard_set.root}: split {split!r} has no rows to score the model on")
    return Score(metric=scorer.metric, mode=scorer.mode, value=scorer.compute(), n_windows=n)


def relative_loss(before: float, after: float, mode: str) -> float:
    """How much worse ``after`` is, relative to ``before`` (positive = worse; 0.02 = 2 %)."""
    worse = after - before if mode == "min" else before - after
    return worse / abs(before) if abs(before) > 1e-12 else worse
