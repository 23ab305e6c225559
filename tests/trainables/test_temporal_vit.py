"""``temporal_vit``: build, step, export, and learn a planted gamma-band genotype effect."""

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

TINY = SpectrogramSpec(n_trials=3, n_freqs=8, n_frames=8)
TINY_HP = {"embed_dim": 16, "depth": 2, "n_heads": 2, "freq_patch": 4, "time_patch": 4}


def _build(spec: SpectrogramSpec = TINY, **hparams: object) -> base.Task:
    return base.build("temporal_vit", spec, {**TINY_HP, **hparams})


def test_registered_with_its_monitor() -> None:
    cls = base.get("temporal_vit")
    assert (cls.modality, cls.monitor, cls.mode) == ("spectrogram", "val/auroc", "max")


def test_tiny_input_step_is_finite() -> None:
    torch.manual_seed(0)
    module = _build(class_weights="1,2", label_smoothing=0.1, drop_path=0.2)
    batch = {"x": torch.randn(4, *TINY.shape), "label": torch.tensor([0, 1, 1, 0])}
    assert all(step_changes(module, batch))
    assert module(batch["x"]).shape == (4, 2)
    assert module(batch["x"][:1]).shape == (1, 2)


def test_padding_handles_patches_that_do_not_divide() -> None:
    spec = SpectrogramSpec(n_trials=2, n_freqs=10, n_frames=7)
    module = _build(spec, pad_to_patch=True, n_classes=3).eval()
    with torch.no_grad():
        assert module(torch.randn(2, *spec.shape)).shape == (2, 3)


@pytest.mark.parametrize(("hparams", "message"), [
    ({"freq_patch": 3}, r"hparams.freq_patch: 3 does not divide 8; choose one of \[1, 2, 4, 8\] or set hparams.pad_to_patch"),
    ({"time_patch": 16, "pad_to_patch": True}, r"hparams.time_patch: 16 is larger than the axis it patches \(8\)"),
    ({"trial_patch": 2}, r"hparams.trial_patch: 2 does not divide 3"),
    ({"class_weights": "1,x"}, r"hparams.class_weights: '1,x' is not comma-separated numbers"),
    ({"class_weights": "1,2,3"}, r"hparams.class_weights: 3 weights given for n_classes=2"),
    ({"class_weights": "1,0"}, r"hparams.class_weights: every weight must be > 0"),
    ({"embed_dim": 15}, r"hparams.embed_dim: 15 is not divisible by n_heads=2"),
    ({"label_smoothing": 1.0}, r"hparams.label_smoothing: 1.0 must be >= 0 and < 1"),
])
def test_bad_hparams_fail_at_build_naming_the_hparam(hparams: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _build(**hparams)


def test_onnx_export_parity_with_dynamic_batch(tmp_path: Path) -> None:
    from neuroray.export.to_onnx import PARITY_TOL, export_module, parity

    torch.manual_seed(0)
    spec = SpectrogramSpec(n_trials=2, n_freqs=10, n_frames=8)  # padded freq axis goes through export too
    module = _build(spec, pad_to_patch=True).eval()
    path = export_module(module, tmp_path / "model.onnx")  # traced at batch 2
    x = np.random.default_rng(1).standard_normal((3, *spec.shape)).astype(np.float32)
    diff = parity(module, path, x)
    assert diff <= PARITY_TOL, diff


def genotype_sequences(n_sessions: int, per_session: int, spec: SpectrogramSpec, effect: float, seed: int,
                       bin_hz: float = 4.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-power spectrogram sequences; knock-out sessions (odd ids) carry extra 30–50 Hz power.

    Rows are ``bin_hz`` bins from 0 Hz. Each session has its own gain (an offset in log power, larger than the
    effect) and each trial its own smaller gain, so a model must compare bands, not read absolute level.
    """
    rng = np.random.default_rng(seed)
    freqs = np.arange(spec.n_freqs) * bin_hz
    gamma = (freqs >= 30) & (freqs <= 50)
    background = -np.log1p(freqs)[None, :, None]  # 1/f-like slope
    xs, ys, sessions = [], [], []
    for s in range(n_sessions):
        label = s % 2
        session_gain = rng.normal(0.0, 1.5)
        for _ in range(per_session):
            trial_gain = rng.normal(0.0, 0.3, size=(spec.n_trials, 1, 1))
            x = background + session_gain + trial_gain + rng.normal(0.0, 1.0, size=spec.shape)
            x[:, gamma, :] += effect * label
            xs.append(x)
            ys.append(label)
            sessions.append(s)
    return np.asarray(xs, dtype=np.float32), np.asarray(ys), np.asarray(sessions)


@pytest.fixture
def one_thread() -> Iterator[None]:
    # These tiny models spend more time synchronizing threads than computing when the shared
    # 2-core machine is busy; one thread is several times faster here and leaves the other core free.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


HPARAMS = {"embed_dim": 32, "depth": 2, "n_heads": 4, "freq_patch": 4, "time_patch": 8, "lr": 2e-3,
           "drop_path": 0.05, "weight_decay": 0.05, "label_smoothing": 0.05}


def _fit(n_sessions: int, per_session: int, epochs: int, effect: float) -> float:
    spec = SpectrogramSpec(n_trials=4, n_freqs=16, n_frames=8)  # 4 Hz bins: 0-60 Hz, gamma is rows 8-12
    x, y, session = genotype_sequences(n_sessions, per_session, spec, effect=effect, seed=0)
    val = session >= n_sessions - 6  # whole sessions held out: both genotypes, never seen in training

    def loader(mask: np.ndarray, shuffle: bool) -> torch.utils.data.DataLoader:
        rows = [{"x": torch.from_numpy(a), "label": torch.tensor(b)} for a, b in zip(x[mask], y[mask], strict=True)]
        return torch.utils.data.DataLoader(rows, batch_size=32, shuffle=shuffle)  # type: ignore[arg-type]

    L.seed_everything(0)
    module = base.build("temporal_vit", spec, HPARAMS)
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(module, loader(~val, True), loader(val, False))
    assert np.isfinite(float(trainer.callback_metrics["val/loss"]))
    assert_logs_declared(trainer, module)
    assert 0.0 <= float(trainer.callback_metrics["val/f1"]) <= 1.0
    return float(trainer.callback_metrics["val/auroc"])


@pytest.mark.usefixtures("one_thread")
def test_learns_planted_gamma_genotype_on_held_out_sessions() -> None:
    # The trivial baseline (the training majority class for everyone, or any label-blind score) has AUROC 0.5.
    auroc = _fit(n_sessions=20, per_session=20, epochs=10, effect=0.6)
    assert auroc > 0.85, auroc


@pytest.mark.usefixtures("one_thread")
def test_learns_a_weaker_gamma_effect_from_more_sessions() -> None:
    auroc = _fit(n_sessions=40, per_session=30, epochs=15, effect=0.4)
    assert auroc > 0.85, auroc


def _manual_rollout(module: base.Task, x: torch.Tensor) -> torch.Tensor:
    """Rollout recomputed from each attention layer's input (captured by hooks), written out independently."""
    from neuroray.trainables.models.vit import Attention

    seen: list[torch.Tensor] = []
    layers = [m for m in module.modules() if isinstance(m, Attention)]
    hooks = [a.register_forward_pre_hook(lambda _m, args: seen.append(args[0])) for a in layers]
    with torch.no_grad():
        module.eval()(x)
    for h in hooks:
        h.remove()
    b, n, d = seen[0].shape
    joint = torch.eye(n).repeat(b, 1, 1)
    for a, inp in zip(layers, seen, strict=True):
        q, k, _ = a.qkv(inp).chunk(3, dim=-1)
        heads = a.n_heads
        q = q.reshape(b, n, heads, -1).transpose(1, 2)
        k = k.reshape(b, n, heads, -1).transpose(1, 2)
        attn = torch.softmax(q @ k.transpose(-1, -2) / (d // heads) ** 0.5, dim=-1).mean(dim=1)
        aug = (attn + torch.eye(n)) / 2
        joint = torch.bmm(aug / aug.sum(-1, keepdim=True), joint)
    return joint[:, 0, 1:] / joint[:, 0, 1:].sum(-1, keepdim=True)


def test_attention_rollout_matches_its_definition_and_leaves_the_model_as_it_was() -> None:
    torch.manual_seed(0)
    module = _build(depth=3).eval()
    x = torch.randn(5, *TINY.shape)
    with torch.no_grad():
        before = module(x)
    maps = module.attention_rollout(x)  # type: ignore[operator]
    assert maps.shape == (5, 3, 2, 2)  # (trial, freq, time) tokens: 3 trials, 8/4 freqs, 8/4 frames
    assert torch.allclose(maps.sum(dim=(1, 2, 3)), torch.ones(5), atol=1e-5)
    assert torch.allclose(maps.flatten(1), _manual_rollout(module, x), atol=1e-5)
    with torch.no_grad():
        assert torch.equal(module(x), before)  # recording attention changed no output
    assert all(not a.keep and a.kept is None for a in module.net.blocks.modules() if hasattr(a, "keep"))


def test_attention_rollout_is_uniform_when_every_token_attends_alike() -> None:
    module = _build().eval()
    for block in module.net.blocks:  # q = k = 0: every attention row is uniform
        torch.nn.init.zeros_(block.attn.qkv.weight)
        torch.nn.init.zeros_(block.attn.qkv.bias)
    maps = module.attention_rollout(torch.randn(2, *TINY.shape))  # type: ignore[operator]
    assert torch.allclose(maps, torch.full_like(maps, 1 / 12), atol=1e-6)


@pytest.mark.parametrize("trainable, hparams", [("temporal_vit", TINY_HP), ("spectrogram_cnn", {"width": 4})])
def test_n_trials_reads_only_the_first_trials(trainable: str, hparams: dict[str, object]) -> None:
    """``hparams.n_trials`` (lfp/ntrials_matrix's arms): the model sees the first n trials of each sequence."""
    torch.manual_seed(0)
    module = base.build(trainable, TINY, {**hparams, "n_trials": 2}).eval()
    x = torch.randn(3, *TINY.shape)
    changed = x.clone()
    changed[:, 2] += 5.0  # the third trial, beyond n_trials
    with torch.no_grad():
        assert torch.equal(module(x), module(changed))
        changed[:, 1] += 5.0  # a trial it reads
        assert not torch.allclose(module(x), module(changed))
