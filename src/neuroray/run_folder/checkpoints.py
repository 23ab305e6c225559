"""A trial's checkpoint folder: ``model.pt`` (tensors only), ``meta.json`` (what rebuilds the module),
``lightning.ckpt`` (optimizer and loop state). Written by the train loop, read by export, submission and
``--resume``; it imports no Ray.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch

from neuroray.datasets.spec import spec_from_dict
from neuroray.errors import NeurorayError
from neuroray.outputs import publish_dir
from neuroray.trainables import base as registry

__all__ = ["CKPT_WEIGHTS", "CKPT_META", "CKPT_LIGHTNING", "save_checkpoint", "load_checkpoint", "save_phase",
           "load_phase_state"]

CKPT_WEIGHTS = "model.pt"
CKPT_META = "meta.json"
CKPT_LIGHTNING = "lightning.ckpt"  # optimizer + loop state: a restarted trial continues at the next epoch


def save_checkpoint(folder: Path, module: registry.Task, phase: dict[str, Any], spec: dict[str, Any],
                    metrics: dict[str, Any]) -> None:
    """Write ``module``'s weights and the meta that rebuilds it (trainable, hparams, target, phase, spec)."""
    torch.save(module.state_dict(), folder / CKPT_WEIGHTS)
    meta = {"trainable": module.name, "hparams": dict(module.hparams), "target": module.target,
            "phase": phase["name"], "spec": spec, "metrics": metrics}
    (folder / CKPT_META).write_text(json.dumps(meta, indent=2, default=str))


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors only (``weights_only=True``): a file that would run pickled code is refused, not loaded."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise NeurorayError(f"{path}: refused: it holds pickled objects, not only tensors "
                            "(loaded with weights_only=True)") from None


def load_checkpoint(folder: str | Path) -> registry.Task:
    """Rebuild the module a checkpoint came from; weights load with ``weights_only=True``."""
    folder = Path(folder)
    meta = json.loads((folder / CKPT_META).read_text())
    spec = spec_from_dict(meta["spec"]["modality"], meta["spec"]["spec"])
    # encoder_weights: the checkpoint holds the trained weights; the file it started from may be gone
    hparams = {k: v for k, v in meta["hparams"].items() if k not in ("trainable", "target", "encoder_weights")}
    module = registry.build(meta["trainable"], spec, hparams, target=meta["target"])
    module.load_state_dict(_load_weights(folder / CKPT_WEIGHTS))
    return module.eval()


def save_phase(folder: Path, module: registry.Task, phase: dict[str, Any], spec: dict[str, Any],
               metrics: dict[str, Any]) -> None:
    """A finished phase's weights at ``folder`` (written beside it, then renamed: never half there)."""
    publish_dir(folder, lambda tmp: save_checkpoint(tmp, module, phase, spec, metrics))


def load_phase_state(folder: Path) -> dict[str, torch.Tensor] | None:
    """A finished phase's weights, or None when the folder holds no complete checkpoint."""
    weights = folder / CKPT_WEIGHTS
    if not (weights.is_file() and (folder / CKPT_META).is_file()):
        return None
    return _load_weights(weights)
