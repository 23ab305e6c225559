"""`neuroray run`: validated experiment → Ray → shard set → Tune → results and report."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from ray import tune

from neuroray.datasets.eeg.prepare import make_config
from neuroray.datasets.eeg.synthetic_hbn import write_synthetic_hbn
from neuroray.datasets.folds import FOLDS_FILE, FoldPlan
from neuroray.datasets.locations import is_uri
from neuroray.datasets.shards import ShardSet, open_shard_set, refuse_unless_replaceable, shards_exist
from neuroray.datasets.splits import SPLITS
from neuroray.datasets.synthetic import write_synthetic_eeg
from neuroray.errors import NeurorayError
from neuroray.outputs import atomic_write
from neuroray.reports import folder as report
from neuroray.reports.source import RunInfo, held_out, resolve_baseline
from neuroray.run import results, resume_repair, session, state_backup
from neuroray.run.live_report import LiveReport
from neuroray.run.phase_data import (
    PhaseSet,
    check_chains,
    check_mixes,
    existing_phase_sets,
    phase_inputs,
    phase_sets,
)
from neuroray.run.preflight import (
    PREPARED_BY,
    check_prepare_target,
    check_shard_set,
    existing_shards,
    fold_plan,
    prepared_by,
)
from neuroray.run.prepare import prepare_eeg, print_result
from neuroray.run.test_scores import add_test_scores
from neuroray.run.tune import check_resources, max_concurrency, run_experiment
from neuroray.run_folder import storage as storage_mod
from neuroray.search_spaces.experiment import LoadedExperiment
from neuroray.search_spaces.schema import (
    PrepareCommand,
    PrepareEEG,
    PrepareSpectrograms,
    PrepareVolumes,
    Source,
    SyntheticEEG,
)

DATA_FILE = "data.json"  # with phases[].data: which shard set each phase read (rows, windows)


@dataclass
class RunSummary:
    """A finished `neuroray run`: its shard set, run folder, trial and per-arm tables, and time taken."""

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
        """The best trial's row by the run's metric, or None when no trial has a value."""
        return report.best_trial(self.trials, self.metric, self.mode)


def _prepare(prep: SyntheticEEG | PrepareEEG | PrepareCommand, root: Path, address: str | None,
             key: str = "data") -> None:
    refuse_unless_replaceable(root, what=f"{key}.shards")
    if root.is_dir():  # an empty folder (a shard set was opened instead): the prepare makes it anew
        root.rmdir()
    print(f"preparing {prep.kind} shard set at {root} ...", flush=True)
    if isinstance(prep, SyntheticEEG):
        write_synthetic_eeg(root, **prep.model_dump(exclude={"kind"}))
        return
    if isinstance(prep, PrepareVolumes | PrepareSpectrograms):
        from neuroray.datasets.commands import prepare_commands

        prepare_commands()[prep.kind].run_options(prep, root, overwrite=False)
        # What made it, so a later run whose data.prepare says otherwise is refused, not silently served this.
        atomic_write(root / PREPARED_BY, lambda p: p.write_text(json.dumps(prepared_by(prep), indent=2)))
        return
    bids = Path(prep.bids)
    if prep.synthetic_hbn is not None and not bids.exists():
        write_synthetic_hbn(bids, n_subjects=prep.synthetic_hbn, sfreq=prep.synthetic_sfreq,
                            runs=prep.synthetic_runs, movie=prep.synthetic_movie)
    # An interrupted prepare of this same shard set is continued, not redone.
    result = prepare_eeg(bids, root, make_config(**prep.config_kwargs()), resume=True,  # type: ignore[arg-type]
                         address=address, subjects=prep.subjects)
    print_result(result, root)


def ensure_shards(loaded: LoadedExperiment, address: str | None = None, own: Source | None = None,
                  key: str = "data") -> ShardSet:
    """Open the experiment's shard set (``own``: a phase's, under ``key``), preparing it first when the file
    says how."""
    data = own or loaded.model.data
    root = data.shards
    if not shards_exist(root):
        if data.prepare is None and is_uri(root):
            open_shard_set(root)  # what is there instead (nothing, an unfinished set): its own one line
        if data.prepare is None:
            raise NeurorayError(f"{key}.shards: {root} has no shard set and the experiment has no "
                                f"{key}.prepare; run `neuroray prepare ...` first or add {key}.prepare")
        _prepare(data.prepare, Path(root), address, key)
    shard_set = open_shard_set(root, verify=data.verify)
    check_shard_set(loaded, shard_set, data=own, key=key)
    return shard_set


def ensure_phase_sets(loaded: LoadedExperiment, sets: dict[str, PhaseSet], opened: dict[str, ShardSet],
                      default: ShardSet, address: str | None, checked: bool = False) -> dict[str, ShardSet]:
    """Every phase's own shard set opened (prepared first where missing), then the encoder chain checked
    (``checked``: the experiment's set existed before Ray, so ``existing_phase_sets`` checked what was there)."""
    out = dict(opened)
    for entry in sets.values():
        for i, source in enumerate(entry.data.sources):
            if source.root not in out:
                out[source.root] = ensure_shards(loaded, address, own=source, key=entry.source_key(i))
    if checked and out.keys() == opened.keys():  # nothing prepared now: the chain was checked before Ray
        return out
    check_mixes(loaded, sets, out)
    check_chains(loaded, default, out)
    return out


def _data_record(loaded: LoadedExperiment, default: ShardSet, sets: dict[str, PhaseSet],
                 opened: dict[str, ShardSet]) -> dict[str, object]:
    """data.json: which shard set each phase read, with its rows and windows (the run's per-phase records)."""
    def entry(shard_set: ShardSet) -> dict[str, object]:
        return {"shards": shard_set.root, "rows": {s: shard_set.rows(s) for s in SPLITS},
                "spec": shard_set.manifest["spec"]}

    def phase(ps: PhaseSet) -> dict[str, object]:
        first = entry(opened[ps.data.sources[0].root])
        if not ps.data.mix:
            return {**first, "key": ps.key}
        return {**first, "key": ps.key, "mix": [{**entry(opened[m.root]), "weight": m.weight}
                                                for m in ps.data.mix]}

    return {"data": entry(default), "phases": {r: phase(ps) for ps in sets.values() for r in ps.readers}}


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


def _brain_maps(run_dir: Path, trials: pd.DataFrame, metric: str, mode: str) -> bool:
    """Input vs reconstruction of each arm's pick (a vae3d run), for its report; a failure is one line."""
    from neuroray.generate.atlas import report_maps

    try:
        drawn = report_maps(run_dir, trials, metric, mode)
    except (NeurorayError, OSError) as e:
        print(f"brain maps: not drawn ({e})", flush=True)
        return False
    if drawn:
        print(f"brain maps: input vs reconstruction of {', '.join(drawn)} in {run_dir / 'generate'}", flush=True)
    return bool(drawn)


def _run_info(loaded: LoadedExperiment, shard_set: ShardSet, plan: FoldPlan | None) -> RunInfo:
    """run.json of this run (before test scoring): what the live and the final report read."""
    sched = loaded.model.scheduler
    pruning = "" if sched.type == "none" else f"{sched.type} within each {sched.scope}" if sched.scope != "global" \
        else f"{sched.type} across all trials"
    metric, mode = loaded.metric
    return RunInfo(name=loaded.name, metric=metric, mode=mode, arms=loaded.arms,
                   baseline=resolve_baseline(loaded.baseline, loaded.arms), shards=shard_set.root,
                   pruning=pruning, pruned_across_arms=sched.type != "none" and sched.scope == "global"
                   and len(loaded.arms) > 1, folds=plan.k if plan else 0,
                   fold_ratio=plan.test_train_ratio if plan else 0.0, epochs=loaded.model.phases[-1].epochs)


def run(loaded: LoadedExperiment, storage: str | Path | None = None, address: str | None = None,
        verbose: int = 1, resume: bool = False) -> RunSummary:
    """Run every trial of the experiment and write its results and report; ``storage`` (a folder or a URI)
    wins over the file's ``storage:`` key, which wins over ``runs/``."""
    start = time.time()
    target = storage or loaded.model.storage or "runs"
    check_storage(target)
    check_prepare_target(loaded)
    if loaded.model.tracking.mlflow is not None:  # mlflow's import costs seconds: only runs that use it pay
        from neuroray.run.mlflow_tracking import check_mlflow

        check_mlflow(loaded.model.tracking.mlflow)
    # with a URI, Tune writes there; the local summary goes to runs/<name> (run_folder/storage.py)
    remote = storage_mod.tune_storage_path(target) if storage_mod.is_uri(target) else None
    storage = storage_mod.local_root(target)
    run_dir = storage / loaded.name
    tune_dir = storage_mod.join(remote, loaded.name) if remote else str(run_dir)
    if resume:
        check_resumable(run_dir, loaded, tune_dir if remote else None)
    existing = existing_shards(loaded)  # an existing set is verified and checked before Ray starts
    sets = phase_sets(loaded)  # phases that read their own shard set
    opened = existing_phase_sets(loaded, sets, existing)
    conn = session.start(address)
    check_resources(loaded, conn.embedded)
    session.pin_data_actors_here()
    shard_set = existing or ensure_shards(loaded, address)  # a bad set fails before the run folder exists
    opened = ensure_phase_sets(loaded, sets, opened, shard_set, address, checked=existing is not None)
    if not resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(run_dir / EXPERIMENT_FILE, lambda p: p.write_text(json.dumps(_identity(loaded), indent=2)))
    if sets:
        record = _data_record(loaded, shard_set, sets, opened)
        atomic_write(run_dir / DATA_FILE, lambda p: p.write_text(json.dumps(record, indent=2)))
    plan = fold_plan(loaded, shard_set)
    if plan is not None and not (resume and (run_dir / FOLDS_FILE).is_file()):  # one assignment for every arm
        atomic_write(run_dir / FOLDS_FILE, lambda p: p.write_text(json.dumps(plan.to_json(), indent=2)))
    print(f"neuroray: {loaded.name} on {conn.description}; {len(loaded.cells())} cells × "
          f"{loaded.model.search.num_samples} samples", flush=True)
    metric, mode = loaded.metric
    if resume and state_backup.is_cut(tune_dir) and not state_backup.restore_if_cut(tune_dir):
        raise NeurorayError(f"--resume: Tune's state in {tune_dir} is cut short (the storage filled up?) and no "
                            "backup of it is left; start the run anew with --overwrite")
    interrupted = resume_repair.repair_snapshot(tune_dir) if resume else []
    info = _run_info(loaded, shard_set, plan)
    total = len(loaded.cells()) * loaded.model.search.num_samples
    every = loaded.model.report.live_every
    live = LiveReport(run_dir, info, total, every) if every > 0 and not resume else None
    if every > 0:
        print(f"report (rebuilt as trials end, at most every {every:g} s): {run_dir / 'report.html'}", flush=True)
    grid = run_experiment(loaded, shard_set, storage, embedded=conn.embedded, verbose=verbose, resume=resume,
                          storage_uri=remote, phase_data=phase_inputs(sets, opened), live=live)
    # Ctrl-C / SIGTERM: Tune saved its state; the report waits for the full run
    if _unfinished(grid, len(loaded.cells()) * loaded.model.search.num_samples):
        raise KeyboardInterrupt
    trials, history = results.trial_rows(grid, metric, mode), results.trial_histories(grid)
    if remote:  # checkpoint URIs keep the storage's ?endpoint_override=…, so export reaches the same server
        trials["checkpoint"] = [storage_mod.with_query(c, remote) if isinstance(c, str) else c
                                for c in trials["checkpoint"]]
    scored = loaded.model.evaluate.test
    subjects = None
    if scored:  # selection above was on val; the report's headline is on subjects it never saw
        test = add_test_scores(trials, loaded, shard_set, tasks=max_concurrency(loaded.model, conn.embedded),
                               in_process=conn.embedded and loaded.model.resources.gpus_per_worker == 0)
        trials, subjects = test.trials, test.subjects
        if (mlflow_cfg := loaded.model.tracking.mlflow) is not None:
            from neuroray.run.mlflow_tracking import log_test_scores

            if log_test_scores(run_dir, trials):
                print(f"mlflow: test scores logged to {mlflow_cfg.uri}", flush=True)
    final = info.model_copy(update={"test": scored})
    arms = report.write_run(run_dir, trials, final, history=history, subjects=subjects)
    if shard_set.spec.modality == "volume" and _brain_maps(run_dir, trials, metric, mode):  # the report shows them
        arms = report.write_run(run_dir, trials, final, history=history, subjects=subjects)
    remote_dir = storage_mod.upload_summary(run_dir, remote, loaded.name) if remote else None
    errored = set(trials.loc[trials["status"] != "OK", "trial_id"].astype(str))
    return RunSummary(loaded.name, shard_set, run_dir, metric, mode, trials, arms, time.time() - start, remote_dir,
                      unrecovered=[t for t in interrupted if t in errored])


def print_summary(summary: RunSummary) -> None:
    """The per-arm table and the best trial of a run, on stdout."""
    print(f"\n{summary.name}: {len(summary.trials)} trials in {summary.seconds:.0f} s; "
          f"metric {summary.metric} ({summary.mode})")
    print(report.markdown_table(summary.arms))
    best = summary.best
    if best is not None:
        test = held_out(summary.metric)
        also = f", {test} = {best[test]:.4f}" if test in best and pd.notna(best[test]) else ""
        print(f"best trial by {summary.metric} {best['trial_id']} (arm {best['arm']}, seed {best['seed']}): "
              f"{summary.metric} = {best[summary.metric]:.4f}{also}")
    print(f"results: {summary.run_dir / 'results.csv'}\nreport:  {summary.run_dir / 'report.md'}\n"
          f"tensorboard --logdir {summary.run_dir / 'tensorboard'}\nW&B offline runs: {summary.run_dir / 'wandb'}")
    if summary.remote:
        print(f"storage: {summary.remote} (checkpoints, trial results, Tune state, a copy of the summary)")
