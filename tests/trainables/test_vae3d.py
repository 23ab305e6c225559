"""vae3d: build, step, export, β schedules and KL control, learning planted blobs."""

from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from train_step import assert_logs_declared

from neuroray.datasets.spec import VolumeSpec
from neuroray.errors import ConfigError
from neuroray.trainables import base
from neuroray.trainables.losses import pearson_per_sample, ssim3d
from neuroray.trainables.tasks.vae3d import KLController, scheduled_beta

TINY = VolumeSpec(shape=(12, 14, 12), voxel_mm=8.0)  # odd-ish sizes: 14 is not a multiple of 2**depth
SMALL_HP = {"depth": 2, "base_channels": 8, "latent_dim": 8}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # On a shared 2-core box, intra-op threads oversubscribe the CPU: a step of these tiny nets runs ~15x
    # slower with 2 threads under load than with 1.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _build(spec: VolumeSpec = TINY, **hparams: object) -> base.Task:
    return base.build("vae3d", spec, {**SMALL_HP, **hparams})


def _batch(n: int = 4) -> dict[str, torch.Tensor]:
    return {"x": torch.randn(n, 1, *TINY.shape),
            "age": torch.tensor([0.5, float("nan"), -1.0, 0.2])[:n],
            "site": torch.tensor([0, 1, 1, 0])[:n],
            "year": torch.tensor([2001.0, 2005.0, float("nan"), 2012.0])[:n]}


def test_registered_with_monitor() -> None:
    cls = base.get("vae3d")
    assert (cls.modality, cls.monitor, cls.mode) == ("volume", "val/pearson_r", "max")


@pytest.mark.parametrize("hparams", [
    {},
    {"cond_columns": "age, site"},
    {"adversary_column": "year", "adversary_weight": 0.5},
    {"cond_columns": "age,site", "adversary_column": "year", "kl_target": 3.0},
], ids=["plain", "cond", "adversary", "cond+adversary+controller"])
def test_tiny_input_step_is_finite(hparams: dict[str, object]) -> None:
    torch.manual_seed(0)
    module = _build(**hparams)
    batch = _batch()
    opt = module.configure_optimizers()
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    loss = module.training_step(batch, 0)
    assert torch.isfinite(loss)
    opt.zero_grad()
    loss.backward()
    opt.step()
    changed = {n for n, p in module.named_parameters() if not torch.equal(before[n], p)}
    assert any(n.startswith("encoder.") for n in changed) and any(n.startswith("decoder.") for n in changed)
    if hparams.get("cond_columns"):
        assert any(".film." in n for n in changed)
    if hparams.get("adversary_column"):
        assert any(n.startswith("adversary.") for n in changed)
    module.eval()
    with torch.no_grad():
        assert module(batch["x"]).shape == (4, 1, *TINY.shape)
        assert module(batch["x"][:1]).shape == (1, 1, *TINY.shape)


def test_gradient_reversal_pushes_encoder_against_the_adversary() -> None:
    torch.manual_seed(0)
    module = _build(adversary_column="year", adversary_weight=1.0)
    batch = _batch()
    mu, _ = module.encode(batch["x"])
    mu = mu.detach().requires_grad_(True)
    assert module.adversary is not None
    adv = module._adversary_loss(module.adversary, mu, batch)
    (g_reversed,) = torch.autograd.grad(adv, mu)
    y = batch["year"][~torch.isnan(batch["year"])]
    keep = ~torch.isnan(batch["year"])
    plain = torch.nn.functional.mse_loss(module.adversary(mu).reshape(-1)[keep], (y - y.mean()) / y.std())
    (g_plain,) = torch.autograd.grad(plain, mu)
    torch.testing.assert_close(g_reversed, -g_plain)


def test_missing_condition_column_names_the_columns() -> None:
    module = _build(cond_columns="age,handedness")
    with pytest.raises(ConfigError, match="no column 'handedness'"):
        module.training_step(_batch(), 0)


def test_bad_hparams_fail_at_build() -> None:
    with pytest.raises(ConfigError, match="depth"):
        _build(depth=0)
    with pytest.raises(ConfigError, match="beta_schedule"):
        _build(beta_schedule="sigmoid")
    with pytest.raises(ConfigError, match="kl_target"):
        _build(kl_target=-1.0)


def test_onnx_export_parity_dynamic_batch(tmp_path: Path) -> None:
    from neuroray.export.to_onnx import PARITY_TOL, export_module, parity

    torch.manual_seed(0)
    module = _build(cond_columns="age,site").eval()  # forward uses zero conditioning
    path = export_module(module, tmp_path / "model.onnx")  # exported at batch 2
    assert not (tmp_path / "model.onnx.data").exists()
    x = np.random.default_rng(1).standard_normal((3, 1, *TINY.shape)).astype(np.float32)
    diff = parity(module, path, x)
    print(f"onnx parity max |diff| = {diff:.2e}")
    assert diff <= PARITY_TOL, diff


def test_linear_warmup_values() -> None:
    values = [scheduled_beta("linear", 2.0, 4, e) for e in (0, 1, 2, 4, 10)]
    assert values == pytest.approx([0.0, 0.5, 1.0, 2.0, 2.0])
    assert scheduled_beta("constant", 2.0, 4, 0) == 2.0
    assert scheduled_beta("linear", 2.0, 0, 0) == 2.0  # no warm-up


def test_cyclical_ramps_holds_and_repeats() -> None:
    values = [scheduled_beta("cyclical", 1.0, 2, e) for e in (0, 1, 2, 3, 4, 5, 6, 7.5)]
    assert values == pytest.approx([0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0, 1.0])


def test_beta_follows_the_epoch_inside_the_module() -> None:
    module = _build(beta=1.0, beta_schedule="linear", beta_warmup_epochs=4)
    assert module.current_beta() == 0.0  # epoch 0, no trainer attached


def test_kl_controller_raises_beta_above_target_and_lowers_it_below() -> None:
    up = KLController(beta0=1.0, target=10.0, kp=0.1, ki=0.01)
    betas = [float(up.update(torch.tensor(20.0))) for _ in range(5)]
    assert betas[0] > 1.0 and all(b2 > b1 for b1, b2 in zip(betas, betas[1:], strict=False))
    down = KLController(beta0=1.0, target=10.0, kp=0.1, ki=0.5)
    betas = [float(down.update(torch.tensor(2.0))) for _ in range(10)]
    assert betas[0] < 1.0 and betas[-1] == 0.0 and min(betas) >= 0.0
    # Anti-windup: after hitting 0, one step above target brings β back up at once.
    assert float(down.update(torch.tensor(20.0))) > 0.0


def test_controller_drives_beta_in_training_step() -> None:
    torch.manual_seed(0)
    module = _build(kl_target=1e-3, beta=0.5)  # a fresh encoder's KL is far above this
    module.training_step(_batch(), 0)
    assert module.current_beta() > 0.5
    assert "controller.beta" in module.state_dict()  # resumes from checkpoints


def test_metrics_on_known_pairs() -> None:
    x = torch.randn(3, 1, 10, 12, 10)
    assert torch.allclose(pearson_per_sample(x, x), torch.ones(3))
    assert torch.allclose(pearson_per_sample(-2 * x + 1, x), -torch.ones(3))
    assert torch.allclose(pearson_per_sample(torch.zeros_like(x), x), torch.zeros(3))
    assert torch.allclose(ssim3d(x, x), torch.ones(3), atol=1e-5)
    noisy = ssim3d(x + 0.5 * torch.randn_like(x), x)
    assert bool((noisy < 0.95).all()) and bool((noisy > 0).all())


def _blobs(n: int, shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """Sums of 1-3 Gaussian blobs at random positions and widths, plus noise."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1).astype(np.float32)
    out = np.empty((n, 1, *shape), dtype=np.float32)
    for i in range(n):
        vol = np.zeros(shape, dtype=np.float32)
        for _ in range(rng.integers(1, 4)):
            centre = rng.uniform(1, np.array(shape) - 1)
            width = rng.uniform(1.2, 2.2)
            vol += rng.uniform(0.7, 1.3) * np.exp(-((grid - centre) ** 2).sum(-1) / (2 * width**2))
        out[i, 0] = vol + 0.05 * rng.standard_normal(shape)
    return out


def _learn(n_train: int, epochs: int) -> tuple[float, float]:
    spec = VolumeSpec(shape=(12, 14, 12), voxel_mm=8.0)
    train, val = _blobs(n_train, spec.shape, seed=0), _blobs(64, spec.shape, seed=1)

    def loader(x: np.ndarray, shuffle: bool) -> torch.utils.data.DataLoader:
        rows = [{"x": torch.from_numpy(v)} for v in x]
        return torch.utils.data.DataLoader(rows, batch_size=16, shuffle=shuffle)  # type: ignore[arg-type]

    L.seed_everything(0)
    module = base.build("vae3d", spec, {"depth": 2, "base_channels": 8, "latent_dim": 16, "lr": 3e-3,
                                        "beta": 0.5, "beta_schedule": "linear", "beta_warmup_epochs": 2})
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(module, loader(train, True), loader(val, False))
    model_r = float(trainer.callback_metrics["val/pearson_r"])
    mean_vol = torch.from_numpy(train.mean(axis=0, keepdims=True)).expand(len(val), *train.shape[1:])
    baseline_r = float(pearson_per_sample(mean_vol, torch.from_numpy(val)).mean())
    assert np.isfinite(float(trainer.callback_metrics["val/ssim"]))
    assert_logs_declared(trainer, module)
    return model_r, baseline_r


def test_learns_planted_blobs_small() -> None:
    model_r, baseline_r = _learn(n_train=192, epochs=12)
    print(f"planted blobs: model r={model_r:.3f}, training-mean baseline r={baseline_r:.3f}")
    assert model_r > 0.5 and model_r > baseline_r + 0.1, (model_r, baseline_r)


@pytest.mark.slow
def test_learns_planted_blobs() -> None:
    model_r, baseline_r = _learn(n_train=512, epochs=20)
    print(f"planted blobs: model r={model_r:.3f}, training-mean baseline r={baseline_r:.3f}")
    assert model_r > 0.7 and model_r > baseline_r + 0.2, (model_r, baseline_r)


@pytest.mark.parametrize("spec", [VolumeSpec(shape=(46, 55, 46), voxel_mm=4.0),
                                  pytest.param(VolumeSpec(shape=(91, 109, 91), voxel_mm=2.0), marks=pytest.mark.slow)],
                         ids=["mni4mm", "mni2mm"])
def test_builds_at_mni_grids(spec: VolumeSpec) -> None:
    module = base.build("vae3d", spec, {"depth": 3, "base_channels": 4, "latent_dim": 8}).eval()
    with torch.no_grad():
        assert module(module.example_input(1)).shape == (1, 1, *spec.shape)
