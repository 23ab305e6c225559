"""The experiment file: YAML → validated models. Unknown keys and wrong types fail with one line.

Reading an experiment file should tell what runs: data, phases, matrix (named arms × seeds),
search (Optuna space), scheduler, metric, resources. ``matrix`` and ``search`` stay apart because
Ray's OptunaSearch cannot take grid parameters.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from neuroray.datasets.eeg.options import EEGPrepareOptions
from neuroray.datasets.locations import normalize
from neuroray.datasets.options import PrepareOptions, from_argv
from neuroray.datasets.spectrograms.options import SpectrogramPrepareOptions
from neuroray.datasets.synthetic import SyntheticEEGOptions
from neuroray.datasets.volumes.options import VolumePrepareOptions


class Strict(BaseModel):
    """Base of every schema model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SyntheticEEG(SyntheticEEGOptions):
    """Planted-signal EEG windows written through the real shard writer (datasets/synthetic.py)."""

    kind: Literal["synthetic_eeg"]


class PrepareEEG(EEGPrepareOptions):
    """`neuroray prepare eeg` as data: a BIDS tree (or an HBN-shaped synthetic one written there) → windows.
    The keys are `neuroray prepare eeg`'s flags (datasets/eeg/options.py)."""

    sources: ClassVar[tuple[str, ...]] = ()  # ``bids`` is required; synthetic_hbn writes the tree there
    kind: Literal["eeg"]
    bids: str


class _PrepareByKeys:
    """Files written before typed keys said ``args: [--flag, value, …]``; those still read, as the keys."""

    options: ClassVar[type[PrepareOptions]]

    @model_validator(mode="before")
    @classmethod
    def _legacy_args(cls, data: Any) -> Any:
        if isinstance(data, dict) and "args" in data:
            argv = data["args"]
            if not isinstance(argv, list) or not all(isinstance(a, str | int | float) for a in argv):
                raise ValueError("args: a list of command-line words; better, give the options as keys")
            rest = {k: v for k, v in data.items() if k != "args"}
            return {**from_argv(cls.options, [str(a) for a in argv], f"data.prepare.args ({data.get('kind')})"),
                    **rest}
        return data


class PrepareVolumes(_PrepareByKeys, VolumePrepareOptions):
    """`neuroray prepare volumes` as data; the keys are its flags (datasets/volumes/options.py)."""

    options: ClassVar[type[PrepareOptions]] = VolumePrepareOptions
    kind: Literal["volumes"]


class PrepareSpectrograms(_PrepareByKeys, SpectrogramPrepareOptions):
    """`neuroray prepare spectrograms` as data; the keys are its flags (datasets/spectrograms/options.py)."""

    options: ClassVar[type[PrepareOptions]] = SpectrogramPrepareOptions
    kind: Literal["spectrograms"]


PrepareCommand = PrepareVolumes | PrepareSpectrograms


class Source(Strict):
    """One shard set: where it is, how to prepare it when missing, how to verify and cache it."""

    shards: str
    prepare: SyntheticEEG | PrepareEEG | PrepareVolumes | PrepareSpectrograms | None = Field(
        None, discriminator="kind")
    verify: Literal["sha256", "size", "none"] | None = None  # None: sha256 for a folder, size for a URI
    cache: Literal["auto", "memory", "stream"] = "auto"

    @property
    def root(self) -> str:
        """``shards`` normalized (``data/x/`` and ``data/x`` name one set): the key shard sets are matched by."""
        return normalize(self.shards)


class MixSource(Source):
    """One source of a mixture (``data.mix``) and its share of each training epoch's windows."""

    weight: float = Field(gt=0)


class Data(Source):
    """``data``: a shard set (``shards``, ``prepare``, ``verify``, ``cache``), or a ``mix`` of several of one
    spec read as one training stream in proportion to their weights (then ``shards`` may be left out: the
    first source's stands for the mixture's windows and target statistics)."""

    shards: str = ""
    mix: list[MixSource] | None = Field(None, min_length=2)

    @model_validator(mode="after")
    def _shards_or_mix(self) -> Data:
        if self.mix is None and not self.shards:
            raise ValueError("data: needs shards (a shard set) or mix (several, with weights)")
        if self.mix is not None:
            if self.prepare is not None:
                raise ValueError("mix: each source prepares itself (mix[i].prepare), not the mixture")
            roots = [m.shards for m in self.mix]
            if len(set(roots)) != len(roots):
                raise ValueError(f"mix: {roots} names a shard set twice")
            self.shards = self.shards or roots[0]
        return self

    @property
    def sources(self) -> list[Source]:
        """The shard sets this block reads: the mix's, or itself."""
        return list(self.mix) if self.mix else [self]


class Aux(Strict):
    """An auxiliary regression head on the encoder's features (null targets ignored)."""

    target: str
    weight: float = Field(0.15, ge=0)


class Phase(Strict):
    """One training phase: trainable, target, epochs, batch size, hparams, and the phase it starts ``from``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_]+$")
    trainable: str
    epochs: int = Field(ge=1)
    target: str | None = None
    # several numeric columns regressed together, one head each (eeg_regressor); excludes `target`
    targets: list[Annotated[str, Field(min_length=1)]] | None = Field(None, min_length=2)
    from_: str | None = Field(None, alias="from")
    batch_size: int = Field(64, ge=1)
    freeze_epochs: int = Field(0, ge=0)  # keep the encoder carried over by `from` fixed this many epochs
    aux: Aux | None = None  # an arm switches it off with `phases.<name>.aux: off`
    hparams: dict[str, Any] = Field(default_factory=dict)
    # this phase's own shard set (same keys as the top-level data); None: the experiment's data
    data: Data | None = None

    @field_validator("aux", mode="before")
    @classmethod
    def _aux_off(cls, v: Any) -> Any:
        return None if v is False else v

    @model_validator(mode="after")
    def _one_kind_of_target(self) -> Phase:
        if self.target is not None and self.targets is not None:
            raise ValueError("target and targets: name one column as target, or several as targets, not both")
        if self.targets is not None and len(set(self.targets)) != len(self.targets):
            raise ValueError(f"targets: {self.targets} names a column twice")
        return self

    @property
    def target_arg(self) -> str | list[str] | None:
        """What the trainable is built with: the target column, or the list of them."""
        return list(self.targets) if self.targets else self.target

    @property
    def target_columns(self) -> list[str]:
        """Every target column this phase reads (none for a self-supervised phase)."""
        return list(self.targets) if self.targets else ([self.target] if self.target else [])

    def data_for(self, default: Data) -> Data:
        """The shard set this phase reads: its own ``data``, else ``default`` (the experiment's)."""
        return self.data if self.data is not None else default

    def task_hparams(self) -> dict[str, Any]:
        """hparams plus the phase-level freeze/aux settings, in the trainable's own vocabulary."""
        out = dict(self.hparams)
        if self.freeze_epochs and self.from_:  # nothing to keep fixed when the encoder starts fresh
            out["freeze_epochs"] = self.freeze_epochs
        if self.aux is not None:
            out.update(aux_target=self.aux.target, aux_weight=self.aux.weight)
        return out


class Matrix(Strict):
    """``matrix``: named arms (overrides of the base file) × seeds [× subject folds], and the baseline arm."""

    arm: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"default": dict[str, Any]()})
    seed: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [0], min_length=1)
    baseline: str | None = None  # the arm every other arm is compared against (default: the first)
    # K subject folds over train+val (each fold validates on one group of subjects): cells = arm × seed × fold
    folds: int | None = Field(None, ge=2)

    @model_validator(mode="after")
    def _baseline(self) -> Matrix:
        if self.baseline is not None and self.baseline not in self.arm:
            raise ValueError(f"baseline {self.baseline!r} is not an arm; arms: {', '.join(self.arm)}")
        return self

    @property
    def baseline_arm(self) -> str:
        """The baseline arm: the one named, else the first."""
        return self.baseline or next(iter(self.arm))

    @field_validator("arm")
    @classmethod
    def _arms(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if not v:
            raise ValueError("needs at least one arm")
        for name, overrides in v.items():
            if not SAFE_NAME.fullmatch(str(name)):
                raise ValueError(f"arm name {name!r} may use letters, digits, _ . - and must start with a letter, "
                                 "digit or _")
            if overrides is None:
                v[name] = {}
        return v


class Search(Strict):
    """Optuna space: ``key: "loguniform(1e-4, 1e-2)"``, or conditional:
    ``key: {dist: "int(8, 64)", when: {other_key: value | [values]}}`` (sampled only when it holds)."""

    sampler: Literal["tpe", "random", "cmaes"] = "tpe"
    num_samples: int = Field(1, ge=1)
    space: dict[str, Any] = Field(default_factory=dict)


class Scheduler(Strict):
    """``scheduler``: FIFO, ASHA or median stopping, and its settings."""

    type: Literal["asha", "median", "none"] = "none"
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(2.0, gt=1)
    # Which trials a trial is compared with: its own (arm, seed) cell, its arm, or every trial (Ray's default,
    # which measures the pruner when arms learn at different speeds).
    scope: Literal["cell", "arm", "global"] = "cell"


class Evaluate(Strict):
    """``evaluate``: whether each trial's chosen checkpoint is scored on the held-out ``test`` split."""

    # false: the report ranks arms on val (the numbers that chose the trials) and says "no held-out test"
    test: bool = True


class Metric(Strict):
    """A monitored metric and whether lower or higher is better."""

    name: str
    mode: Literal["min", "max"]


Precision = Literal["32-true", "bf16-mixed", "16-mixed"]


class Resources(Strict):
    """``resources``: workers, CPUs/GPUs per worker, engine, concurrency."""

    workers: int = Field(1, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    engine: Literal["auto", "actor", "torchtrainer"] = "auto"
    max_concurrent_trials: int | None = Field(None, ge=1)
    # a trial that fails (e.g. its node is lost) restarts from its last checkpoint up to this many times
    max_failures: int = Field(0, ge=0)
    # custom Ray resources the trial actor also requests, e.g. {trial_driver: 1} (on-demand nodes only)
    driver_resources: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    # Lightning's Trainer(precision=...): bf16-mixed autocasts matmuls/convs to bfloat16 (Ampere+ GPUs, and
    # CPUs with AVX-512 BF16); weights, optimizer state and checkpoints stay float32.
    precision: Precision = "32-true"

    @field_validator("driver_resources")
    @classmethod
    def _custom_only(cls, v: dict[str, float]) -> dict[str, float]:
        # Checked here so `validate` and `run` refuse it before Ray starts; Ray's own names would double-book.
        if reserved := sorted(k for k in v if k.lower() in ("cpu", "gpu", "memory")):
            raise ValueError(f"{', '.join(reserved)} is not a custom resource; set cpus_per_worker / "
                             "gpus_per_worker instead")
        return v


SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # one path component that is never '.', '..' or hidden


class Smoke(Strict):
    """What ``--smoke`` changes: caps plus any dotted overrides, like an arm."""

    epochs: int = Field(2, ge=1)
    num_samples: int = Field(1, ge=1)
    seeds: int = Field(2, ge=1)
    overrides: dict[str, Any] = Field(default_factory=dict)


class MLflowTracking(Strict):
    """``tracking.mlflow``: one MLflow run per trial (Ray's ``MLflowLoggerCallback``)."""

    # a tracking server (http://host:5000) or a local store (file:/path, sqlite:///path/mlflow.db)
    uri: str = Field(min_length=1)
    experiment: str | None = None  # the MLflow experiment (default: the experiment file's name)

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str) -> str:
        if not re.match(r"^(https?|file|sqlite|postgresql|mysql|databricks)(:|\+)", v):
            raise ValueError(f"{v!r}: give an MLflow tracking URI: http://HOST:PORT, https://…, file:/PATH or "
                             "sqlite:///PATH/mlflow.db")
        return v


class Tracking(Strict):
    """Dashboards besides TensorBoard and W&B (both always on; W&B offline unless WANDB_MODE says otherwise)."""

    mlflow: MLflowTracking | None = None


class Report(Strict):
    """``report``: how the run folder's report is kept while the run is live."""

    # rebuild report.md/csv/html as trials finish, at most every this many seconds (0: only at the end)
    live_every: float = Field(30.0, ge=0)


class Experiment(Strict):
    """A whole experiment file."""

    # one safe path component: it names the run folder (never '.', '..', a hidden name or a path)
    name: str = Field(max_length=120)
    description: str = ""
    data: Data
    phases: list[Phase] = Field(min_length=1)
    matrix: Matrix = Field(default_factory=Matrix)
    search: Search = Field(default_factory=Search)
    scheduler: Scheduler = Field(default_factory=Scheduler)
    evaluate: Evaluate = Field(default_factory=Evaluate)
    # one metric, or several for a multi-objective search (the first drives the scheduler and reports)
    metric: Metric | list[Metric] | None = None
    resources: Resources = Field(default_factory=Resources)
    smoke: Smoke = Field(default_factory=Smoke)
    storage: str | None = None
    tracking: Tracking = Field(default_factory=Tracking)
    report: Report = Field(default_factory=Report)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not SAFE_NAME.fullmatch(v):
            raise ValueError(f"{v!r} names the run folder: use letters, digits, _ . - starting with a letter, "
                             "digit or _ (no '.', '..', leading dot or '/')")
        return v

    @model_validator(mode="after")
    def _phase_chain(self) -> Experiment:
        seen: list[str] = []
        last = self.phases[-1]
        if self.data.mix is not None:
            raise ValueError("data.mix: a mixture trains an earlier phase (phases[].data.mix, e.g. pretraining); "
                             "the final phase reads one shard set, the one it is tested and exported on")
        if last.data is not None and last.data.shards != self.data.shards:
            raise ValueError(f"phases.{last.name}.data: the final phase reads the experiment's data (its "
                             "checkpoints are tested, folded and exported on it); set that shard set as the "
                             "top-level data and give earlier phases their own")
        for p in self.phases:
            if p.name in seen:
                raise ValueError(f"phases: duplicate phase name {p.name!r}")
            if p.from_ is not None and p.from_ not in seen:
                raise ValueError(f"phases.{p.name}.from: {p.from_!r} is not an earlier phase; "
                                 f"earlier phases: {seen or 'none'}")
            seen.append(p.name)
        return self


def allowed_keys(model: type[BaseModel]) -> list[str]:
    """The keys ``model`` accepts, as written in a file (aliases such as ``from``)."""
    return [f.alias or name for name, f in model.model_fields.items()]
