"""`neuroray run`: validated experiment → Ray → shard set → Tune → results and report."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from ray import tune

from neuroray.datasets.eeg.prepare import make_config
from neuroray.datasets.eeg.synthetic_hbn import write_synthetic_hbn
from neuroray.datasets.shards import ShardSet, atomic_write, open_shard_set, refuse_unless_replaceable
from neuroray.datasets.synthetic import write_synthetic_eeg
from neuroray.errors import ConfigError, NeurorayError, ShardSetError
from neuroray.reports import folder as report
from neuroray.run import results, resume_repair, session, state_backup
from neuroray.run.prepare import prepare_eeg, print_result
from neuroray.run.tune import check_resources, run_experiment
from neuroray.run_folder import storage as storage_mod
from neuroray.search_spaces.experiment import LoadedExperiment
from neuroray.search_spaces.schema import PrepareCommand, PrepareEEG, SyntheticEEG
from neuroray.trainables import base as registry


@dataclass
class RunSummary:
    name: str
    shard_set: ShardSet
    run_dir: Path
    metric: str
    mode: str
    trials: pd.DataFrame
    arms: pd.DataFrame
    seconds: float
    remote: str | None = None  # the run's folder in --storage s3://… (None for local storage)
    unrecovered: list[str] = field(default_factory=list)  # --resume: interrupted trials that ended in ERROR

    @property
    def best(self) -> pd.Series | None:
        return report.best_trial(self.trials, self.metric, self.mode)


def check_prepare_target(loaded: LoadedExperiment) -> None:
    """Before Ray starts: ``data.shards`` with a ``data.prepare`` must be absent, an empty folder or a shard
    set; a folder of the user's files (or a file) there is never replaced by a freshly prepared set."""
    data = loaded.model.data
    if data.prepare is not None:
        refuse_unless_replaceable(Path(data.shards), what="data.shards")


def _prepare(prep: SyntheticEEG | PrepareEEG | PrepareCommand, root: Path, address: str | None) -> None:
    refuse_unless_replaceable(root, what="data.shards")
    if root.is_dir():  # an empty folder (a shard set was opened instead): the prepare makes it anew
        root.rmdir()
    print(f"preparing {prep.kind} shard set at {root} ...", flush=True)
    if isinstance(prep, SyntheticEEG):
        write_synthetic_eeg(root, **prep.model_dump(exclude={"kind"}))
        return
    if isinstance(prep, PrepareCommand):
        from neuroray.datasets.commands import run_prepare

        run_prepare(prep.kind, prep.args, root)
        # What made it, so a later run whose data.prepare says otherwise is refused, not silently served this.
        atomic_write(root / PREPARED_BY, lambda p: p.write_text(json.dumps(_prepared_by(prep), indent=2)))
        return
    bids = Path(prep.bids)
    if prep.synthetic_hbn is not None and not bids.exists():
        write_synthetic_hbn(bids, n_subjects=prep.synthetic_hbn, sfreq=prep.synthetic_sfreq,
                            runs=prep.synthetic_runs, movie=prep.synthetic_movie)
    options = prep.model_dump(exclude={"kind", "bids", "synthetic_hbn", "synthetic_sfreq", "synthetic_runs",
                                       "synthetic_movie"})
    # An interrupted prepare of this same shard set is continued, not redone.
    result = prepare_eeg(bids, root, make_config(**options), resume=True, address=address)
    print_result(result, root)


PREPARED_BY = "prepared_by.json"  # beside the manifest of a set made from data.prepare {kind, args}


def _prepared_by(prep: PrepareCommand) -> dict[str, object]:
    return {"command": f"neuroray prepare {prep.kind}", "args": list(prep.args)}


def _check_prepared_as_asked(prep: SyntheticEEG | PrepareEEG | PrepareCommand, shard_set: ShardSet) -> None:
    """An existing shard set is reused only when it is what data.prepare describes: training on windows
    of another length, rate or preprocessing than the file says would be silently wrong."""
    manifest = shard_set.manifest
    have: dict[str, Any]
    want: dict[str, Any]
    if isinstance(prep, SyntheticEEG):
        have, want = manifest["spec"], {"n_chans": prep.n_chans, "n_times": prep.n_times, "sfreq": prep.sfreq}
    elif isinstance(prep, PrepareEEG):
        options = prep.model_dump(exclude={"kind", "bids", "synthetic_hbn", "synthetic_sfreq", "synthetic_runs",
                                           "synthetic_movie"})
        have = json.loads(json.dumps(manifest.get("prepare") or {}))
        want = json.loads(json.dumps(make_config(**options).to_dict()))
    else:
        recorded = shard_set.root / PREPARED_BY
        if not recorded.is_file():  # made by hand with `neuroray prepare …`: nothing to compare with
            return
        have, want = json.loads(recorded.read_text()), _prepared_by(prep)
    diff = [f"{k} {have.get(k)!r} (data.prepare: {v!r})" for k, v in want.items() if have.get(k) != v]
    if diff:
        raise ConfigError(f"data.shards: {shard_set.root} was prepared differently from data.prepare: "
                          f"{'; '.join(diff)[:400]}. Delete that folder to prepare it again, or point "
                          "data.shards elsewhere")


_NUMERIC = ("int", "uint", "float", "double", "halffloat", "bool")
_WHOLE = ("int", "uint", "bool")


def _check_columns(loaded: LoadedExperiment, shard_set: ShardSet) -> None:
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
            where = f"phases.{phase.name}" + (f" (arm {arm})" if len(loaded.arms) > 1 else "")
            hp = phase.hparams or {}
            if phase.target:
                need(f"{where}.target", phase.target, whole="n_classes" in registry.hparam_fields(phase.trainable))
                if phase.target not in scored:
                    _scorable(f"{where}.target", shard_set, phase.target)
                    scored.add(phase.target)
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


def _check_shard_set(loaded: LoadedExperiment, shard_set: ShardSet) -> None:
    """What an experiment needs of an opened shard set: as data.prepare says, rows in train and val, the
    modality of every trainable, every column named."""
    data = loaded.model.data
    root = Path(data.shards)
    if data.prepare is not None:
        _check_prepared_as_asked(data.prepare, shard_set)
    # A prepare with fewer than 3 subjects/sessions may leave val (or test) empty; Ray Data would then
    # fail deep inside read_parquet with "Must provide at least one path".
    empty = [split for split in ("train", "val") if shard_set.rows(split) == 0 or not shard_set.files(split)]
    if empty:
        raise ShardSetError(f"data.shards: {shard_set.root} has no rows in {' and '.join(empty)}; training needs "
                            "rows in both train and val. Prepare it from more subjects/sessions")
    for phase in loaded.model.phases:
        want = registry.get(phase.trainable).modality
        if want != shard_set.manifest["modality"]:
            raise ConfigError(f"phases.{phase.name}.trainable: {phase.trainable!r} takes {want!r} data; "
                              f"{root} holds {shard_set.manifest['modality']!r}")
    _check_columns(loaded, shard_set)


def existing_shards(loaded: LoadedExperiment) -> ShardSet | None:
    """The experiment's shard set when it already exists, opened, verified and checked (before Ray starts)."""
    data = loaded.model.data
    if not (Path(data.shards) / "manifest.json").is_file():
        return None
    shard_set = open_shard_set(Path(data.shards), verify=data.verify)
    _check_shard_set(loaded, shard_set)
    return shard_set


def ensure_shards(loaded: LoadedExperiment, address: str | None = None) -> ShardSet:
    """Open the experiment's shard set, preparing it first when the file says how."""
    data = loaded.model.data
    root = Path(data.shards)
    if not (root / "manifest.json").is_file():
        if data.prepare is None:
            raise NeurorayError(f"data.shards: {root} has no shard set and the experiment has no "
                                "data.prepare; run `neuroray prepare ...` first or add data.prepare")
        _prepare(data.prepare, root, address)
    shard_set = open_shard_set(root, verify=data.verify)
    _check_shard_set(loaded, shard_set)
    return shard_set


def check_storage(storage: str | Path) -> None:
    """A local folder or a pyarrow URI (s3://…): probe-write it before Ray starts; one error line if not."""
    storage_mod.check_writable(storage)


EXPERIMENT_FILE = storage_mod.RUN_MARKER  # what this run folder runs: checked by --resume


def _identity(loaded: LoadedExperiment) -> dict[str, object]:
    return {"name": loaded.name, "source": loaded.source, "smoke": loaded.smoke,
            "experiment": json.loads(json.dumps(loaded.raw, default=str))}


def check_resumable(run_dir: Path, loaded: LoadedExperiment, tune_dir: str | None = None) -> None:
    """`--resume` continues only the same experiment (same file content, same --smoke) in its own folder."""
    path = run_dir / EXPERIMENT_FILE
    if not path.is_file():
        raise NeurorayError(f"--resume: {run_dir} holds no interrupted neuroray run (no {EXPERIMENT_FILE}); "
                            f"start it without --resume")
    saved = json.loads(path.read_text())
    mine = _identity(loaded)
    if saved.get("name") != mine["name"] or saved.get("smoke") != mine["smoke"]:
        raise NeurorayError(f"--resume: {run_dir} is a run of {saved.get('name')!r} (smoke={saved.get('smoke')}), "
                            f"not of {mine['name']!r} (smoke={mine['smoke']}); pass the same experiment file")
    old, new = saved.get("experiment") or {}, dict(mine["experiment"])  # type: ignore[call-overload]
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        raise NeurorayError(f"--resume: {loaded.source} differs from the experiment {run_dir} was started with "
                            f"(keys: {', '.join(changed)}); resume with the original file, or start anew "
                            "with --overwrite")
    if not tune.Tuner.can_restore(tune_dir or str(run_dir)):
        raise NeurorayError(f"--resume: {tune_dir or run_dir} has no saved Tune state to continue from; start it "
                            "with --overwrite")


def _unfinished(grid: tune.ResultGrid, expected: int) -> int:
    """Trials not yet run to their end: Tune was stopped (Ctrl-C/SIGTERM) and saved its state for --resume.

    Read from that saved state (its newest snapshot), since on the way out Tune marks the trials it stopped
    as terminated in memory."""
    import pyarrow.fs as pafs

    fs, root = grid.filesystem, grid.experiment_path
    snapshots = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(root))
                       if i.base_name.startswith("experiment_state-") and i.base_name.endswith(".json"))
    if not snapshots:
        return expected
    with fs.open_input_stream(snapshots[-1]) as f:
        trials = json.loads(f.read())["trial_data"]
    states = [json.loads(t[0]) if isinstance(t[0], str) else t[0] for t in trials]
    # A trial whose actor died stays RUNNING in the snapshot (Tune only re-snapshots a stopped trial whose
    # actor is alive); in memory it is an error, which is final.
    results = [grid[i] for i in range(len(grid))]
    died = {str((r.metrics or {}).get("trial_id") or Path(r.path).name.rsplit("-", 1)[-1]) for r in results if r.error}
    return max(0, expected - len(states)) + sum(s["status"] not in ("TERMINATED", "ERROR") and s["trial_id"] not in died
                                                for s in states)


def run(loaded: LoadedExperiment, storage: str | Path | None = None, address: str | None = None,
        verbose: int = 1, resume: bool = False) -> RunSummary:
    """Run every trial of the experiment and write its results and report; ``storage`` (a folder or a URI)
    wins over the file's ``storage:`` key, which wins over ``runs/``."""
    start = time.time()
    target = storage or loaded.model.storage or "runs"
    check_storage(target)
    check_prepare_target(loaded)
    # with a URI, Tune writes there; the local summary goes to runs/<name> (run_folder/storage.py)
    remote = storage_mod.tune_storage_path(target) if storage_mod.is_uri(target) else None
    storage = storage_mod.local_root(target)
    run_dir = storage / loaded.name
    tune_dir = storage_mod.join(remote, loaded.name) if remote else str(run_dir)
    if resume:
        check_resumable(run_dir, loaded, tune_dir if remote else None)
    existing = existing_shards(loaded)  # an existing set is verified and checked before Ray starts
    conn = session.start(address)
    check_resources(loaded, conn.embedded)
    session.pin_data_actors_here()
    shard_set = existing or ensure_shards(loaded, address)  # a bad set fails before the run folder exists
    if not resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(run_dir / EXPERIMENT_FILE, lambda p: p.write_text(json.dumps(_identity(loaded), indent=2)))
    print(f"neuroray: {loaded.name} on {conn.description}; {len(loaded.cells())} cells × "
          f"{loaded.model.search.num_samples} samples", flush=True)
    metric, mode = loaded.metric
    if resume and state_backup.is_cut(tune_dir) and not state_backup.restore_if_cut(tune_dir):
        raise NeurorayError(f"--resume: Tune's state in {tune_dir} is cut short (the storage filled up?) and no "
                            "backup of it is left; start the run anew with --overwrite")
    interrupted = resume_repair.repair_snapshot(tune_dir) if resume else []
    grid = run_experiment(loaded, shard_set, storage, embedded=conn.embedded, verbose=verbose, resume=resume,
                          storage_uri=remote)
    # Ctrl-C / SIGTERM: Tune saved its state; the report waits for the full run
    if _unfinished(grid, len(loaded.cells()) * loaded.model.search.num_samples):
        raise KeyboardInterrupt
    trials, history = results.trial_rows(grid, metric, mode), results.trial_histories(grid)
    if remote:  # checkpoint URIs keep the storage's ?endpoint_override=…, so export reaches the same server
        trials["checkpoint"] = [storage_mod.with_query(c, remote) if isinstance(c, str) else c
                                for c in trials["checkpoint"]]
    arms = report.write_reports(run_dir, trials, loaded.name, metric, mode, loaded.arms,
                                shards=str(shard_set.root.resolve()), history=history, baseline=loaded.baseline)
    remote_dir = storage_mod.upload_summary(run_dir, remote, loaded.name) if remote else None
    errored = set(trials.loc[trials["status"] != "OK", "trial_id"].astype(str))
    return RunSummary(loaded.name, shard_set, run_dir, metric, mode, trials, arms, time.time() - start, remote_dir,
                      unrecovered=[t for t in interrupted if t in errored])


def print_summary(summary: RunSummary) -> None:
    print(f"\n{summary.name}: {len(summary.trials)} trials in {summary.seconds:.0f} s; "
          f"metric {summary.metric} ({summary.mode})")
    print(report.markdown_table(summary.arms))
    best = summary.best
    if best is not None:
        print(f"best trial {best['trial_id']} (arm {best['arm']}, seed {best['seed']}): "
              f"{summary.metric} = {best[summary.metric]:.4f}")
    print(f"results: {summary.run_dir / 'results.csv'}\nreport:  {summary.run_dir / 'report.md'}\n"
          f"tensorboard --logdir {summary.run_dir / 'tensorboard'}\nW&B offline runs: {summary.run_dir / 'wandb'}")
    if summary.remote:
        print(f"storage: {summary.remote} (checkpoints, trial results, Tune state, a copy of the summary)")
