"""Task base and registry: a trainable is a LightningModule built from (spec, hparams).

Each task declares what it monitors (``monitor``/``mode``) and its hyper-parameters as a typed
dataclass; the platform finds tasks by registry name and validates hparams before anything runs.
This module imports no Ray.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import lightning as L
import torch
from annotated_types import Ge, Gt, Lt

from neuroray.datasets.spec import Spec
from neuroray.errors import ConfigError

# Limits on hyper-parameters, checked by ``validate_hparams`` before Ray starts (and on every search-space
# bound, through the probes of search_spaces.experiment): a bad value costs one error line, not N errored trials.
PositiveInt = Annotated[int, Ge(1)]
NonNegativeInt = Annotated[int, Ge(0)]
ClassCount = Annotated[int, Ge(2)]
PositiveFloat = Annotated[float, Gt(0)]
NonNegativeFloat = Annotated[float, Ge(0)]
Fraction = Annotated[float, Ge(0), Lt(1)]  # dropout, label smoothing: 0 ≤ p < 1
OpenFraction = Annotated[float, Gt(0), Lt(1)]  # a share that must leave something on both sides


@dataclass
class TaskHparams:
    """Hyper-parameters every task takes; subclasses add their own fields (with limits, as below) and may
    override ``check`` for rules between fields."""

    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 1e-4

    def check(self) -> None:
        """Raise ``ValueError('key: what is wrong; what is allowed')`` for a combination that cannot work."""


class Task(L.LightningModule):
    """Base of every registered trainable."""

    name: ClassVar[str] = ""
    modality: ClassVar[str] = ""
    monitor: ClassVar[str] = "val/loss"
    logs: ClassVar[tuple[str, ...]] = ()  # the epoch metrics it logs besides train/loss and val/loss
    mode: ClassVar[str] = "min"
    Hparams: ClassVar[type[TaskHparams]] = TaskHparams
    output: ClassVar[str] = "the trainable's forward output"  # what ``forward`` returns (the model card says it)
    scorer: ClassVar[str] = ""  # how export scores it outside training (export/scoring.py SCORERS); "" = none
    multi_target: ClassVar[bool] = False  # whether it takes a list of targets (phases[].targets)
    per_target: ClassVar[tuple[str, ...]] = ()  # with several targets, also logged as <metric>/<target>

    def __init__(self, spec: Spec, hparams: Mapping[str, Any] | TaskHparams | None = None,
                 target: str | list[str] | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.input_spec: Spec = spec  # what the network itself takes (an EEG task's ``crop_s`` shortens it)
        self.hp = hparams if isinstance(hparams, TaskHparams) else validate_hparams(self.name, hparams or {})
        self.target = target
        self.save_hyperparameters({"trainable": self.name, "target": target, **dataclasses.asdict(self.hp)})

    def set_target_stats(self, mean: float | list[float], std: float | list[float]) -> None:
        """Train-split mean/std of this task's target (one per target of a multi-target task); regressors
        standardize with it, others ignore it."""

    def target_names(self) -> list[str]:
        """The target column(s) this task reads, in order (none for self-supervised tasks)."""
        if self.target is None:
            return []
        return list(self.target) if isinstance(self.target, list | tuple) else [self.target]

    def example_input(self, batch_size: int = 2) -> torch.Tensor:
        """A zero input of the right shape, for export and smoke tests."""
        return torch.zeros(batch_size, *self.spec.sample_shape)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hp.lr, weight_decay=self.hp.weight_decay)


def logged_metrics(name: str, targets: list[str] | None = None) -> list[str]:
    """Every epoch metric trainable ``name`` logs (what an experiment's ``metric`` may name); with several
    ``targets`` also each per-target metric (``val/nrmse/<target>``)."""
    cls = get(name)
    per = [f"{m}/{t}" for m in cls.per_target for t in targets] if targets and len(targets) > 1 else []
    return ["train/loss", "val/loss", *cls.logs, *per]


def load_matching(module: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """Start ``module`` from another phase's weights: every tensor whose name and shape match (the
    encoder) is copied; heads of another shape stay fresh. Returns the names copied."""
    own = module.state_dict()
    carried = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    module.load_state_dict(carried, strict=False)
    return sorted(carried)


_REGISTRY: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    """Class decorator: add a Task to the registry under its ``name`` (refuses an empty/taken name, a bad ``mode``)."""
    if not cls.name or cls.name in _REGISTRY:
        raise ValueError(f"trainable name {cls.name!r} is empty or already registered")
    if cls.mode not in ("min", "max"):
        raise ValueError(f"{cls.__name__}.mode must be 'min' or 'max'")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtin() -> None:
    # Importing the modules registers their tasks; kept lazy so `base` stays import-light. Every module
    # of the package is imported, so a new trainable module needs no edit here.
    import importlib
    import pkgutil

    import neuroray.trainables.tasks as package

    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")


def available() -> list[str]:
    """Sorted names of every registered trainable (the built-in task modules imported first)."""
    _load_builtin()
    return sorted(_REGISTRY)


def get(name: str) -> type[Task]:
    """The Task class registered as ``name``; ConfigError listing the available ones otherwise."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown trainable {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def _type_ok(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation) if isinstance(annotation, type) else True


def describe_type(annotation: Any) -> str:
    """A type annotation for error messages: ``one of …`` for a Literal, else the type's name."""
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    return getattr(annotation, "__name__", str(annotation))


def hparam_fields(name: str) -> dict[str, Any]:
    """Every hyper-parameter of trainable ``name`` with its type (limits stripped)."""
    cls = get(name).Hparams
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


_LIMIT_TEXT = {Ge: ">=", Gt: ">", Lt: "<"}
_LIMIT_FIELD = {Ge: "ge", Gt: "gt", Lt: "lt"}


def _bound(limit: Any) -> float:
    return float(getattr(limit, _LIMIT_FIELD[type(limit)]))


def _limits(name: str) -> dict[str, list[Any]]:
    hints = typing.get_type_hints(get(name).Hparams, include_extras=True)
    out: dict[str, list[Any]] = {}
    for key, hint in hints.items():
        for arg in (hint, *typing.get_args(hint)):  # Annotated[...] alone or inside `X | None`
            if typing.get_origin(arg) is Annotated:
                out.setdefault(key, []).extend(m for m in arg.__metadata__ if type(m) in _LIMIT_TEXT)
    return out


def _limit_problem(value: Any, limits: list[Any]) -> str | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if math.isnan(value) or math.isinf(value):
        return "must be a finite number"
    for limit in limits:
        bound = _bound(limit)
        ok = {Ge: value >= bound, Gt: value > bound, Lt: value < bound}[type(limit)]
        if not ok:
            return "must be " + " and ".join(f"{_LIMIT_TEXT[type(m)]} {_bound(m):g}" for m in limits)
    return None


def validate_hparams(name: str, values: Mapping[str, Any], where: str = "hparams") -> TaskHparams:
    """Typed hparams for trainable ``name``; unknown keys and wrong types name what is allowed."""
    fields = hparam_fields(name)
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"{where}.{key}: unknown hyper-parameter for trainable {name!r}; "
                              f"allowed: {', '.join(sorted(fields))}")
        if not _type_ok(value, fields[key]):
            raise ConfigError(f"{where}.{key}: {value!r} is not {describe_type(fields[key])}")
    limits = _limits(name)
    coerced = {k: float(v) if fields[k] is float else v for k, v in values.items()}
    hp = get(name).Hparams(**coerced)
    for key in fields:  # defaults too: an arm may combine a given value with a default that clashes
        problem = _limit_problem(getattr(hp, key), limits.get(key, []))
        if problem:
            raise ConfigError(f"{where}.{key}: {getattr(hp, key)!r} {problem} (trainable {name!r})")
    try:
        hp.check()
    except ValueError as e:
        raise ConfigError(f"{where}.{e} (trainable {name!r})") from None
    return hp


def build(name: str, spec: Spec, hparams: Mapping[str, Any] | None = None,
          target: str | list[str] | None = None) -> Task:
    """A new ``name`` task for ``spec`` with ``hparams`` and ``target`` (a list: several targets, where the task
    takes them); ConfigError if its modality differs or it takes one target only."""
    cls = get(name)
    if spec.modality != cls.modality:
        raise ConfigError(f"trainable {name!r} takes {cls.modality!r} data; the shard set is {spec.modality!r}")
    if isinstance(target, list | tuple) and not cls.multi_target:
        multi = ", ".join(n for n in available() if get(n).multi_target)
        raise ConfigError(f"targets: trainable {name!r} takes one target (set target:); several targets: {multi}")
    return cls(spec, hparams or {}, target=target)
