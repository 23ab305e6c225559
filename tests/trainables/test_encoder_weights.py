"""``hparams.encoder_weights``: an EEG task's encoder starts from a local state dict (visuals issue, item 6)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from neuroray.datasets.spec import EEGWindowSpec
from neuroray.errors import ConfigError
from neuroray.trainables import base

SPEC = EEGWindowSpec(n_chans=8, n_times=100, sfreq=100.0)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("whole_task", [False, True], ids=["encoder-state-dict", "task-model-pt"])
def test_weights_saved_from_one_task_start_another(tmp_path: Path, whole_task: bool) -> None:
    torch.manual_seed(0)
    pretrained = base.build("eeg_masked_pretrain", SPEC, {"encoder": "conv", "n_filters": 12})
    with torch.no_grad():
        for p in pretrained.encoder.parameters():
            p.add_(torch.randn_like(p))  # nothing a fresh build could equal
    path = tmp_path / "enc.pt"
    torch.save(pretrained.state_dict() if whole_task else pretrained.encoder.state_dict(), path)
    fresh = base.build("eeg_regressor", SPEC, {"encoder": "conv", "n_filters": 12}, target="y")
    assert not _same(fresh.encoder, pretrained.encoder)
    started = base.build("eeg_regressor", SPEC, {"encoder": "conv", "n_filters": 12, "encoder_weights": str(path)},
                         target="y")
    assert _same(started.encoder, pretrained.encoder)
    report = started.encoder_load
    assert report is not None and set(report.loaded) == set(pretrained.encoder.state_dict()) and not report.left
    assert "loaded" in report.summary() and str(path) in report.summary()


def test_bad_weights_are_one_line(tmp_path: Path) -> None:
    other = base.build("eeg_regressor", SPEC, {"encoder": "conv", "n_filters": 8}, target="y")
    narrow = tmp_path / "narrow.pt"
    torch.save(other.encoder.state_dict(), narrow)
    hp = {"encoder": "conv", "n_filters": 12}
    with pytest.raises(ConfigError, match=r"encoder_weights: .*narrow.pt: shapes differ .*same encoder and n_filters"):
        base.build("eeg_regressor", SPEC, {**hp, "encoder_weights": str(narrow)}, target="y")
    with pytest.raises(ConfigError, match="not found .*nothing is downloaded"):
        base.build("eeg_regressor", SPEC, {**hp, "encoder_weights": str(tmp_path / "none.pt")}, target="y")
    foreign = tmp_path / "foreign.pt"
    torch.save({"conv.weight": torch.zeros(3)}, foreign)
    with pytest.raises(ConfigError, match="none of its 1 tensor names"):
        base.build("eeg_regressor", SPEC, {**hp, "encoder_weights": str(foreign)}, target="y")
    pickled = tmp_path / "code.pt"
    pickled.write_bytes(pickle.dumps({"w": object()}))
    with pytest.raises(ConfigError, match="not a torch state dict of tensors"):
        base.build("eeg_regressor", SPEC, {**hp, "encoder_weights": str(pickled)}, target="y")
