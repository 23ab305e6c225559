"""Every resolved arm's modules built once for the shard set's windows, before Ray starts: a patch larger
than the spectrogram, an encoder whose kernels do not fit a short window, a latent grid that does not fit
the volume fail here as one line naming the file, arm, phase and key, instead of in every trial."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import Any

import torch

from neuroray.datasets.spec import Spec
from neuroray.errors import ConfigError
from neuroray.search_spaces.experiment import LoadedExperiment, probes
from neuroray.search_spaces.schema import Phase
from neuroray.trainables import base as registry

__all__ = ["check_buildable", "Reads"]

Reads = Callable[[Phase], bool]  # which phases read the shard set under check


def _build(phase: Phase, spec: Spec) -> None:
    """Build on the meta device (shapes only, no memory); where an op has no meta kernel, on the CPU."""
    with warnings.catch_warnings():  # torch's notes on meta tensors and padding are not the user's business
        warnings.simplefilter("ignore")
        try:
            with torch.device("meta"):
                registry.build(phase.trainable, spec, phase.hparams, target=phase.target_arg)
            return
        except ConfigError:
            raise
        except Exception:  # noqa: BLE001 - some third-party layer may not run on meta: the CPU decides
            pass
        registry.build(phase.trainable, spec, phase.hparams, target=phase.target_arg)


def _key(message: str, phase: Phase) -> tuple[str, str]:
    """(the key a build error is about, the rest of its message)."""
    head, _, rest = message.partition(": ")
    if head.startswith("hparams.") and rest:
        return head, rest
    return ("hparams.encoder" if "encoder" in (phase.hparams or {}) else "trainable"), message


def _spec_text(spec: Spec) -> str:
    """The spec's sizes (``n_chans=129, n_times=200, sfreq=100.0``); channel names only counted."""
    fields = {k: v for k, v in vars(spec).items() if not k.startswith("_")
              and not (isinstance(v, tuple | list) and any(isinstance(e, str) for e in v))}
    return ", ".join(f"{k}={v}" for k, v in fields.items())


def check_buildable(loaded: LoadedExperiment, spec: Spec, reads: Reads | None = None) -> None:
    """Build each distinct (trainable, hparams, target) of every arm, at every search probe, once (``reads``:
    only the phases that read this shard set)."""
    seen: set[tuple[str, str, str]] = set()
    seed = loaded.model.matrix.seed[0]
    for arm in loaded.arms:
        for params in [{}, *probes(loaded.space())]:
            for phase in loaded.resolve(arm, seed, params).phases:
                if reads is not None and not reads(phase):
                    continue
                key = (phase.trainable, json.dumps(phase.hparams, sort_keys=True, default=str),
                       json.dumps(phase.target_arg))
                if key in seen:
                    continue
                seen.add(key)
                try:
                    _build(phase, spec)
                except Exception as e:  # noqa: BLE001 - any failure to build is this file's to fix
                    text = str(e) if isinstance(e, ConfigError) else f"{type(e).__name__}: {e}"
                    what, why = _key(" ".join(text.split()), phase)
                    value = _value(phase, what)
                    where = f"phases.{phase.name}" + (f" (arm {arm})" if len(loaded.arms) > 1 else "")
                    raise ConfigError(f"{loaded.source}: {where}.{what}{value}: trainable {phase.trainable!r} "
                                      f"cannot be built for the shard set's windows ({_spec_text(spec)}): "
                                      f"{why}"[:600]) from None


def _value(phase: Phase, key: str) -> str:
    name = key.removeprefix("hparams.")
    hp: dict[str, Any] = phase.hparams or {}
    if key.startswith("hparams.") and name in hp:
        return f" {hp[name]!r}"
    return ""
