"""Held-out test scores: after the search, every trial's chosen checkpoint (its best epoch by the val metric)
is scored on the shard set's ``test`` split with its task's own metric code, as Ray tasks.

Selection never sees these numbers: trials, epochs and each cell's pick are chosen on ``val/…``; the report
then ranks arms on ``test/…`` (subjects no trial trained or was selected on), with val beside it.
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import ray

from neuroray.datasets.shards import ShardSet
from neuroray.errors import NeurorayError, first_line
from neuroray.run import ingest, session
from neuroray.run.train import Batches
from neuroray.run_folder.checkpoints import load_checkpoint
from neuroray.run_folder.storage import fetch_checkpoint, is_uri
from neuroray.search_spaces.experiment import LoadedExperiment
from neuroray.trainables.evaluate import score_split

__all__ = ["add_test_scores"]

Job = tuple[int, str, int]  # (row, checkpoint, batch size)
Scored = list[tuple[int, dict[str, float] | str]]  # (row, test metrics or why there are none)


def _score_checkpoints(jobs: list[Job], test: ray.data.Dataset, threads: int) -> Scored:
    """Each checkpoint's ``test/…`` metrics, or the one-line reason it could not be scored."""
    import torch

    # one scoring task per CPU would otherwise print Lightning's start-up banner for every checkpoint
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
    session.configure_data_context()
    torch.set_num_threads(max(1, threads))
    out: Scored = []
    with tempfile.TemporaryDirectory(prefix="neuroray-test-") as cache:
        for row, ckpt, batch_size in jobs:
            try:
                folder = fetch_checkpoint(ckpt, Path(cache)) if is_uri(ckpt) else Path(ckpt)
                module = load_checkpoint(folder)
                out.append((row, score_split(module, Batches(lambda _: test.iterator(), "test", batch_size,
                                                             shuffle=False, seed=0))))
            except Exception as e:  # one trial's missing or broken checkpoint must not lose every other score
                out.append((row, first_line(e)))
    return out


def _batch_size(loaded: LoadedExperiment, row: pd.Series) -> int:
    params = {k[len("param."):]: v for k, v in row.items() if str(k).startswith("param.") and pd.notna(v)}
    try:
        return int(loaded.resolve(str(row["arm"]), int(row["seed"]), params).phases[-1].batch_size)
    except NeurorayError:  # params the space no longer takes: the arm's own setting serves as well
        return int(loaded.resolve(str(row["arm"]), int(row["seed"])).phases[-1].batch_size)


def add_test_scores(trials: pd.DataFrame, loaded: LoadedExperiment, shard_set: ShardSet, tasks: int) -> pd.DataFrame:
    """``trials`` with ``test/<metric>`` columns for every trial that has a checkpoint (``tasks``: how many
    Ray tasks score them side by side). A trial without a checkpoint keeps NaN; so does one whose scoring
    failed, with the reason printed."""
    todo: list[Job] = [(i, str(c), _batch_size(loaded, trials.loc[i])) for i, c in trials["checkpoint"].items()
                       if isinstance(c, str) and c]
    if not todo:
        return trials
    start = time.time()
    print(f"test: scoring {len(todo)} trials' chosen checkpoints on the held-out test split "
          f"({shard_set.rows('test')} rows) ...", flush=True)
    test = ingest.load_datasets(shard_set, splits=("test",), cache=loaded.model.data.cache)["test"]
    r = loaded.model.resources
    remote = ray.remote(_score_checkpoints).options(num_cpus=r.cpus_per_worker, num_gpus=min(1.0, r.gpus_per_worker),
                                                    max_retries=1)
    n = max(1, min(tasks, len(todo)))
    refs = [remote.remote(todo[k::n], test, int(r.cpus_per_worker)) for k in range(n)]
    scored: dict[int, dict[str, float]] = {}
    for part in ray.get(refs):
        for row, result in part:
            if isinstance(result, str):
                print(f"test: trial {trials.at[row, 'trial_id']} not scored: {result}", flush=True)
            else:
                scored[row] = result
    out = trials.copy()
    for col in sorted({k for s in scored.values() for k in s}):
        out[col] = [scored.get(i, {}).get(col, np.nan) for i in out.index]
    print(f"test: {len(scored)}/{len(todo)} trials scored in {time.time() - start:.0f} s", flush=True)
    return out
