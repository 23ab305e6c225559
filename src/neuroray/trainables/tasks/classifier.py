"""What every classifier shares: the train/val steps (held-out test scores reuse the val code:
``trainables/evaluate.py``), their logged metrics (AUROC, accuracy, F1 of
``metrics.ClassificationMetrics``) and the monitored ``val/auroc``. A task supplies ``_loss(batch)`` →
(loss, logits, labels) and, optionally, ``train_batch`` (train-time augmentation)."""

from __future__ import annotations

from typing import ClassVar

import torch

from neuroray.errors import ConfigError
from neuroray.trainables.base import Task
from neuroray.trainables.metrics import ClassificationMetrics

__all__ = ["ClassifierSteps"]

Batch = dict[str, torch.Tensor]


class ClassifierSteps(Task):
    """Mixed in before a task's own base (``class EEGClassifier(ClassifierSteps, EEGTask)``)."""

    monitor: ClassVar[str] = "val/auroc"
    logs: ClassVar[tuple[str, ...]] = ("val/auroc", "val/acc", "val/f1")  # besides train/loss and val/loss
    mode: ClassVar[str] = "max"
    output: ClassVar[str] = "class logits (softmax for probabilities)"
    scorer: ClassVar[str] = "classification"

    def init_metrics(self, n_classes: int) -> None:
        """Validation metrics for ``n_classes`` (at least 2)."""
        if n_classes < 2:
            raise ConfigError(f"hparams.n_classes: {n_classes}; a classifier needs at least 2")
        self.val_metrics = ClassificationMetrics(n_classes)

    def _loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def train_batch(self, batch: Batch) -> Batch:
        """The batch a training step sees (a task's train-time augmentation goes here)."""
        return batch

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss, _, y = self._loss(self.train_batch(batch))
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=max(1, len(y)))
        return loss

    def _eval_step(self, batch: Batch, split: str, metrics: ClassificationMetrics) -> None:
        loss, logits, y = self._loss(batch)
        metrics.update(logits, y)
        self.log(f"{split}/loss", loss, on_step=False, on_epoch=True, batch_size=max(1, len(y)), sync_dist=True)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        # torchmetrics syncs its own states across workers; Lightning must not reduce them again.
        for name, value in self.val_metrics.compute_and_reset().items():
            self.log(f"val/{name}", value, sync_dist=False)
