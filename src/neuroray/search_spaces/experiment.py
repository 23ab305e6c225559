"""Load an experiment file, expand its matrix and resolve one trial's concrete configuration.

Everything here runs before Ray starts, so a typo costs a second, not a cluster allocation.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from neuroray.errors import ConfigError
from neuroray.search_spaces import distributions
from neuroray.search_spaces.schema import Experiment, allowed_keys
from neuroray.trainables import base as registry


class _StrictLoader(yaml.SafeLoader):
    """Safe loading, minus two traps: an alias (``*a``) can expand a few hundred bytes into gigabytes
    ("billion laughs"), and a repeated key silently replaces the first (an arm or all phases vanish)."""

    source = ""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        """Refuse YAML aliases (``*name``) with the line and column."""
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise ConfigError(f"{self.source}:{mark.line + 1}:{mark.column + 1}: YAML aliases (*name) are not "
                              "allowed in experiment files; write the value out (arms override keys instead)")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Refuse a key repeated in one mapping, naming both lines."""
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, str | int | float | bool) and key in seen:
                raise ConfigError(f"{self.source}:{line}: duplicate key {key!r} (first at line {seen[key]}); "
                                  "each key may appear once in a mapping")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _load_strict(text: str, source: str) -> Any:
    loader = _StrictLoader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The experiment file's mapping (safe loading; aliases and duplicate keys refused), or one error line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: experiment file not found")
    try:
        raw = _load_strict(path.read_text(), str(path))
    except yaml.constructor.ConstructorError as e:  # !!python/object and friends: safe loading refuses them
        mark = e.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: YAML tag not allowed ({e.problem}); experiment files are plain YAML "
                          "(mappings, lists, strings, numbers, booleans)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the experiment file must be a mapping of keys (name, data, phases, ...)")
    return raw


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that owns the last element of ``loc``."""
    import typing

    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = next((f for n, f in current.model_fields.items() if part in (n, f.alias)), None)
        if field is None:
            return None
        ann = field.annotation
        for arg in (ann, *typing.get_args(ann), *(a for t in typing.get_args(ann) for a in typing.get_args(t))):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                current = arg
                break
        else:
            current = ann
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _dotted(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    parts: list[str] = []
    node: Any = raw
    for part in loc:
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            name = node[part].get("name") if isinstance(node[part], dict) else None
            parts.append(str(name) if name else f"[{part}]")
            node = node[part]
            continue
        if isinstance(part, str) and part.startswith(("function-", "tagged-union")):
            continue
        parts.append(str(part))
        node = node.get(part) if isinstance(node, dict) else None
    return ".".join(parts)


def validate(raw: dict[str, Any], source: str) -> Experiment:
    """``raw`` as an ``Experiment``; a schema error becomes one line naming ``source`` and the key."""
    try:
        return Experiment.model_validate(raw)
    except ValidationError as exc:
        # A misspelled key also shows up as a "missing" one; name the misspelling first.
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        err = errors[0]
        loc = tuple(err["loc"])
        key = _dotted(loc, raw)
        if err["type"] == "extra_forbidden":
            owner = _model_at(Experiment, loc)
            allowed = ", ".join(allowed_keys(owner)) if owner else "see the README"
            raise ConfigError(f"{source}: unknown key {key!r}; allowed here: {allowed}") from None
        if err["type"] == "missing":
            raise ConfigError(f"{source}: missing required key {key!r}") from None
        msg = err["msg"].removeprefix("Value error, ")
        value = err.get("input")
        shown = f" (got {value!r})" if not isinstance(value, dict | list) and err["type"] != "value_error" else ""
        raise ConfigError(f"{source}: {key or 'experiment'}: {msg}{shown}") from None


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any], where: str) -> dict[str, Any]:
    """Set dotted keys (``phases.<name>.epochs``, ``search.num_samples``); ``phases.<name>: off`` drops a phase."""
    out = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        parts = str(dotted).split(".")
        if parts[0] == "phases":
            if len(parts) < 2:
                raise ConfigError(f"{where}.{dotted}: name a phase, e.g. phases.<phase>.epochs")
            phases = out.get("phases") or []
            idx = next((i for i, p in enumerate(phases) if isinstance(p, dict) and p.get("name") == parts[1]), None)
            if idx is None:
                names = [p.get("name") for p in phases if isinstance(p, dict)]
                raise ConfigError(f"{where}.{dotted}: no phase named {parts[1]!r}; phases: {names}")
            if len(parts) == 2:
                if value is False or value is None:
                    dropped = phases.pop(idx)["name"]
                    for p in phases:
                        if p.get("from") == dropped:
                            p["from"] = phases[idx - 1]["name"] if idx > 0 and phases[idx - 1] is not p else None
                    continue
                raise ConfigError(f"{where}.{dotted}: a whole phase can only be switched off (use 'off')")
            node: Any = phases[idx]
            parts = parts[2:]
        else:
            node = out
        for part in parts[:-1]:
            if not isinstance(node, dict):
                raise ConfigError(f"{where}.{dotted}: {part!r} is not a mapping")
            node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{where}.{dotted}: cannot set a key inside a non-mapping value")
        node[parts[-1]] = value
    return out


def _apply_params(raw: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Search parameters: a plain name sets that hparam on every phase that has it; dotted keys override."""
    plain = {k: v for k, v in params.items() if "." not in k}
    out = apply_overrides(raw, {k: v for k, v in params.items() if "." in k}, "search.space")
    for phase in out.get("phases", []):
        fields = registry.hparam_fields(phase["trainable"])
        for k, v in plain.items():
            if k in fields:
                phase.setdefault("hparams", {})[k] = v
    return out


@dataclass(frozen=True)
class Cell:
    """One (arm, seed[, fold]) of the matrix."""

    arm: str
    seed: int
    fold: int | None = None  # with matrix.folds: which subject fold validates this cell


@dataclass(frozen=True)
class LoadedExperiment:
    """A validated experiment file: the raw mapping (for trials) and its checked model."""

    raw: dict[str, Any]
    model: Experiment
    source: str
    smoke: bool = False

    @property
    def name(self) -> str:
        """The experiment's name (its run folder)."""
        return self.model.name

    @property
    def arms(self) -> list[str]:
        """The matrix's arm names, in file order."""
        return list(self.model.matrix.arm)

    def cells(self) -> list[Cell]:
        """Every (arm, seed[, fold]) cell, arms outer."""
        m = self.model.matrix
        folds: list[int | None] = list(range(m.folds)) if m.folds else [None]
        return [Cell(a, s, f) for a in m.arm for s in m.seed for f in folds]

    def space(self) -> dict[str, distributions.Param]:
        """The search space, parsed."""
        return distributions.parse_space(self.model.search.space)

    @property
    def baseline(self) -> str:
        """The arm the others are compared with."""
        return self.model.matrix.baseline_arm

    def resolve(self, arm: str, seed: int, params: dict[str, Any] | None = None) -> Experiment:
        """The concrete experiment one trial runs: arm overrides, then search params."""
        raw = apply_overrides(self.raw, self.model.matrix.arm[arm], f"matrix.arm.{arm}")
        raw = _apply_params(raw, params or {})
        exp = validate(raw, f"{self.source} (arm {arm})")
        arm_tag = f" (arm {arm})" if len(self.arms) > 1 else ""
        for phase in exp.phases:
            fields = registry.hparam_fields(phase.trainable)
            for key, needs in (("freeze_epochs", "freeze_epochs"), ("aux", "aux_target")):
                if getattr(phase, key) and needs not in fields:
                    raise ConfigError(f"phases.{phase.name}{arm_tag}.{key}: trainable {phase.trainable!r} does not "
                                      "support it")
            phase.hparams = phase.task_hparams()
            registry.validate_hparams(phase.trainable, phase.hparams, where=f"phases.{phase.name}{arm_tag}.hparams")
        return exp

    @property
    def objectives(self) -> list[tuple[str, str]]:
        """Every (metric, mode) the search optimizes; the first is the primary one."""
        m = self.model.metric
        if m is None:
            last = registry.get(self.model.phases[-1].trainable)
            return [(last.monitor, last.mode)]
        return [(x.name, x.mode) for x in (m if isinstance(m, list) else [m])]

    @property
    def metric(self) -> tuple[str, str]:
        """The primary metric: schedulers prune on it, reports rank and compare arms by it."""
        return self.objectives[0]


def _smoke(raw: dict[str, Any], model: Experiment) -> dict[str, Any]:
    out = apply_overrides(raw, model.smoke.overrides, "smoke.overrides")
    out["name"] = f"{raw['name']}-smoke"
    for phase in out["phases"]:
        phase["epochs"] = min(int(phase["epochs"]), model.smoke.epochs)
    search = out.setdefault("search", {})
    search["num_samples"] = min(int(search.get("num_samples", 1)), model.smoke.num_samples)
    matrix = out.setdefault("matrix", {})
    matrix["seed"] = list(matrix.get("seed", [0]))[: model.smoke.seeds]
    return out


def probes(space: dict[str, distributions.Param]) -> list[dict[str, Any]]:
    """Parameter sets that together touch every choice and both bounds of every parameter, honouring conditions."""
    width = max([len(p.dist.choices) for p in space.values() if p.dist.kind == "choice"] + [2 if space else 1])
    out = []
    for i in range(width):
        sampled: dict[str, Any] = {}
        for key, p in space.items():
            if p.active(sampled):
                d = p.dist
                sampled[key] = d.choices[i % len(d.choices)] if d.kind == "choice" else (d.high if i % 2 else d.low)
        out.append(sampled)
    return out


def load(path: str | Path, smoke: bool = False) -> LoadedExperiment:
    """Read and fully validate an experiment file: schema, every arm, trainables, hparams, search space."""
    source = str(path)
    raw = read_yaml(path)
    model = validate(raw, source)
    if smoke:
        raw = _smoke(raw, model)
        model = validate(raw, source)
    loaded = LoadedExperiment(raw=raw, model=model, source=source, smoke=smoke)
    try:
        _check(loaded)
    except ConfigError as e:  # every message names the file, as the schema's own do
        raise (e if str(e).startswith(source) else ConfigError(f"{source}: {e}")) from None
    return loaded


def _check(loaded: LoadedExperiment) -> None:
    """What the schema cannot see: trainables, the search space, every arm resolved with probe values."""
    source, model = loaded.source, loaded.model
    for phase in model.phases:
        try:
            registry.get(phase.trainable)
        except ConfigError as e:
            raise ConfigError(f"phases.{phase.name}.trainable: {e}") from None
    space = loaded.space()
    for key in space:
        if "." not in key and not any(key in registry.hparam_fields(p.trainable) for p in model.phases):
            raise ConfigError(f"{source}: search.space.{key}: no phase's trainable has a hyper-parameter {key!r}")
    for param in space.values():
        param.dist.to_optuna()
    for arm in loaded.arms:  # Tune would fail mid-run on a metric no epoch reports
        resolved = loaded.resolve(arm, model.matrix.seed[0]).phases
        for phase in resolved:
            if phase.targets and not registry.get(phase.trainable).multi_target:
                where = f" (arm {arm})" if len(loaded.arms) > 1 else ""
                takes = ", ".join(n for n in registry.available() if registry.get(n).multi_target)
                raise ConfigError(f"{source}: phases.{phase.name}.targets{where}: trainable {phase.trainable!r} "
                                  f"takes one target (set target:); several targets: {takes}")
        final = resolved[-1]
        logged = registry.logged_metrics(final.trainable, final.targets)
        for metric, _ in loaded.objectives:
            if metric not in logged:
                where = f" (arm {arm})" if len(loaded.arms) > 1 else ""
                raise ConfigError(f"{source}: metric: {metric!r} is not logged by the final phase {final.name!r}"
                                  f"{where} (trainable {final.trainable!r}); it logs: {', '.join(logged)}")
    if isinstance(model.metric, list):
        if not model.metric:
            raise ConfigError(f"{source}: metric: an empty list; give one {{name, mode}} or several")
        if len(model.metric) > 1 and model.search.sampler == "cmaes":
            raise ConfigError(f"{source}: search.sampler: cmaes is single-objective; with several metrics "
                              "use tpe or random")
    for arm in loaded.arms:
        for probe in probes(space):
            loaded.resolve(arm, model.matrix.seed[0], probe)
