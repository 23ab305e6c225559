"""Run an experiment: matrix cells × Optuna samples as Tune trials, each a function trainable.

A single-worker trial runs the train loop inside its (reused) trial actor; a multi-worker or
multi-GPU trial launches a Train V2 ``TorchTrainer`` from the trial function, with Tune's report
callback passed into the trainer's RunConfig (``Tuner(trainer)`` is gone in Train V2).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import ray
import ray.train
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule, TrialScheduler

from neuroray.datasets.folds import FOLDS_FILE, FoldPlan
from neuroray.datasets.shards import ShardSet
from neuroray.errors import ConfigError
from neuroray.run import ingest, session
from neuroray.run.cell_scheduler import CellScheduler
from neuroray.run.loop_config import LoopConfig, PhaseData, SpecRef
from neuroray.run.phase_data import PhaseInput, data_id
from neuroray.run.searcher import OPTUNA_JOURNAL, MatrixSearcher
from neuroray.run.state_backup import StateBackup
from neuroray.run.train import LOG_STORAGE, run_phases, torchtrainer_worker_loop
from neuroray.run.trial_names import trial_label
from neuroray.run_folder import storage as storage_mod
from neuroray.search_spaces.experiment import LoadedExperiment
from neuroray.search_spaces.schema import Experiment

DRIVER_CPU = 0.01


def choose_engine(exp: Experiment) -> str:
    """``actor`` (the trial actor trains) or ``torchtrainer`` (Ray Train workers), from ``resources``."""
    r = exp.resources
    spread = r.workers > 1 or (r.gpus_per_worker > 1)
    if r.engine == "actor" and spread:
        raise ConfigError("resources.engine: 'actor' runs one worker in the trial actor; "
                          f"workers={r.workers}, gpus_per_worker={r.gpus_per_worker} needs 'torchtrainer' or 'auto'")
    if r.engine == "auto":
        return "torchtrainer" if spread else "actor"
    return r.engine


def loop_config(exp: Experiment, shard_set: ShardSet, seed: int, metric: str, mode: str,
                tensorboard_dir: str | None, trial_name: str, phase_dir: str | None = None,
                fold: int | None = None, progress_s: float = 60.0,
                phase_sets: dict[str, PhaseInput] | None = None) -> LoopConfig:
    """What one trial's train loop needs: the resolved phases, the shard set's spec, seed, metric, mode,
    logging and phase folders, threads, and the targets' train-split statistics."""
    return LoopConfig(
        phase_dir=phase_dir, phases=list(exp.phases),
        spec=SpecRef(modality=shard_set.manifest["modality"], spec=shard_set.manifest["spec"]),
        seed=seed, metric=metric, mode=mode, tensorboard_dir=tensorboard_dir, trial_name=trial_name,
        threads=exp.resources.cpus_per_worker, precision=exp.resources.precision,
        # train-split mean/std of numeric targets: regressors predict on a standardized scale
        target_stats=shard_set.manifest.get("target_stats", {}),
        progress_s=progress_s, train_rows=None if fold is not None else shard_set.rows("train"),
        phase_data={p.name: _phase_data((phase_sets or {})[data_id(p.data)]) for p in exp.phases
                    if p.data is not None and data_id(p.data) in (phase_sets or {})},
    )


def _phase_data(given: PhaseInput) -> PhaseData:
    first = given.sets[0]  # a mixture's sources share one spec; the first one's target statistics stand
    return PhaseData(key=given.key, spec=SpecRef(modality=first.manifest["modality"], spec=first.manifest["spec"]),
                     target_stats=first.manifest.get("target_stats", {}), sources=len(given.sets))


def progress_interval() -> float:
    """Seconds between in-epoch progress lines: ``NEURORAY_PROGRESS_S`` in the driver's environment (0 = off),
    else 60."""
    raw = os.environ.get("NEURORAY_PROGRESS_S", "").strip()
    try:
        return max(0.0, float(raw)) if raw else 60.0
    except ValueError:
        raise ConfigError(f"NEURORAY_PROGRESS_S={raw!r}: seconds between progress lines (0 = off)") from None


@dataclass(frozen=True)
class TrialContext:
    """What every trial needs besides its config; shipped once through ``tune.with_parameters``."""

    loaded: LoadedExperiment
    shard_set: ShardSet
    metric: str
    mode: str
    run_dir: str
    tensorboard_dir: str | None
    progress_s: float = 60.0  # read from the driver's environment (progress_interval)
    phase_sets: dict[str, PhaseInput] = field(default_factory=dict)  # data_id → a phase's own set(s)
    # the run's folder in --storage s3://… as (filesystem, path), opened on the driver (None: local storage);
    # the filesystem pickles with its endpoint, as Tune ships its own, so Train's controller needs no AWS env
    storage: tuple[Any, str] | None = None


def trial_hparams(config: dict[str, Any]) -> dict[str, str | int | float | bool]:
    """A trial's arm, seed, fold and search params as scalars (TensorBoard's HParams plugin)."""
    out: dict[str, str | int | float | bool] = {"arm": str(config.get("arm")), "seed": int(config.get("seed", 0))}
    if config.get("fold") is not None:
        out["fold"] = int(config["fold"])
    for k, v in (config.get("params") or {}).items():
        out[f"param.{k}"] = v if isinstance(v, str | int | float | bool) else str(v)
    return out


def run_trial(config: dict[str, Any], ctx: TrialContext, datasets: dict[str, Any]) -> None:
    """The Tune function trainable: resolve this trial's experiment, then fit it on its engine. With URI
    storage the process that wrote the trial's TensorBoard files copies them there when it ends (stopped,
    failed or done): the autoscaler may terminate its node minutes later."""
    name = trial_label(config, tune.get_context().get_trial_id())
    exp = ctx.loaded.resolve(config["arm"], config["seed"], config.get("params"))
    datasets = ingest.trial_datasets(datasets, config.get("fold"))
    cfg = loop_config(exp, ctx.shard_set, config["seed"], ctx.metric, ctx.mode, ctx.tensorboard_dir, name,
                      phase_dir=str(Path(ctx.run_dir) / "checkpoints" / name), fold=config.get("fold"),
                      progress_s=ctx.progress_s, phase_sets=ctx.phase_sets)
    cfg = cfg.model_copy(update={"hparams": trial_hparams(config)})
    if choose_engine(exp) == "actor":
        session.configure_data_context()

        node_id = ray.get_runtime_context().get_node_id()  # which node ran it (clusters; restarts move trials)

        def report(metrics: dict[str, Any], ckpt_dir: str | None) -> None:
            tune.report({**metrics, "node_id": node_id},
                        checkpoint=tune.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None)

        def get_shard(split: str) -> Any:
            return datasets[split].iterator()

        try:
            ckpt = tune.get_checkpoint()  # set when the trial restarts (lost node, `neuroray run --resume`)
            if ckpt is None:
                run_phases(cfg, get_shard=get_shard, report=report)
            else:
                with ckpt.as_directory() as restore:
                    run_phases(cfg, get_shard=get_shard, report=report, restore=restore)
        finally:
            storage_mod.copy_tensorboard(ctx.tensorboard_dir, name, ctx.storage)
        return
    # Train's checkpoints and state go where the run lives: under s3://… a restarted trial on another node
    # (and export) finds them; locally, in the run folder.
    fs, root = ctx.storage or (None, str(Path(ctx.run_dir)))
    _fit_with_torchtrainer(cfg, exp, datasets, (fs, f"{root}/train"), name, ctx.storage)


def _fit_with_torchtrainer(cfg: LoopConfig, exp: Experiment, datasets: dict[str, Any],
                           storage: tuple[Any, str], name: str, logs: tuple[Any, str] | None) -> None:
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    r = exp.resources
    trainer = TorchTrainer(
        torchtrainer_worker_loop,
        # rank 0 copies its TensorBoard files to the run's URI storage itself: it may run on another node
        train_loop_config={**cfg.to_ray(), LOG_STORAGE: logs},
        scaling_config=ray.train.ScalingConfig(
            num_workers=r.workers, use_gpu=r.gpus_per_worker > 0,
            resources_per_worker={"CPU": r.cpus_per_worker,
                                  **({"GPU": r.gpus_per_worker} if r.gpus_per_worker else {})},
        ),
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage[1], storage_filesystem=storage[0],
            callbacks=[TuneReportCallback()],  # type: ignore[list-item]
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=cfg.metric,
                                                         checkpoint_score_order=cfg.mode),
            failure_config=ray.train.FailureConfig(max_failures=r.max_failures),
        ),
        datasets=datasets,
    )
    trainer.fit()


def phase_chains(loaded: LoadedExperiment) -> dict[str, list[str]]:
    """Each arm's phase names in order (for dashboards)."""
    seed = loaded.model.matrix.seed[0]
    return {arm: [p.name for p in loaded.resolve(arm, seed).phases] for arm in loaded.arms}


def _scheduler(exp: Experiment) -> TrialScheduler:
    """Ray's ASHA or median rule (or FIFO); with ``scope`` cell or arm, one instance per cell or arm."""
    s = exp.scheduler
    max_t = exp.phases[-1].epochs  # only the final phase reports to Tune (training_iteration counts its epochs)
    if s.type == "asha":
        make: Callable[[], TrialScheduler] = partial(
            ASHAScheduler, time_attr="training_iteration", max_t=max_t, grace_period=min(s.grace_period, max_t),
            reduction_factor=s.reduction_factor)
    elif s.type == "median":
        make = partial(MedianStoppingRule, time_attr="training_iteration", grace_period=s.grace_period,
                       min_samples_required=2)
    else:
        return FIFOScheduler()
    return make() if s.scope == "global" else CellScheduler(make, s.scope)


def trial_request(exp: Experiment) -> dict[str, float]:
    """What one trial holds at once, summed over its workers (the driver's token CPU included)."""
    r = exp.resources
    cpu = r.cpus_per_worker * r.workers + (DRIVER_CPU if choose_engine(exp) == "torchtrainer" else 0.0)
    return {"CPU": cpu, "GPU": r.gpus_per_worker * r.workers, **r.driver_resources}


def check_resources(loaded: LoadedExperiment, embedded: bool) -> None:
    """A trial that asks for more than Ray has would wait forever: refused on embedded Ray (its resources are
    all there is); on a joined cluster, said once (the autoscaler may still add nodes that have it)."""
    have = ray.cluster_resources()
    for arm in loaded.arms:
        exp = loaded.resolve(arm, loaded.model.matrix.seed[0])
        short = {k: (v, have.get(k, 0.0)) for k, v in trial_request(exp).items() if v > have.get(k, 0.0) + 1e-9}
        if not short:
            continue
        what = ", ".join(f"{k} {need:g} (Ray has {got:g})" for k, (need, got) in short.items())
        where = f"resources (arm {arm})" if len(loaded.arms) > 1 else "resources"
        if embedded:
            raise ConfigError(f"{where}: a trial needs {what}; this machine's Ray cannot give it, so the trial "
                              "would wait forever. Lower workers / cpus_per_worker / gpus_per_worker, or join a "
                              "cluster that has it with --address")
        print(f"note: {where}: a trial needs {what} that no node has now; it waits until the autoscaler adds "
              "a node that has it (`ray status` shows the pending demand)", flush=True)


def max_concurrency(exp: Experiment, embedded: bool) -> int:
    """How many trials may run at once: the file's ``max_concurrent_trials``, else what the CPUs allow."""
    if exp.resources.max_concurrent_trials:
        return exp.resources.max_concurrent_trials
    cpus = ray.cluster_resources().get("CPU", 1.0)
    if embedded:
        cpus -= session.logical_cpus() - (os.cpu_count() or 1)  # the CPUs held back for Ray Data
    else:
        cpus -= 1  # one CPU left for Ray Data tasks on a joined cluster
    per_trial = exp.resources.workers * exp.resources.cpus_per_worker
    return max(1, int(cpus // per_trial))


def run_experiment(loaded: LoadedExperiment, shard_set: ShardSet, storage: Path,
                   embedded: bool = True, verbose: int = 1, resume: bool = False,
                   storage_uri: str | None = None,
                   phase_data: dict[str, PhaseInput] | None = None,
                   live: tune.Callback | None = None) -> tune.ResultGrid:
    """Run every trial of the experiment under Tune; returns Tune's ResultGrid.

    ``resume``: continue the interrupted run in ``storage/<name>`` (Tune's experiment state, the searcher's
    studies, each unfinished trial from its last checkpoint); finished trials are not run again.
    ``storage_uri`` (``s3://…``): where Tune keeps trial folders, checkpoints and experiment state instead of
    ``storage`` (which then holds the local summary, TensorBoard and W&B files; see ``run_folder/storage.py``).
    ``phase_data``: what each phase that reads its own shard set (or mixture) reads (run/phase_data.py).
    ``live``: the live report's callback (a fresh run's; a resumed run gets back the one it was started with).
    """
    exp = loaded.model
    metric, mode = loaded.metric
    engine = choose_engine(exp)
    run_dir = storage / exp.name
    run_dir.mkdir(parents=True, exist_ok=True)
    plan = FoldPlan.from_json(json.loads((run_dir / FOLDS_FILE).read_text())) if exp.matrix.folds else None
    datasets = ingest.fold_datasets(shard_set, plan, cache=exp.data.cache, say=True) if plan else \
        ingest.load_datasets(shard_set, cache=exp.data.cache, say=True)
    for given in (phase_data or {}).values():
        if given.weights is None:
            own = given.sets[0]
            for split, ds in ingest.load_datasets(own, cache=given.cache, say=True, label=f"{own.root} ").items():
                datasets[f"{given.key}/{split}"] = ds
        else:
            datasets.update({f"{given.key}/{split}": ds for split, ds in
                             ingest.mixture(given.sets, given.weights, cache=given.cache, say=True).items()})
    ctx = TrialContext(loaded=loaded, shard_set=shard_set, metric=metric, mode=mode, run_dir=str(run_dir),
                       tensorboard_dir=str(run_dir / "tensorboard"), progress_s=progress_interval(),
                       phase_sets=dict(phase_data or {}),
                       storage=storage_mod.filesystem(storage_mod.join(storage_uri, exp.name)) if storage_uri else None)
    trainable = tune.with_parameters(run_trial, ctx=ctx, datasets=datasets)
    r = exp.resources
    # driver_resources: custom resources the trial actor also asks for, e.g. {trial_driver: 1} that only
    # on-demand nodes offer (cluster.yaml), so losing a spot node never takes a trial driver with it.
    # (cpu/gpu/memory there are refused by the schema, before Ray starts.)
    if engine == "actor":
        trainable = tune.with_resources(trainable, {"cpu": r.cpus_per_worker, "gpu": r.gpus_per_worker,
                                                    **r.driver_resources})
    else:
        # The trial function only drives the TorchTrainer; its workers hold the real resources. A
        # token CPU share (Tune refuses an empty request) keeps the driver schedulable anywhere.
        trainable = tune.with_resources(trainable, {"cpu": DRIVER_CPU, **r.driver_resources})
    if resume:
        # Tune's saved state holds the searcher, scheduler and run config; only the trainable is re-attached.
        restore_from = storage_mod.join(storage_uri, exp.name) if storage_uri else str(run_dir.resolve())
        return tune.Tuner.restore(restore_from, trainable=trainable, resume_unfinished=True,
                                  resume_errored=True).fit()
    searcher = MatrixSearcher(loaded.cells(), loaded.space(), exp.search.num_samples, metric, mode,
                              sampler=exp.search.sampler, objectives=loaded.objectives,
                              max_t=exp.phases[-1].epochs, journal=str(run_dir.resolve() / OPTUNA_JOURNAL))
    chains = phase_chains(loaded)
    from neuroray.run.tracking import wandb_callback  # the driver's: trial processes never import wandb

    callbacks: list[Any] = [cb for cb in [wandb_callback(exp.name, run_dir, chains, (metric, mode))] if cb is not None]
    if exp.tracking.mlflow is not None:  # mlflow's import costs seconds: only runs that use it pay
        from neuroray.run.mlflow_tracking import mlflow_callback

        callbacks.append(mlflow_callback(loaded, run_dir, metric, mode, chains))
    experiment_dir = storage_mod.join(storage_uri, exp.name) if storage_uri else str(run_dir.resolve())
    callbacks.append(StateBackup(experiment_dir))  # a last good state, for --resume after a full disk
    if live is not None:  # the live report (run/live_report.py); on --resume Tune restores it with its state
        callbacks.append(live)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=metric, mode=mode, search_alg=searcher, scheduler=_scheduler(exp),
            num_samples=searcher.total, max_concurrent_trials=max_concurrency(exp, embedded),
            reuse_actors=engine == "actor",
            trial_name_creator=lambda t: trial_label(t.config, t.trial_id),
            trial_dirname_creator=lambda t: trial_label(t.config, t.trial_id),
        ),
        run_config=tune.RunConfig(
            name=exp.name, storage_path=storage_uri or str(storage.resolve()), callbacks=callbacks, verbose=verbose,
            # the best checkpoint by the metric (exports) and, always, the latest (restarts)
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=metric,
                                                    checkpoint_score_order=mode),
            failure_config=tune.FailureConfig(max_failures=r.max_failures),
        ),
    )
    return tuner.fit()
