"""``rf_localizer``: build, step, export, and learn source positions from planted path loss."""

from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from train_step import assert_logs_declared, step_changes

from neuroray.datasets.spec import SpectrogramSpec
from neuroray.errors import ConfigError
from neuroray.trainables import base
from neuroray.trainables.losses import gaussian_nll

TINY = SpectrogramSpec(n_trials=4, n_freqs=8, n_frames=6)  # 4 receivers, 8 mel bins, 6 frames
RECEIVERS = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])


def _build(spec: SpectrogramSpec = TINY, **hparams: object) -> base.Task:
    return base.build("rf_localizer", spec, {"n_filters": 8, "n_blocks": 2, **hparams})


def test_registered_with_its_monitor() -> None:
    cls = base.get("rf_localizer")
    assert (cls.modality, cls.monitor, cls.mode) == ("spectrogram", "val/mean_dist", "min")


def test_gaussian_nll_matches_torch() -> None:
    torch.manual_seed(0)
    pred, target = torch.randn(5, 4), torch.randn(5, 2)
    ref = torch.nn.GaussianNLLLoss(full=True, eps=0.0)(pred[:, :2], target, pred[:, 2:].exp())
    assert torch.allclose(gaussian_nll(pred, target), ref, atol=1e-6)


def test_tiny_input_step_is_finite() -> None:
    torch.manual_seed(0)
    module = _build(position_scale=2.0)
    batch = {"x": torch.randn(4, *TINY.shape), "pos_x": torch.tensor([0.1, 0.5, float("nan"), 0.9]),
             "pos_y": torch.tensor([0.2, 0.3, 0.4, 0.8])}
    assert any(step_changes(module, batch))
    module.eval()
    assert module(batch["x"]).shape == (4, 4)
    assert module(batch["x"][:1]).shape == (1, 4)


@pytest.mark.parametrize(("hparams", "message"), [
    ({"target_columns": "pos_x"}, r"hparams.target_columns: 'pos_x' must name two columns"),
    ({"position_scale": 0.0}, r"hparams.position_scale: 0.0 must be > 0"),
])
def test_bad_hparams_fail_at_build_naming_the_hparam(hparams: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _build(**hparams)


def test_missing_target_column_names_the_hparam() -> None:
    module = _build(target_columns="x_m,y_m")
    with pytest.raises(ConfigError, match=r"hparams.target_columns: batch has no column\(s\) \['x_m', 'y_m'\]"):
        module.training_step({"x": torch.randn(2, *TINY.shape), "pos_x": torch.zeros(2)}, 0)


def test_onnx_export_parity_with_dynamic_batch(tmp_path: Path) -> None:
    from neuroray.export.to_onnx import PARITY_TOL, export_module, parity

    torch.manual_seed(0)
    module = _build(log_input=True).eval()
    path = export_module(module, tmp_path / "model.onnx")  # traced at batch 2
    x = np.random.default_rng(1).uniform(0.1, 2.0, (3, *TINY.shape)).astype(np.float32)  # positive: linear power
    diff = parity(module, path, x)
    assert diff <= PARITY_TOL, diff


@pytest.fixture
def one_thread() -> Iterator[None]:
    # Tiny convs spend more time synchronizing threads than computing on the busy shared 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def path_loss_stacks(n: int, spec: SpectrogramSpec, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Log-power mel stacks at receivers on the unit square's corners from a uniform random source.

    Each sample's source has its own level and spectral shape (shared by every receiver), so only the
    power *differences* across receivers carry position: log power falls as 2·log(distance).
    """
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0.0, 1.0, size=(n, 2))
    dist = np.linalg.norm(pos[:, None, :] - RECEIVERS[None, :, :], axis=-1)  # (n, receivers)
    level = rng.normal(0.0, 1.0, size=(n, 1, 1, 1))
    shape = rng.normal(0.0, 0.5, size=(n, 1, spec.n_freqs, 1))
    x = level + shape - 2.0 * np.log(dist + 0.1)[:, :, None, None] + rng.normal(0.0, 0.5, size=(n, *spec.shape))
    return x.astype(np.float32), pos.astype(np.float32)


def _fit(spec: SpectrogramSpec, n: int, epochs: int, hparams: dict[str, object]) -> tuple[float, float]:
    x, pos = path_loss_stacks(n, spec, seed=0)
    n_train = int(0.8 * n)

    def loader(sl: slice, shuffle: bool) -> torch.utils.data.DataLoader:
        rows = [{"x": torch.from_numpy(a), "pos_x": torch.tensor(p[0]), "pos_y": torch.tensor(p[1])}
                for a, p in zip(x[sl], pos[sl], strict=True)]
        return torch.utils.data.DataLoader(rows, batch_size=32, shuffle=shuffle)  # type: ignore[arg-type]

    L.seed_everything(0)
    module = base.build("rf_localizer", spec, hparams)
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(module, loader(slice(0, n_train), True), loader(slice(n_train, None), False))
    baseline = float(np.linalg.norm(pos[n_train:] - pos[:n_train].mean(axis=0), axis=1).mean())
    assert np.isfinite(float(trainer.callback_metrics["val/nll"]))
    assert_logs_declared(trainer, module)
    return float(trainer.callback_metrics["val/mean_dist"]), baseline


@pytest.mark.usefixtures("one_thread")
def test_learns_source_position_from_path_loss() -> None:
    spec = SpectrogramSpec(n_trials=4, n_freqs=16, n_frames=8)
    error, baseline = _fit(spec, n=800, epochs=15, hparams={"n_filters": 16, "lr": 3e-3})
    assert error < 0.5 * baseline, (error, baseline)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_learns_source_position_at_a_larger_size() -> None:
    spec = SpectrogramSpec(n_trials=4, n_freqs=32, n_frames=16)
    error, baseline = _fit(spec, n=2000, epochs=15, hparams={"n_filters": 32, "lr": 2e-3})
    assert error < 0.3 * baseline, (error, baseline)
