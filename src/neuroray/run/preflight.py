"""Every check `neuroray run` and `neuroray validate` make of an experiment against its data before Ray
starts: data.shards may be (re)prepared, an existing set is what data.prepare describes, every column a phase
or hparam names is there with a usable type, and every resolved arm's modules can be built for the set's
windows. Imports no Ray."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from neuroray.datasets.eeg.prepare import make_config
from neuroray.datasets.folds import FoldPlan, plan_folds
from neuroray.datasets.options import from_argv
from neuroray.datasets.shards import ShardSet, open_shard_set, refuse_unless_replaceable, shards_exist
from neuroray.errors import ConfigError, ShardSetError
from neuroray.search_spaces.buildable import Reads, check_buildable
from neuroray.search_spaces.experiment import LoadedExperiment
from neuroray.search_spaces.schema import PrepareCommand, PrepareEEG, Source, SyntheticEEG
from neuroray.trainables import base as registry

__all__ = ["PREPARED_BY", "prepared_by", "check_prepare_target", "check_shard_set", "existing_shards", "fold_plan"]


def check_prepare_target(loaded: LoadedExperiment) -> None:
    """Before Ray starts: ``data.shards`` (and each phase's) with a ``prepare`` must be absent, an empty folder
    or a shard set; a folder of the user's files (or a file) there is never replaced by a freshly prepared set."""
    data = loaded.model.data
    if data.prepare is not None:
        refuse_unless_replaceable(data.shards, what="data.shards")
    for phase in loaded.model.phases:
        for i, source in enumerate(phase.data.sources if phase.data is not None else []):
            if source.prepare is not None:
                key = f"phases.{phase.name}.data" + (f".mix[{i}]" if phase.data and phase.data.mix else "")
                refuse_unless_replaceable(source.shards, what=f"{key}.shards")


PREPARED_BY = "prepared_by.json"  # beside the manifest of a set made from data.prepare {kind: volumes|spectrograms}


def prepared_by(prep: PrepareCommand) -> dict[str, object]:
    """What ``prepared_by.json`` records for a volumes/spectrograms set: the command and its options."""
    return {"command": f"neuroray prepare {prep.kind}", "options": prep.model_dump(mode="json", exclude={"kind"})}


def _recorded(prep: PrepareCommand, recorded: dict[str, Any]) -> dict[str, object]:
    """What made an existing set; one recorded as ``args`` (before typed keys) is read as its keys."""
    if "args" in recorded and "options" not in recorded:
        keys = from_argv(prep.options, [str(a) for a in recorded["args"]], str(PREPARED_BY))
        return {"command": recorded.get("command"),
                "options": prep.options(**keys).model_dump(mode="json")}
    return recorded


def _check_prepared_as_asked(prep: SyntheticEEG | PrepareEEG | PrepareCommand, shard_set: ShardSet,
                             key: str = "data") -> None:
    """An existing shard set is reused only when it is what data.prepare describes: training on windows
    of another length, rate or preprocessing than the file says would be silently wrong."""
    manifest = shard_set.manifest
    have: dict[str, Any]
    want: dict[str, Any]
    if isinstance(prep, SyntheticEEG):
        have, want = manifest["spec"], {"n_chans": prep.n_chans, "n_times": prep.n_times, "sfreq": prep.sfreq}
    elif isinstance(prep, PrepareEEG):
        have = json.loads(json.dumps(manifest.get("prepare") or {}))
        want = json.loads(json.dumps(make_config(**prep.config_kwargs()).to_dict()))  # type: ignore[arg-type]
    else:
        recorded = shard_set.read_text(PREPARED_BY)
        if recorded is None:  # made by hand with `neuroray prepare …`: nothing to compare with
            return
        have = dict(_recorded(prep, json.loads(recorded)).get("options") or {})  # type: ignore[call-overload]
        want = dict(prepared_by(prep)["options"])  # type: ignore[call-overload]
    diff = [f"{k} {have.get(k)!r} (data.prepare: {v!r})" for k, v in want.items() if have.get(k) != v]
    if diff:
        raise ConfigError(f"{key}.shards: {shard_set.root} was prepared differently from {key}.prepare: "
                          f"{'; '.join(diff)[:400]}. Delete that folder to prepare it again, or point "
                          f"{key}.shards elsewhere")


_NUMERIC = ("int", "uint", "float", "double", "halffloat", "bool")


_WHOLE = ("int", "uint", "bool")


def _check_columns(loaded: LoadedExperiment, shard_set: ShardSet, reads: Reads | None = None) -> None:
    """Every column a phase or an hparam names exists in the shard set, with a type its task can take."""
    columns: dict[str, Any] = shard_set.manifest.get("columns", {})
    listing = ", ".join(c for c in columns if c != "x")
    numeric = ", ".join(c for c, d in columns.items() if c != "x" and str(d.get("dtype", "")).startswith(_NUMERIC))

    def need(key: str, column: str, whole: bool = False) -> None:
        if column not in columns:
            raise ConfigError(f"{key}: column {column!r} is not in {shard_set.root}; columns: {listing}")
        dtype = str(columns[column].get("dtype", ""))
        if not dtype.startswith(_WHOLE if whole else _NUMERIC):
            kind = "whole-number (class) column" if whole else "numeric column"
            raise ConfigError(f"{key}: column {column!r} holds {dtype}; this needs a {kind}. Numeric columns: "
                              f"{numeric}")

    scored: set[str] = set()  # a target's values are read once, however many arms and phases name it
    for arm in loaded.arms:
        for phase in loaded.resolve(arm, loaded.model.matrix.seed[0]).phases:
            if reads is not None and not reads(phase):
                continue
            where = f"phases.{phase.name}" + (f" (arm {arm})" if len(loaded.arms) > 1 else "")
            hp = phase.hparams or {}
            key = f"{where}.targets" if phase.targets else f"{where}.target"
            for column in phase.target_columns:
                need(key, column, whole="n_classes" in registry.hparam_fields(phase.trainable))
                if column not in scored:
                    _scorable(key, shard_set, column)
                    scored.add(column)
            for key in ("aux_target", "adversary_column"):
                if hp.get(key):
                    need(f"{where}.hparams.{key}", str(hp[key]))
            for key in ("cond_columns", "target_columns"):
                for column in filter(None, (c.strip() for c in str(hp.get(key) or "").split(","))):
                    need(f"{where}.hparams.{key}", column)


def _scorable(key: str, shard_set: ShardSet, column: str) -> None:
    """A target with no value in train or val trains on nothing or scores nothing (a metric of NaN)."""
    import numpy as np

    for split in ("train", "val"):
        values = shard_set.read_split(split, columns=[column]).column(column).to_numpy(zero_copy_only=False)
        if not np.isfinite(np.asarray(values, dtype=np.float64)).any():
            raise ConfigError(f"{key}: column {column!r} has no value in the {split} split of {shard_set.root} "
                              f"(every one of its {len(values)} rows is null/NaN); choose another target or "
                              "prepare the set from recordings that have it")


def reads_default(loaded: LoadedExperiment) -> Reads:
    """Which phases read the experiment's own data (those without a ``data`` of another shard set)."""
    root = Path(loaded.model.data.shards)
    return lambda phase: phase.data is None or Path(phase.data.shards) == root


def check_shard_set(loaded: LoadedExperiment, shard_set: ShardSet, data: Source | None = None,
                    key: str = "data") -> None:
    """What an experiment needs of an opened shard set: as data.prepare says, rows in train and val (and test
    unless evaluate.test is false), the modality of every trainable, every column named, every arm's modules
    buildable. Errors name the file. ``data``/``key``: a phase's own set (``phases.<name>.data``): checked for
    the phases that read it; test rows and folds concern the experiment's data only."""
    try:
        _check_shard_set(loaded, shard_set, data, key)
    except ConfigError as e:
        raise (e if str(e).startswith(loaded.source) else ConfigError(f"{loaded.source}: {e}")) from None


def _check_shard_set(loaded: LoadedExperiment, shard_set: ShardSet, own: Source | None, key: str) -> None:
    data = own or loaded.model.data
    root = Path(data.shards)
    reads: Reads = reads_default(loaded) if own is None else (
        lambda phase: phase.data is not None and root in {Path(src.shards) for src in phase.data.sources})
    if data.prepare is not None:
        _check_prepared_as_asked(data.prepare, shard_set, key)
    # A prepare with fewer than 3 subjects/sessions may leave val (or test) empty; Ray Data would then
    # fail deep inside read_parquet with "Must provide at least one path".
    empty = [split for split in ("train", "val") if shard_set.rows(split) == 0 or not shard_set.files(split)]
    if empty:
        raise ShardSetError(f"{key}.shards: {shard_set.root} has no rows in {' and '.join(empty)}; training needs "
                            "rows in both train and val. Prepare it from more subjects/sessions")
    if own is None and loaded.model.evaluate.test and (shard_set.rows("test") == 0 or not shard_set.files("test")):
        raise ShardSetError(f"data.shards: {shard_set.root} has no rows in test; the report ranks arms on held-out "
                            "test subjects. Prepare it from more subjects/sessions, or set evaluate.test: false "
                            "to rank on val")
    for phase in loaded.model.phases:
        want = registry.get(phase.trainable).modality
        if reads(phase) and want != shard_set.manifest["modality"]:
            raise ConfigError(f"phases.{phase.name}.trainable: {phase.trainable!r} takes {want!r} data; "
                              f"{root} holds {shard_set.manifest['modality']!r}")
    _check_columns(loaded, shard_set, reads)
    if own is None:
        fold_plan(loaded, shard_set)  # a K the train+val subjects cannot fill is refused here
    check_buildable(loaded, shard_set.spec, reads)


def fold_plan(loaded: LoadedExperiment, shard_set: ShardSet) -> FoldPlan | None:
    """``matrix.folds``: the subject folds of this shard set (stratified by the last phase's class target, when
    it has one), or None without folds."""
    k = loaded.model.matrix.folds
    if not k:
        return None
    last = loaded.resolve(loaded.baseline, loaded.model.matrix.seed[0]).phases[-1]
    classes = last.target if last.target and "n_classes" in registry.hparam_fields(last.trainable) else None
    return plan_folds(shard_set, k, class_target=classes)


def existing_shards(loaded: LoadedExperiment, verify: str | None = None) -> ShardSet | None:
    """The experiment's shard set when it already exists, opened, verified (``verify``, default the file's
    data.verify) and checked (before Ray starts)."""
    data = loaded.model.data
    if not shards_exist(data.shards):
        return None
    shard_set = open_shard_set(data.shards, verify=verify or data.verify)
    check_shard_set(loaded, shard_set)
    return shard_set
