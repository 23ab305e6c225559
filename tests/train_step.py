"""Test helper: one optimizer step on a trainable, and which parameters it changed."""

from __future__ import annotations

import lightning as L
import torch


def step_changes(module: L.LightningModule, batch: dict[str, torch.Tensor],
                 optimizer: torch.optim.Optimizer | None = None) -> list[bool]:
    """Run ``training_step`` + backward + one optimizer step (the module's own optimizer unless given);
    the loss must be finite. Returns, per parameter, whether the step changed it."""
    opt = optimizer or module.configure_optimizers()
    before = [p.detach().clone() for p in module.parameters()]
    loss = module.training_step(batch, 0)
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    return [not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True)]


def assert_logs_declared(trainer: L.Trainer, module: L.LightningModule) -> None:
    """Every metric the task declares (what an experiment's ``metric`` may name) was logged by a real fit."""
    from neuroray.trainables.base import logged_metrics

    missing = set(logged_metrics(module.name)) - set(trainer.callback_metrics)
    assert not missing, f"{module.name} declares {sorted(missing)} but its fit logged {sorted(trainer.callback_metrics)}"
