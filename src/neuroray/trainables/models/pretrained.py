"""Start an encoder from a local state dict (``hparams.encoder_weights: PATH``): pretrained LaBraM or
SignalJEPA weights, or the encoder of an earlier neuroray run's ``model.pt``. Nothing is ever downloaded."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from neuroray.errors import ConfigError

__all__ = ["EncoderLoad", "load_encoder_weights"]


@dataclass(frozen=True)
class EncoderLoad:
    """What ``load_encoder_weights`` did: the file, the encoder tensors it set, those it left as built."""

    path: str
    loaded: tuple[str, ...]
    left: tuple[str, ...]

    def summary(self) -> str:
        """One line for the trial's log."""
        left = f"; left as built: {', '.join(self.left[:8])}{' …' if len(self.left) > 8 else ''}" if self.left else ""
        return f"encoder_weights {self.path}: loaded {len(self.loaded)} tensors{left}"


def _read(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ConfigError(f"hparams.encoder_weights: {path} is a .safetensors file; `pip install safetensors` "
                              "to read it, or save the state dict with torch.save") from None
        return dict(load_file(str(path)))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: no pickled code runs
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        raise ConfigError(f"hparams.encoder_weights: {path} is not a torch state dict of tensors "
                          f"({type(e).__name__}); save one with torch.save(module.state_dict(), PATH)") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):  # a Lightning checkpoint
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"hparams.encoder_weights: {path} holds no mapping of tensor names to tensors")
    return state


def load_encoder_weights(encoder: nn.Module, path: str) -> EncoderLoad:
    """Copy the tensors of ``path`` whose names match ``encoder``'s (an ``encoder.`` prefix, as in a whole
    task's state dict, is dropped) into it; a matching name of another shape, or no match at all, is an error."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"hparams.encoder_weights: {file} not found (a local .pt/.safetensors state dict; "
                          "nothing is downloaded)")
    state = _read(file)
    if any(k.startswith("encoder.") for k in state):
        state = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    own = encoder.state_dict()
    wrong = [f"{k} {tuple(v.shape)} (encoder: {tuple(own[k].shape)})" for k, v in state.items()
             if k in own and own[k].shape != v.shape]
    if wrong:
        raise ConfigError(f"hparams.encoder_weights: {file}: shapes differ from this encoder's: {'; '.join(wrong[:3])}"
                          f"{' …' if len(wrong) > 3 else ''}; was it saved from the same encoder and n_filters?")
    loaded = sorted(k for k in state if k in own)
    if not loaded:
        raise ConfigError(f"hparams.encoder_weights: {file}: none of its {len(state)} tensor names is one of this "
                          f"encoder's (e.g. {next(iter(own), '—')}); was it saved from the same encoder?")
    encoder.load_state_dict({k: state[k] for k in loaded}, strict=False)
    return EncoderLoad(path=str(file), loaded=tuple(loaded), left=tuple(sorted(set(own) - set(loaded))))
