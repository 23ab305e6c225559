"""braindecode's EEG models as encoders of ``eeg_regressor``, built from the EEGWindowSpec vocabulary.

Each model is braindecode's own, instantiated with ``n_chans``/``n_times``/``sfreq`` (and channel
positions where it needs them) and ending in its own head with ``n_outputs``; nothing is re-implemented.
``import braindecode.models`` takes seconds, so it happens inside :func:`build`, never at module import.

Left out on purpose:
- ``Labram`` itself: forward needs names from its fixed 10-20 order (HBN's E1..E129 are not in it);
  ``labram`` below is braindecode's ``InterpolatedLaBraM``, which maps any located montage onto that order.
- ``SignalJEPA_Contextual``: its ONNX graph fails in onnxruntime (ScatterND) at a batch size other than the traced one.
- ``SignalJEPA`` (the base): an SSL pre-training backbone with no prediction head.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch
from torch import nn

from neuroray.datasets.spec import EEGWindowSpec
from neuroray.errors import ConfigError

#: encoder name (the ``encoder`` hparam) → braindecode.models class name
MODELS: dict[str, str] = {
    "eegnex": "EEGNeX",
    "eegnet": "EEGNet",
    "shallowfbcsp": "ShallowFBCSPNet",
    "deep4": "Deep4Net",
    "signaljepa_prelocal": "SignalJEPA_PreLocal",
    "labram": "InterpolatedLaBraM",
}

LABRAM_MAX_PATCH = 200  # LaBraM's published patch: 1 s at 200 Hz


def _zoo() -> ModuleType:
    """``braindecode.models``, imported on first use; hides only its montage-rename FutureWarning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Montage name 'standard_1020' is deprecated", category=FutureWarning)
        import braindecode.models as zoo
    return zoo


def _chs_info(spec: EEGWindowSpec) -> list[dict[str, Any]]:
    """MNE channel infos (with 3-D positions) for ``spec.ch_names`` from the first standard montage holding all."""
    import mne

    if not spec.ch_names:
        raise ConfigError("encoder 'labram' needs channel names with scalp positions; the shard set has no ch_names. "
                          "Choose another encoder or prepare the data with named channels.")
    wanted = {name.lower() for name in spec.ch_names}
    builtin = set(mne.channels.get_builtin_montages())
    candidates = ["GSN-HydroCel-129", "colin27_1005" if "colin27_1005" in builtin else "standard_1005"]
    missing: dict[str, list[str]] = {}
    with mne.utils.use_log_level("WARNING"):
        for kind in candidates:
            montage = mne.channels.make_standard_montage(kind)
            names = {name.lower() for name in montage.ch_names}
            if wanted <= names:
                info = mne.create_info(list(spec.ch_names), spec.sfreq, "eeg")
                info.set_montage(montage, match_case=False)
                return list(info["chs"])
            missing[kind] = [name for name in spec.ch_names if name.lower() not in names]
    closest = min(missing, key=lambda kind: len(missing[kind]))
    raise ConfigError(f"encoder 'labram' needs every channel's scalp position, but no montage of "
                      f"{', '.join(candidates)} holds all channel names (closest, {closest}, lacks "
                      f"{', '.join(missing[closest][:5])}: {len(missing[closest])} of {spec.n_chans}); "
                      "rename the channels or choose another encoder.")


def _labram_kwargs(spec: EEGWindowSpec) -> dict[str, Any]:
    # The patch must divide the window: the largest divisor of n_times up to LaBraM's 200 samples.
    patch = max(d for d in range(1, min(spec.n_times, LABRAM_MAX_PATCH) + 1) if spec.n_times % d == 0)
    return {"chs_info": _chs_info(spec), "patch_size": patch}


_EXTRA: dict[str, Callable[[EEGWindowSpec], dict[str, Any]]] = {
    # the linear (max-norm) head; the conv head is deprecated in braindecode 1.8
    "eegnet": lambda spec: {"final_layer_with_constraint": True},
    "labram": _labram_kwargs,
}


def build(name: str, spec: EEGWindowSpec, n_outputs: int = 1, drop_prob: float | None = None) -> nn.Module:
    """braindecode model ``name`` for windows of ``spec``, mapping (batch, n_chans, n_times) → (batch, n_outputs).

    Fails with a :class:`ConfigError` naming the encoder and the window when the model cannot take it.
    """
    if name not in MODELS:
        raise ConfigError(f"unknown braindecode encoder {name!r}; available: {', '.join(MODELS)}")
    kwargs: dict[str, Any] = {"n_chans": spec.n_chans, "n_times": spec.n_times, "sfreq": spec.sfreq,
                              "n_outputs": n_outputs}
    if drop_prob is not None:
        kwargs["drop_prob"] = drop_prob
    if name in _EXTRA:
        kwargs.update(_EXTRA[name](spec))
    window = f"{spec.n_chans} channels x {spec.n_times} samples at {spec.sfreq:g} Hz"
    zoo = _zoo()
    import mne

    try:
        with mne.utils.use_log_level("WARNING"):
            model: nn.Module = getattr(zoo, MODELS[name])(**kwargs)
        _check_output(model, spec, n_outputs)
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"encoder {name!r} ({MODELS[name]}) cannot take windows of {window}: {e}. "
                          "Use longer windows or another encoder.") from e
    return model


def _check_output(model: nn.Module, spec: EEGWindowSpec, n_outputs: int) -> None:
    """One dry forward now, so a window too short for the model fails at build time, not mid-training."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(2, spec.n_chans, spec.n_times))
    model.train(was_training)
    if out.numel() != 2 * n_outputs:
        raise ValueError(f"output shape {tuple(out.shape)} is not (batch, {n_outputs})")
