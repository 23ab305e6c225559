"""`neuroray run`: validated experiment → Ray → shard set → Tune → results and report."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from neuroray.datasets.eeg.prepare import make_config
from neuroray.datasets.eeg.synthetic_hbn import write_synthetic_hbn
from neuroray.datasets.shards import ShardSet, open_shard_set
from neuroray.datasets.synthetic import write_synthetic_eeg
from neuroray.errors import ConfigError, NeurorayError
from neuroray.platform import report, session
from neuroray.platform.prepare import prepare_eeg, print_result
from neuroray.platform.tune import run_experiment
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

    @property
    def best(self) -> pd.Series | None:
        return report.best_trial(self.trials, self.metric, self.mode)


def _prepare(prep: SyntheticEEG | PrepareEEG | PrepareCommand, root: Path, address: str | None) -> None:
    print(f"preparing {prep.kind} shard set at {root} ...", flush=True)
    if isinstance(prep, SyntheticEEG):
        write_synthetic_eeg(root, overwrite=root.exists(), **prep.model_dump(exclude={"kind"}))
        return
    if isinstance(prep, PrepareCommand):
        from neuroray.datasets.commands import run_prepare

        run_prepare(prep.kind, prep.args + (["--overwrite"] if root.exists() else []), root)
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
    for phase in loaded.model.phases:
        want = registry.get(phase.trainable).modality
        if want != shard_set.manifest["modality"]:
            raise ConfigError(f"phases.{phase.name}.trainable: {phase.trainable!r} takes {want!r} data; "
                              f"{root} holds {shard_set.manifest['modality']!r}")
        if phase.target and phase.target not in shard_set.manifest["columns"]:
            raise ConfigError(f"phases.{phase.name}.target: column {phase.target!r} is not in {root}; "
                              f"columns: {', '.join(shard_set.manifest['columns'])}")
    return shard_set


def check_storage(storage: Path) -> None:
    try:
        storage.mkdir(parents=True, exist_ok=True)
        probe = storage / f".neuroray-write-test-{time.time_ns()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise NeurorayError(f"--storage {storage}: not writable ({e.strerror}); "
                            "choose a folder you can write") from None


def run(loaded: LoadedExperiment, storage: str | Path = "runs", address: str | None = None,
        verbose: int = 1) -> RunSummary:
    start = time.time()
    storage = Path(loaded.model.storage or storage).resolve()
    check_storage(storage)
    conn = session.start(address)
    shard_set = ensure_shards(loaded, address)
    print(f"neuroray: {loaded.name} on {conn.description}; {len(loaded.cells())} cells × "
          f"{loaded.model.search.num_samples} samples", flush=True)
    metric, mode = loaded.metric
    grid = run_experiment(loaded, shard_set, storage, embedded=conn.embedded, verbose=verbose)
    run_dir = storage / loaded.name
    trials = report.trial_rows(grid, metric, mode)
    arms = report.write_reports(run_dir, trials, loaded.name, metric, mode, loaded.arms,
                                shards=str(shard_set.root.resolve()))
    return RunSummary(loaded.name, shard_set, run_dir, metric, mode, trials, arms, time.time() - start)


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
