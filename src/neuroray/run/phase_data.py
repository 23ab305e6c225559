"""Phases that read their own shard set (``phases[].data``): which sets an experiment reads besides its
``data``, the checks each needs before Ray starts, and the encoder chain across sets.

The final phase always reads the experiment's ``data`` (its checkpoints are tested, folded and exported on
it); an earlier phase, e.g. masked pretraining on every task's windows, may read another set. A phase that
starts ``from`` a phase of another set must be able to take that phase's encoder: same channels and rate,
and every encoder tensor of the same shape (which decides how far the window length may differ). Imports
no Ray.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from neuroray.datasets.shards import ShardSet, open_shard_set
from neuroray.datasets.spec import Spec
from neuroray.errors import ConfigError
from neuroray.run.loop_config import PHASE_SET_PREFIX
from neuroray.run.preflight import check_shard_set
from neuroray.search_spaces.experiment import LoadedExperiment
from neuroray.search_spaces.schema import Data, Phase
from neuroray.trainables import base as registry

__all__ = ["PhaseSet", "phase_sets", "check_chains", "open_phase_sets", "KEY_PREFIX"]

KEY_PREFIX = PHASE_SET_PREFIX  # Ray dataset keys of a phase's own set: phase-set-<i>/train, phase-set-<i>/val


@dataclass
class PhaseSet:
    """One shard set some phase reads instead of the experiment's data: its dataset-key prefix, its data
    block, and the phases (``arm: phase``) that read it."""

    key: str
    data: Data
    readers: list[str] = field(default_factory=list)


def phase_sets(loaded: LoadedExperiment) -> dict[str, PhaseSet]:
    """Every other shard set the resolved arms' phases read, by root (an arm may point a phase elsewhere)."""
    default = Path(loaded.model.data.shards)
    out: dict[str, PhaseSet] = {}
    for arm in loaded.arms:
        for phase in loaded.resolve(arm, loaded.model.matrix.seed[0]).phases:
            if phase.data is None or Path(phase.data.shards) == default:
                continue
            root = str(Path(phase.data.shards))
            entry = out.setdefault(root, PhaseSet(f"{KEY_PREFIX}{len(out)}", phase.data))
            if entry.data != phase.data:
                raise ConfigError(f"{loaded.source}: phases.{phase.name}.data (arm {arm}): {root} is read with "
                                  "other prepare/verify/cache settings by another arm or phase; give it one")
            entry.readers.append(f"{arm}: {phase.name}")
    return out


def open_phase_sets(loaded: LoadedExperiment, sets: dict[str, PhaseSet], only_existing: bool = False,
                    verify: str | None = None) -> dict[str, ShardSet]:
    """Open (``only_existing``: only those already there), verify and check each phase set; errors name the
    first phase that reads it."""
    opened: dict[str, ShardSet] = {}
    for root, entry in sets.items():
        if only_existing and not (Path(root) / "manifest.json").is_file():
            continue
        name = entry.readers[0].split(": ", 1)[1]
        if not (Path(root) / "manifest.json").is_file():
            raise ConfigError(f"phases.{name}.data.shards: {root} has no shard set and that data block has no "
                              "prepare; run `neuroray prepare ...` first or add prepare")
        shard_set = open_shard_set(Path(root), verify=verify or entry.data.verify)
        check_shard_set(loaded, shard_set, data=entry.data, key=f"phases.{name}.data")
        opened[root] = shard_set
    return opened


def _sizes(spec: Spec) -> str:
    return ", ".join(f"{k}={v}" for k, v in vars(spec).items() if not isinstance(v, tuple | list))


def _encoder_shapes(phase: Phase, spec: Spec) -> dict[str, tuple[int, ...]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.device("meta"):
                module = registry.build(phase.trainable, spec, phase.hparams, target=phase.target_arg)
        except ConfigError:
            raise
        except Exception:  # noqa: BLE001 - a layer without a meta kernel: build it for real
            module = registry.build(phase.trainable, spec, phase.hparams, target=phase.target_arg)
    return {k: tuple(v.shape) for k, v in module.state_dict().items() if k.startswith("encoder.")}


def check_chains(loaded: LoadedExperiment, default: ShardSet, opened: dict[str, ShardSet]) -> None:
    """Each phase that starts ``from`` a phase of another shard set can take its encoder; else one line naming
    both phases and their windows."""
    root = Path(loaded.model.data.shards)
    for arm in loaded.arms:
        phases = {p.name: p for p in loaded.resolve(arm, loaded.model.matrix.seed[0]).phases}

        def spec_of(p: Phase) -> tuple[str, Spec]:
            where = root if p.data is None or Path(p.data.shards) == root else Path(p.data.shards)
            return str(where), (default if where == root else opened[str(where)]).spec

        for phase in phases.values():
            if phase.from_ is None:
                continue
            source = phases[phase.from_]
            (a_root, a), (b_root, b) = spec_of(source), spec_of(phase)
            if a_root == b_root:
                continue
            arm_text = f" (arm {arm})" if len(loaded.arms) > 1 else ""
            head = (f"{loaded.source}: phases.{phase.name}.from{arm_text}: {phase.name!r} reads {_sizes(b)} "
                    f"({b_root}) but starts from {source.name!r}, which reads {_sizes(a)} ({a_root})")
            if a.modality != b.modality or getattr(a, "n_chans", None) != getattr(b, "n_chans", None) or \
                    getattr(a, "sfreq", None) != getattr(b, "sfreq", None):
                raise ConfigError(f"{head}; chained phases need the same channels and sampling rate")
            have, want = _encoder_shapes(source, a), _encoder_shapes(phase, b)
            differ = [k for k in want if k in have and have[k] != want[k]]
            if differ or not set(want) & set(have):
                raise ConfigError(f"{head}; its encoder cannot take that encoder's weights ({len(differ)} tensors "
                                  f"differ in shape, e.g. {differ[0] if differ else 'no tensor in common'})")
