"""The contract between a trial and the train loop: built once per trial (``tune.loop_config``), shipped to
the trial actor or each Ray Train worker as a plain dict, parsed back once by ``train.run_phases``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from neuroray.datasets.spec import Spec, spec_from_dict
from neuroray.search_spaces.schema import Phase

__all__ = ["SpecRef", "TargetStats", "LoopConfig"]


class SpecRef(BaseModel):
    """A shard set's sample spec as its manifest records it."""

    modality: str
    spec: dict[str, Any]

    def build(self) -> Spec:
        """The spec object."""
        return spec_from_dict(self.modality, self.spec)


class TargetStats(BaseModel):
    """Train-split mean and std of a numeric target (regressors train on the standardized scale)."""

    model_config = ConfigDict(extra="ignore")
    mean: float
    std: float


PHASE_SET_PREFIX = "phase-set-"  # Ray dataset keys of a phase's own shard set: phase-set-<i>/train, …/val


class PhaseData(BaseModel):
    """A phase that reads its own shard set: the Ray dataset keys' prefix (``<key>/train``), its windows and
    its targets' train-split statistics."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    key: str
    spec: SpecRef
    target_stats: dict[str, TargetStats] = {}
    sources: int = 1  # a mixture's source count: each is also validated on its own


class LoopConfig(BaseModel):
    """Everything one trial's train loop needs: the resolved phases, the spec, seed, metric and mode, where
    TensorBoard logs and finished phases go, torch threads, and the targets' train-split statistics."""

    model_config = ConfigDict(extra="ignore", frozen=True)  # a benchmark's loop may ride extra keys along

    phases: list[Phase]
    spec: SpecRef
    seed: int
    metric: str
    mode: str
    tensorboard_dir: str | None = None
    trial_name: str = "trial"
    threads: float = 1.0  # resources.cpus_per_worker; torch gets at least one thread
    precision: str = "32-true"  # resources.precision, Lightning's Trainer(precision=...)
    target_stats: dict[str, TargetStats] = {}
    phase_dir: str | None = None
    progress_s: float = 60.0  # a progress line this often inside an epoch (0 = none)
    train_rows: int | None = None  # rows of the train split, when known (the first epoch's batch total)
    phase_data: dict[str, PhaseData] = {}  # phase name → its own shard set (phases[].data)
    # what trials are compared by (arm, seed, fold, search params): TensorBoard's HParams session of the trial
    hparams: dict[str, str | int | float | bool] = {}

    @classmethod
    def parse(cls, cfg: LoopConfig | Mapping[str, Any]) -> LoopConfig:
        """``cfg`` as a LoopConfig (Ray ships it as a dict)."""
        return cfg if isinstance(cfg, LoopConfig) else cls.model_validate(dict(cfg))

    def to_ray(self) -> dict[str, Any]:
        """A plain dict for Ray (``train_loop_config`` must be one)."""
        return self.model_dump(by_alias=True)

    def phase_dict(self, i: int) -> dict[str, Any]:
        """Phase ``i`` as checkpoints record it (``meta.json``)."""
        return self.phases[i].model_dump(by_alias=True)

    def spec_dict(self) -> dict[str, Any]:
        """The spec as checkpoints record it."""
        return self.spec.model_dump()
