"""Metrics that torchmetrics lacks in the exact form the field scores with."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class NRMSE(Metric):
    """EEG2025 normalized RMSE: rmse / std(y_true) with the population std (ddof=0).

    Accumulates sums so the value over a whole split is exact across batches and DDP ranks.
    Null targets (NaN) are ignored.
    """

    sse: torch.Tensor
    sum_y: torch.Tensor
    sum_y2: torch.Tensor
    n: torch.Tensor
    full_state_update = False
    higher_is_better = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("sse", "sum_y", "sum_y2", "n"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        preds, target = preds.reshape(-1).double(), target.reshape(-1).double()
        keep = ~torch.isnan(target)
        preds, target = preds[keep], target[keep]
        self.sse += ((preds - target) ** 2).sum()
        self.sum_y += target.sum()
        self.sum_y2 += (target**2).sum()
        self.n += target.numel()

    def compute(self) -> torch.Tensor:
        n = self.n.clamp_min(1.0)
        var = (self.sum_y2 / n - (self.sum_y / n) ** 2).clamp_min(1e-12)
        return (torch.sqrt(self.sse / n) / torch.sqrt(var)).float()


def nrmse(preds: torch.Tensor, target: torch.Tensor) -> float:
    """One-shot NRMSE (population std), for reports and tests."""
    m = NRMSE()
    m.update(preds, target)
    return float(m.compute())


class ClassificationMetrics(torch.nn.Module):
    """AUROC, accuracy and F1 from logits, shared by every classifier, and the confusion matrix of the last
    epoch (``last_confusion``; the held-out test split's is in results.csv).

    Two classes: the binary metrics score the positive class (e.g. knock-out), which is what a study
    reports; macro one-vs-rest F1 would average in the negative class. More classes: multiclass (macro).
    """

    def __init__(self, n_classes: int) -> None:
        from torchmetrics import AUROC, Accuracy, ConfusionMatrix, F1Score

        super().__init__()
        self.binary = n_classes == 2
        kw: dict[str, object] = {"task": "binary"} if self.binary else {"task": "multiclass", "num_classes": n_classes}
        self.auroc: Metric = AUROC(**kw)  # type: ignore[arg-type]
        self.acc: Metric = Accuracy(**kw)  # type: ignore[arg-type]
        self.f1: Metric = F1Score(**kw)  # type: ignore[arg-type]
        # not logged (K × K numbers per epoch): kept after each epoch for the held-out test split's matrix
        self.confusion: Metric = ConfusionMatrix(**kw)  # type: ignore[arg-type]
        self.last_confusion: torch.Tensor | None = None

    def _named(self) -> list[tuple[str, Metric]]:
        return [("auroc", self.auroc), ("acc", self.acc), ("f1", self.f1)]

    def update(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        probs = logits.softmax(dim=-1)
        scores = probs[:, 1] if self.binary else probs
        for _, metric in self._named():
            metric.update(scores, y)
        self.confusion.update(scores, y)

    def compute_and_reset(self) -> dict[str, torch.Tensor]:
        """``{"auroc": ..., "acc": ..., "f1": ...}`` over the epoch; the states start over."""
        out = {}
        for name, metric in self._named():
            out[name] = metric.compute()
            metric.reset()
        self.last_confusion = self.confusion.compute().long()  # rows: true class, columns: predicted
        self.confusion.reset()
        return out
