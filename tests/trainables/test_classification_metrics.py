"""The classifiers' shared metrics keep each epoch's confusion matrix (the held-out test split's goes to
results.csv): rows true class, columns predicted, as sklearn counts it."""

from __future__ import annotations

import torch
from sklearn.metrics import confusion_matrix

from neuroray.trainables.metrics import ClassificationMetrics


def test_confusion_matrix_counts_like_sklearn_over_batches() -> None:
    gen = torch.Generator().manual_seed(0)
    for k in (2, 3):
        metrics = ClassificationMetrics(k)
        ys, preds = [], []
        for _ in range(3):  # accumulated over batches, like an epoch
            y = torch.randint(0, k, (40,), generator=gen)
            logits = torch.randn(40, k, generator=gen) + 2.5 * torch.nn.functional.one_hot(y, k)  # mostly right
            metrics.update(logits, y)
            ys.append(y)
            preds.append(logits.argmax(dim=1))
        scores = metrics.compute_and_reset()
        assert metrics.last_confusion is not None
        expected = confusion_matrix(torch.cat(ys), torch.cat(preds), labels=list(range(k)))
        assert metrics.last_confusion.tolist() == expected.tolist()
        assert abs(float(scores["acc"]) - expected.trace() / expected.sum()) < 1e-6
        assert expected.trace() > 0.6 * expected.sum()  # the planted signal: mostly on the diagonal
        metrics.update(torch.randn(5, k, generator=gen), torch.zeros(5, dtype=torch.long))
        metrics.compute_and_reset()
        assert int(metrics.last_confusion.sum()) == 5  # the next epoch starts over
