"""The export's exact re-formulations (neuroray.export.rewrites): same outputs as the trained module, applied only
where their preconditions hold, named in the ONNX file and the model card, and cheaper where they claim to be."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from neuroray.datasets.spec import EEGWindowSpec
from neuroray.export.inference import OnnxModel
from neuroray.export.rewrites import SpatialFirstFront, WideConv1d, for_inference
from neuroray.export.to_onnx import PARITY_TOL, export_module, parity
from neuroray.trainables import base

WIDE = EEGWindowSpec(n_chans=64, n_times=200, sfreq=100.0)


def _trained_like(encoder: str, spec: EEGWindowSpec = WIDE) -> base.Task:
    """A module whose BatchNorms carry non-trivial running statistics and affine terms, as after training:
    folding them is what the EEGNeX rewrite must get right (fresh BNs are the identity)."""
    torch.manual_seed(0)
    module = base.build("eeg_regressor", spec, {"encoder": encoder}, "y")
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) * 2 - 1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) - 0.5)
    return module.eval()


@pytest.mark.parametrize(("encoder", "rewrite", "kind"), [("eegnex", "eegnex-spatial-first", SpatialFirstFront),
                                                           ("shallow", "wide-conv1d-as-conv2d", WideConv1d),
                                                           ("conv", "wide-conv1d-as-conv2d", WideConv1d)])
def test_rewrite_computes_the_same_function(encoder: str, rewrite: str, kind: type) -> None:
    module = _trained_like(encoder)
    fast, applied = for_inference(module)
    assert applied == [rewrite] and any(isinstance(m, kind) for m in fast.modules())
    assert not any(isinstance(m, kind) for m in module.modules())  # the caller's module is untouched
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((5, 64, 200)).astype(np.float32))
    with torch.no_grad():
        want, got = module(x), fast(x)
    assert want.abs().max() > 1e-2  # a real output, not a collapsed one
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_eegnex_front_does_a_small_fraction_of_the_multiply_adds() -> None:
    fast, _ = for_inference(_trained_like("eegnex"))
    front = next(m for m in fast.modules() if isinstance(m, SpatialFirstFront))
    original = base.build("eeg_regressor", WIDE, {"encoder": "eegnex"}, "y").encoder

    def macs(conv: nn.Conv2d, rows: int) -> int:  # per window, 'same' time padding: T output samples per row
        return conv.weight.numel() * rows * WIDE.n_times

    before = macs(original.block_1[1], 64) + macs(original.block_2[0], 64) + macs(original.block_3[0], 1)
    after = macs(front.spatial, 1) + macs(front.temporal1, 1) + macs(front.temporal2, 1)
    assert after * 10 < before, (after, before)


def test_no_rewrite_where_the_preconditions_fail() -> None:
    module = _trained_like("conv", EEGWindowSpec(n_chans=8, n_times=200, sfreq=100.0))  # 8 channels: narrow
    assert for_inference(module)[1] == []
    nex = _trained_like("eegnex")
    nex.encoder.block_3[0].padding = (1, 0)  # a spatial conv that pads rows: the sums no longer commute
    assert for_inference(nex)[1] == []


def test_export_names_the_rewrite_and_keeps_parity(tmp_path: Path) -> None:
    module = _trained_like("eegnex")
    path = export_module(module, tmp_path / "model.onnx")
    model = OnnxModel(path, threads=1)
    assert model.rewrites == ["eegnex-spatial-first"] and model.settings()["graph_rewrites"] == model.rewrites
    x = np.random.default_rng(3).standard_normal((9, 64, 200)).astype(np.float32)
    assert parity(module, path, x) <= PARITY_TOL
    plain = OnnxModel(export_module(module, tmp_path / "plain.onnx", rewrite=False))
    assert plain.rewrites == []
    np.testing.assert_allclose(model(x), plain(x), rtol=1e-4, atol=1e-5)
