"""A trained module scored on a held-out split with its task's own validation code.

Every task logs its epoch metrics as ``val/<name>`` from ``validation_step`` / ``on_validation_epoch_end``;
running that same code over another split's batches and renaming the prefix gives that split's scores with
no second copy of any metric (the held-out ``test/…`` columns of a run). Imports no Ray.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import lightning as L
import torch

__all__ = ["score_split", "confusion"]


def score_split(module: L.LightningModule, batches: Iterable[dict[str, torch.Tensor]], prefix: str = "test/",
                lightning_kwargs: dict[str, Any] | None = None) -> dict[str, float]:
    """``module``'s validation metrics over ``batches``, keyed ``<prefix><name>`` (``val/nrmse`` → ``test/nrmse``)."""
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, **(lightning_kwargs or {"accelerator": "auto", "devices": 1}))
    logged = trainer.validate(module, dataloaders=batches, verbose=False)
    return {prefix + key.split("/", 1)[1]: float(value) for key, value in (logged[0] if logged else {}).items()
            if key.startswith("val/")}


def confusion(module: L.LightningModule) -> list[list[int]] | None:
    """The confusion matrix of the split ``score_split`` last scored (rows: true class, columns: predicted),
    or None for a module that is not a classifier."""
    matrix = getattr(getattr(module, "val_metrics", None), "last_confusion", None)
    return [[int(v) for v in row] for row in matrix.tolist()] if isinstance(matrix, torch.Tensor) else None
