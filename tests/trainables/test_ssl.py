"""Self-supervised and multi-task EEG pieces: masked pretraining, InfoNCE, aux heads, encoder carry-over + freeze."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import pytest
import torch

from neuroray.datasets.spec import EEGWindowSpec
from neuroray.export.to_onnx import export_module, parity
from neuroray.trainables import base
from neuroray.trainables.losses import patch_mask, positive_mask

SPEC = EEGWindowSpec(n_chans=8, n_times=128, sfreq=64.0)


def _batch(n: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(n, 8, 128, generator=g), "y": torch.randn(n, generator=g),
            "p_factor": torch.tensor([0.5, float("nan"), -1.0, 0.2, float("nan"), 1.0])[:n],
            "stimulus_index": torch.tensor([0, 0, -1, 1, 1, -1])[:n],
            "stimulus_time_s": torch.tensor([2.0, 2.0, float("nan"), 4.0, 6.0, float("nan")])[:n]}


@pytest.mark.parametrize(("name", "hparams"), [
    ("eeg_masked_pretrain", {"aux_target": "p_factor"}),
    ("eeg_contrastive", {"aux_target": "p_factor"}),
    ("eeg_regressor", {"aux_target": "p_factor", "encoder": "conv"}),
])
def test_tiny_step_with_aux_head_ignoring_nulls(name: str, hparams: dict[str, object]) -> None:
    module = base.build(name, SPEC, hparams, target="y")
    opt = torch.optim.AdamW(module.parameters(), lr=1e-2)
    before = [p.detach().clone() for p in module.encoder.parameters()]
    loss = module.training_step(_batch(), 0)
    assert torch.isfinite(loss)
    loss.backward()
    assert module.aux_head is not None and module.aux_head.weight.grad is not None
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, module.encoder.parameters(), strict=True))


@pytest.mark.parametrize("name", ["eeg_masked_pretrain", "eeg_contrastive"])
def test_onnx_parity(name: str, tmp_path: object) -> None:
    from pathlib import Path

    module = base.build(name, SPEC, {}).eval()
    path = export_module(module, Path(str(tmp_path)) / "m.onnx")
    x = np.random.default_rng(0).standard_normal((3, 8, 128)).astype(np.float32)
    assert parity(module, path, x) <= 1e-4


def test_patch_mask_hides_whole_patches_at_the_ratio() -> None:
    m = patch_mask(64, 8, 128, patch_c=4, patch_t=16, ratio=0.5, generator=torch.Generator().manual_seed(0))
    assert m.shape == (64, 8, 128)
    assert abs(m.float().mean().item() - 0.5) < 0.05
    blocks = m.reshape(64, 2, 4, 8, 16)
    assert torch.equal(blocks.all(dim=(2, 4)), blocks.any(dim=(2, 4)))  # constant within each patch


def test_positive_mask_pairs_views_and_same_moment_windows() -> None:
    b = _batch()
    pos = positive_mask(b["stimulus_index"], b["stimulus_time_s"], 6)
    assert pos.shape == (12, 12) and not pos.diagonal().any()
    assert pos[0, 6] and pos[0, 1] and pos[0, 7]  # own view; same movie and moment (row 1) in both views
    assert not pos[3, 4]  # same movie, another moment
    assert not pos[2, 5]  # no stimulus


def _moment_windows(n_moments: int, n_subjects: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every subject watched the same movie: a moment's stimulus-locked response is shared, noise is not."""
    g = np.random.default_rng(seed)
    t = np.arange(128) / 64.0
    freqs, phases = g.uniform(2, 12, size=n_moments), g.uniform(0, 2 * np.pi, size=n_moments)
    x = g.standard_normal((n_moments, n_subjects, 8, 128)) * 0.8
    x[:, :, :4] += np.sin(2 * np.pi * freqs[:, None, None, None] * t + phases[:, None, None, None]) * 1.5
    times = np.repeat(np.arange(n_moments, dtype=np.float32) * 2.0, n_subjects)
    return (torch.tensor(x.reshape(-1, 8, 128), dtype=torch.float32), torch.zeros(len(times), dtype=torch.long),
            torch.tensor(times))


def test_infonce_learns_same_moment_positives() -> None:
    torch.manual_seed(0)
    x, stim, times = _moment_windows(n_moments=16, n_subjects=4, seed=0)
    module = base.build("eeg_contrastive", SPEC, {"encoder": "conv", "n_filters": 32, "lr": 3e-3})
    opt = module.configure_optimizers()
    batch_size = 32  # 8 moments × 4 subjects: every window has 3 cross-subject positives in its batch
    history = []
    for _ in range(30):
        order = torch.randperm(16)
        for half in (order[:8], order[8:]):
            rows = (half[:, None] * 4 + torch.arange(4)).reshape(-1)
            loss, _, pos_sim = module._loss({"x": x[rows], "stimulus_index": stim[rows],
                                             "stimulus_time_s": times[rows]})
            opt.zero_grad()
            loss.backward()
            opt.step()
        history.append((loss.item(), pos_sim.item()))
    assert history[-1][0] < math.log(batch_size) * 0.7, history[-1]
    assert history[-1][1] > history[0][1]  # positive pairs grow more similar...
    with torch.no_grad():
        z = module.eval()(x)
    sim = z @ z.T
    same = times[:, None] == times[None, :]
    off_diag = ~torch.eye(len(x), dtype=torch.bool)
    assert sim[same & off_diag].mean() - sim[~same].mean() > 0.3  # ...and stand apart from negatives


def test_finetune_starts_from_pretrained_encoder_and_respects_freeze_epochs() -> None:
    torch.manual_seed(0)
    pre = base.build("eeg_masked_pretrain", SPEC, {"encoder": "conv"})
    pre.training_step(_batch(), 0).backward()
    saved = {k: v.detach().clone() for k, v in pre.state_dict().items()}
    fine = base.build("eeg_regressor", SPEC, {"encoder": "conv", "freeze_epochs": 1, "lr": 1e-2}, target="y")
    copied = base.load_matching(fine, saved)
    assert copied and all(k.startswith("encoder.") for k in copied) and not any("decoder" in k for k in copied)
    for k, v in fine.encoder.state_dict().items():
        assert torch.equal(v, saved[f"encoder.{k}"])  # starts from the saved encoder weights

    class Data(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
        def __len__(self) -> int:
            return 32

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            b = _batch(6, seed=i)
            return {"x": b["x"][0], "y": b["y"][0]}

    grads: list[tuple[int, float]] = []

    class Probe(L.Callback):
        def on_after_backward(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            g = [p.grad.abs().sum().item() for p in module.encoder.parameters() if p.grad is not None]
            grads.append((trainer.current_epoch, sum(g)))

    frozen_state: dict[str, torch.Tensor] = {}

    class Snapshot(L.Callback):
        def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            if trainer.current_epoch == 0:
                frozen_state.update({k: v.detach().clone() for k, v in module.encoder.state_dict().items()})

    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[Probe(), Snapshot()])
    trainer.fit(fine, torch.utils.data.DataLoader(Data(), batch_size=8))
    assert all(g == 0.0 for epoch, g in grads if epoch == 0)  # frozen: no encoder gradient at all
    assert any(g > 0.0 for epoch, g in grads if epoch == 1)  # unfrozen after freeze_epochs
    for k, v in frozen_state.items():
        assert torch.equal(v, saved[f"encoder.{k}"]), k  # unchanged through the frozen epoch
