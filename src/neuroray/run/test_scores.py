"""Held-out test scores: after the search, every trial's chosen checkpoint (its best epoch by the val metric)
is scored on the shard set's ``test`` split with its task's own metric code, as Ray tasks.

Selection never sees these numbers: trials, epochs and each cell's pick are chosen on ``val/…``; the report
then ranks arms on ``test/…`` (subjects no trial trained or was selected on), with val beside it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray

from neuroray.datasets.folds import group_column
from neuroray.datasets.shards import ShardSet
from neuroray.errors import NeurorayError, first_line
from neuroray.reports.source import CONFUSION
from neuroray.reports.stats import best_per_cell
from neuroray.run import ingest, session
from neuroray.run.train import Batches
from neuroray.run_folder.checkpoints import load_checkpoint
from neuroray.run_folder.storage import fetch_checkpoint, is_uri
from neuroray.search_spaces.experiment import LoadedExperiment
from neuroray.trainables.evaluate import confusion, score_split

__all__ = ["SUBJECTS_MIN", "TestScores", "add_test_scores"]

SUBJECTS_MIN = 5  # test subjects from which each cell's pick is also scored per subject (MOABB's comparison)

Job = tuple[int, str, int, bool]  # (row, checkpoint, batch size, also per subject)
# (row, metrics or why not, per subject, a classifier's confusion matrix on the whole test split)
Scored = list[tuple[int, dict[str, float] | str, dict[str, dict[str, float]], list[list[int]] | None]]


def _batches(ds: ray.data.Dataset, batch_size: int) -> Batches:
    return Batches(lambda _: ds.iterator(), "test", batch_size, shuffle=False, seed=0)


def _score_checkpoints(jobs: list[Job], test: ray.data.Dataset, subjects: dict[str, ray.data.Dataset],
                       threads: int) -> Scored:
    """Each checkpoint's ``test/…`` metrics (and, where asked, per test subject), or the one-line reason it
    could not be scored."""
    import torch

    # one scoring task per CPU would otherwise print Lightning's start-up banner for every checkpoint
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
    session.configure_data_context()
    torch.set_num_threads(max(1, threads))
    out: Scored = []
    with tempfile.TemporaryDirectory(prefix="neuroray-test-") as cache:
        for row, ckpt, batch_size, per_subject in jobs:
            try:
                folder = fetch_checkpoint(ckpt, Path(cache)) if is_uri(ckpt) else Path(ckpt)
                module = load_checkpoint(folder)
                whole = score_split(module, _batches(test, batch_size))
                matrix = confusion(module)  # before the per-subject passes replace it
                each = {g: score_split(module, _batches(ds, batch_size)) for g, ds in subjects.items()} \
                    if per_subject else {}
                out.append((row, whole, each, matrix))
            except Exception as e:  # one trial's missing or broken checkpoint must not lose every other score
                out.append((row, first_line(e), {}, None))
    return out


def _batch_sizes(loaded: LoadedExperiment, trials: pd.DataFrame) -> dict[Any, int]:
    """Each checkpointed trial's final-phase batch size, resolving each distinct (arm, seed, params) once (a
    trial that died before it started has no checkpoint, and may have no seed either)."""
    seen: dict[str, int] = {}
    out: dict[Any, int] = {}
    for i, row in trials.iterrows():
        if not (isinstance(row.get("checkpoint"), str) and row["checkpoint"]):
            continue
        params = {k[len("param."):]: v for k, v in row.items() if str(k).startswith("param.") and pd.notna(v)}
        key = json.dumps([str(row["arm"]), int(row["seed"]), params], sort_keys=True, default=str)
        if key not in seen:
            try:
                seen[key] = int(loaded.resolve(str(row["arm"]), int(row["seed"]), params).phases[-1].batch_size)
            except NeurorayError:  # params the space no longer takes: the arm's own setting serves as well
                seen[key] = int(loaded.resolve(str(row["arm"]), int(row["seed"])).phases[-1].batch_size)
        out[i] = seen[key]
    return out


@dataclass
class TestScores:
    """The trial table with ``test/…`` columns, and each cell pick's scores per test subject (empty below
    ``SUBJECTS_MIN`` test subjects): trial_id, arm, seed[, fold], subject, ``test/…``."""

    trials: pd.DataFrame
    subjects: pd.DataFrame


def _test_sets(shard_set: ShardSet, cache: str, by: str | None,
               groups: list[str]) -> tuple[ray.data.Dataset, dict[str, ray.data.Dataset]]:
    """The whole test split, and one filtered view of it per subject in ``groups``."""
    if not groups or by is None:
        return ingest.load_datasets(shard_set, splits=("test",), cache=cache)["test"], {}
    test = ingest.load_datasets(shard_set, splits=("test",), cache=cache, extra_columns=[by])["test"]
    subjects = {g: ingest.keep_groups(test, by, [g]) for g in groups}
    return test.drop_columns([by]), subjects


def add_test_scores(trials: pd.DataFrame, loaded: LoadedExperiment, shard_set: ShardSet, tasks: int,
                    in_process: bool = False) -> TestScores:
    """``test/<metric>`` columns for every trial that has a checkpoint (``tasks``: how many Ray tasks score
    them side by side), and, with at least ``SUBJECTS_MIN`` test subjects, each cell's pick (best by val) per
    subject. A trial without a checkpoint keeps NaN; so does one whose scoring failed, with the reason printed.

    ``in_process``: score here instead (an embedded CPU-only Ray on this machine: the trial actors are gone
    when the search ends, and a fresh Ray worker spends ~5 s importing torch and Lightning before its first
    checkpoint, more than scoring a small study takes)."""
    metric, mode = loaded.metric
    picks = set(best_per_cell(trials, metric, mode)["trial_id"]) if metric in trials else set()
    by = group_column(shard_set)
    groups = plan_subjects(shard_set, by)
    sizes = _batch_sizes(loaded, trials)
    todo: list[Job] = [(i, str(c), sizes[i], bool(groups) and trials.at[i, "trial_id"] in picks)
                       for i, c in trials["checkpoint"].items() if isinstance(c, str) and c]
    if not todo:
        return TestScores(trials, pd.DataFrame())
    start = time.time()
    each = f"; each cell's pick also per subject ({len(groups)} {by}s)" if groups else ""
    print(f"test: scoring {len(todo)} trials' chosen checkpoints on the held-out test split "
          f"({shard_set.rows('test')} rows{each}) ...", flush=True)
    test, subjects = _test_sets(shard_set, loaded.model.data.cache, by, groups)
    r = loaded.model.resources
    if in_process:
        parts = [_score_checkpoints(todo, test, subjects, os.cpu_count() or 1)]
    else:
        remote = ray.remote(_score_checkpoints).options(num_cpus=r.cpus_per_worker,
                                                        num_gpus=min(1.0, r.gpus_per_worker), max_retries=1)
        n = max(1, min(tasks, len(todo)))
        parts = ray.get([remote.remote(todo[k::n], test, subjects, int(r.cpus_per_worker)) for k in range(n)])
    scored: dict[int, dict[str, float]] = {}
    matrices: dict[int, str] = {}
    per_subject: list[dict[str, object]] = []
    keys = [k for k in ("trial_id", "arm", "seed", "fold") if k in trials]
    for part in parts:
        for row, result, by_subject, matrix in part:
            if isinstance(result, str):
                print(f"test: trial {trials.at[row, 'trial_id']} not scored: {result}", flush=True)
                continue
            scored[row] = result
            if matrix is not None:
                matrices[row] = json.dumps(matrix)
            per_subject += [{**{k: trials.at[row, k] for k in keys}, "subject": g, **m} for g, m in by_subject.items()]
    out = trials.copy()
    for col in sorted({k for s in scored.values() for k in s}):
        out[col] = [scored.get(i, {}).get(col, np.nan) for i in out.index]
    if matrices:  # JSON [[count, …], …]: rows true class, columns predicted (reports/plots.py draws it)
        out[CONFUSION] = [matrices.get(i) for i in out.index]
    print(f"test: {len(scored)}/{len(todo)} trials scored in {time.time() - start:.0f} s", flush=True)
    return TestScores(out, pd.DataFrame(per_subject))


def plan_subjects(shard_set: ShardSet, by: str) -> list[str]:
    """The test split's subjects (groups), when there are enough of them for a per-subject comparison."""
    if by not in shard_set.manifest["columns"]:
        return []
    groups = sorted({str(g) for g in shard_set.read_split("test", [by]).column(by).to_pylist()})
    return groups if len(groups) >= SUBJECTS_MIN else []
