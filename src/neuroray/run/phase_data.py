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

from neuroray.datasets.locations import is_uri
from neuroray.datasets.shards import ShardSet, open_shard_set, shards_exist
from neuroray.datasets.spec import Spec
from neuroray.errors import ConfigError
from neuroray.run.loop_config import PHASE_SET_PREFIX
from neuroray.run.preflight import check_shard_set
from neuroray.search_spaces.experiment import LoadedExperiment
from neuroray.search_spaces.schema import Data, Phase
from neuroray.trainables import base as registry

__all__ = ["PhaseSet", "PhaseInput", "phase_sets", "check_chains", "check_mixes", "open_phase_sets", "phase_inputs",
           "existing_phase_sets", "describe", "data_id", "KEY_PREFIX"]

KEY_PREFIX = PHASE_SET_PREFIX  # Ray dataset keys of a phase's own set: phase-set-<i>/train, phase-set-<i>/val


@dataclass
class PhaseSet:
    """One shard set (or mixture, ``data.mix``) some phase reads instead of the experiment's data: its
    dataset-key prefix, its data block, and the phases (``arm: phase``) that read it."""

    key: str
    data: Data
    readers: list[str] = field(default_factory=list)

    @property
    def first(self) -> str:
        """The first reader's phase name (errors name it)."""
        return self.readers[0].split(": ", 1)[1]

    def source_key(self, i: int) -> str:
        """The file key of source ``i`` (``phases.<name>.data`` or ``….data.mix[i]``)."""
        return f"phases.{self.first}.data" + (f".mix[{i}]" if self.data.mix else "")


@dataclass(frozen=True)
class PhaseInput:
    """What the run hands Tune for one phase set: its key, opened sources, mix weights (None: one set), cache."""

    key: str
    sets: list[ShardSet]
    weights: list[float] | None
    cache: str


def data_id(data: Data) -> str:
    """A data block's identity: its source roots (one for a plain set)."""
    return " + ".join(s.root for s in data.sources)


def phase_sets(loaded: LoadedExperiment) -> dict[str, PhaseSet]:
    """Every other shard set or mixture the resolved arms' phases read, by ``data_id`` (an arm may point a
    phase elsewhere)."""
    default = Path(loaded.model.data.shards)
    out: dict[str, PhaseSet] = {}
    for arm in loaded.arms:
        for phase in loaded.resolve(arm, loaded.model.matrix.seed[0]).phases:
            if phase.data is None or (phase.data.mix is None and Path(phase.data.shards) == default):
                continue
            ident = data_id(phase.data)
            entry = out.setdefault(ident, PhaseSet(f"{KEY_PREFIX}{len(out)}", phase.data))
            if entry.data != phase.data:
                raise ConfigError(f"{loaded.source}: phases.{phase.name}.data (arm {arm}): {ident} is read with "
                                  "other prepare/verify/cache/weight settings by another arm or phase; give it one")
            entry.readers.append(f"{arm}: {phase.name}")
    return out


def open_phase_sets(loaded: LoadedExperiment, sets: dict[str, PhaseSet], only_existing: bool = False,
                    verify: str | None = None) -> dict[str, ShardSet]:
    """Open (``only_existing``: only those already there), verify and check every source of each phase set,
    by root; errors name the first phase that reads it."""
    opened: dict[str, ShardSet] = {}
    for entry in sets.values():
        for i, source in enumerate(entry.data.sources):
            root = source.root
            if root in opened:
                continue
            key = entry.source_key(i)
            if not shards_exist(root):
                if only_existing and not is_uri(root):
                    continue
                raise ConfigError(f"{key}.shards: {root} has no shard set and that data block has no prepare; "
                                  "run `neuroray prepare ...` first or add prepare")
            shard_set = open_shard_set(root, verify=verify or source.verify)
            check_shard_set(loaded, shard_set, data=source, key=key)
            opened[root] = shard_set
    return opened


def check_mixes(loaded: LoadedExperiment, sets: dict[str, PhaseSet], opened: dict[str, ShardSet]) -> None:
    """Every source of a mixture holds windows of one spec; else one line naming both sources."""
    for entry in sets.values():
        if not entry.data.mix:
            continue
        first = opened[entry.data.mix[0].root]
        for i, source in enumerate(entry.data.mix[1:], start=1):
            other = opened[source.root]
            if (first.manifest["modality"], first.spec.sample_shape, getattr(first.spec, "sfreq", None)) != \
                    (other.manifest["modality"], other.spec.sample_shape, getattr(other.spec, "sfreq", None)):
                raise ConfigError(f"{loaded.source}: {entry.source_key(i)}: {other.root} holds {_sizes(other.spec)}, "
                                  f"but mix[0] {first.root} holds {_sizes(first.spec)}; a mixture reads one spec "
                                  "(prepare both with the same --channels, --sfreq and window)")


def phase_inputs(sets: dict[str, PhaseSet], opened: dict[str, ShardSet]) -> dict[str, PhaseInput]:
    """``data_id`` → what Tune reads for that phase set."""
    return {ident: PhaseInput(entry.key, [opened[s.root] for s in entry.data.sources],
                              [m.weight for m in entry.data.mix] if entry.data.mix else None, entry.data.cache)
            for ident, entry in sets.items()}


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
            if p.data is None or (p.data.mix is None and Path(p.data.shards) == root):
                return str(root), default.spec
            return data_id(p.data), opened[p.data.sources[0].root].spec

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


def existing_phase_sets(loaded: LoadedExperiment, sets: dict[str, PhaseSet], default: ShardSet | None,
                        verify: str | None = None) -> dict[str, ShardSet]:
    """Open and check the phase sets already there (before Ray starts); once the experiment's set and every
    source exist, the mixtures' specs and the encoder chain are checked too."""
    opened = open_phase_sets(loaded, sets, only_existing=True, verify=verify)
    if default is not None and all(src.root in opened for ps in sets.values() for src in ps.data.sources):
        check_mixes(loaded, sets, opened)
        check_chains(loaded, default, opened)
    return opened


def describe(sets: dict[str, PhaseSet], opened: dict[str, ShardSet]) -> str:
    """``; <arm: phase> read <set>`` per phase set, saying which are not prepared yet (``neuroray validate``)."""
    return "".join(f"; {', '.join(ps.readers)} read {ident}" + (
        "" if all(src.root in opened for src in ps.data.sources) else " (not prepared yet)")
        for ident, ps in sets.items())
