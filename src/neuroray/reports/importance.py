"""Optuna parameter importance of a finished run.

From the run's own studies when it has them (``optuna.journal``: every cell's study, with the distributions
the search declared; their COMPLETE trials pooled into one study). A run folder from before the journal is
rebuilt from its trial table instead (``param.*`` columns + the metric, via ``optuna.trial.create_trial``),
with distributions inferred from the values seen (a float range spanning ≥ 2 decades of positive values is
treated as log-uniform, as the search spaces declare learning rates).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

MIN_TRIALS = 3


def _distribution(values: pd.Series) -> BaseDistribution | None:
    v = values.dropna()
    if v.nunique() < 2:  # a constant says nothing about importance
        return None
    if pd.api.types.is_bool_dtype(v) or not pd.api.types.is_numeric_dtype(v):
        return CategoricalDistribution(sorted({str(x) for x in v}))
    lo, hi = float(v.min()), float(v.max())
    if pd.api.types.is_integer_dtype(v) or (bool(np.all(np.mod(v.to_numpy(float), 1) == 0)) and hi - lo < 1e6):
        return IntDistribution(int(lo), int(hi))
    return FloatDistribution(lo, hi, log=lo > 0 and hi / lo >= 100)


def _value(dist: BaseDistribution, v: Any) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return str(v)
    return int(v) if isinstance(dist, IntDistribution) else float(v)


def journal_study(journal: Path, mode: str) -> tuple[optuna.Study, int] | None:
    """Every cell study's COMPLETE trials in ``journal``, pooled into one in-memory study (their first
    objective), and how many studies there were; None without a journal or with no complete trial."""
    if not journal.is_file():
        return None
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(journal)))
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    pooled = optuna.create_study(direction="minimize" if mode == "min" else "maximize")
    for summary in summaries:
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if t.values:
                pooled.add_trial(optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                                           value=float(t.values[0])))
    return (pooled, len(summaries)) if pooled.trials else None


def _rank(study: optuna.Study) -> tuple[dict[str, float], str]:
    method = "fANOVA"
    try:
        imp = optuna.importance.get_param_importances(study)
    except ImportError:  # fANOVA needs scikit-learn; PED-ANOVA does not
        method = "PED-ANOVA"
        imp = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    return {k: float(v) for k, v in imp.items()}, method


def param_importances(trials: pd.DataFrame, metric: str, mode: str,
                      journal: Path | None = None) -> tuple[dict[str, float], str]:
    """(importance per parameter, note); empty with the reason when there is nothing to rank. ``journal``: the
    run's optuna.journal, read when it is there."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line per report
    pooled = journal_study(journal, mode) if journal is not None else None
    if pooled is not None:
        study, n_studies = pooled
        if len(study.trials) < MIN_TRIALS:
            return {}, (f"no parameter importance: {len(study.trials)} completed trial(s) in the run's Optuna "
                        f"studies, at least {MIN_TRIALS} needed (trials the scheduler stopped are PRUNED)")
        try:
            imp, method = _rank(study)
        except RuntimeError as e:
            return {}, f"no parameter importance: {e}"
        if not imp:
            return {}, "no parameter importance: no parameter is shared by all completed trials"
        return imp, (f"Optuna {method} importance of {len(imp)} parameter(s) over the {len(study.trials)} completed "
                     f"trials of the run's {n_studies} Optuna studies (optuna.journal; the last reported value "
                     "of each; pruned trials left out)")
    params = [c for c in trials.columns if c.startswith("param.")]
    done = trials[trials[metric].notna()] if metric in trials else trials.iloc[0:0]
    if not params:
        return {}, "no parameter importance: the experiment has no search parameters"
    if len(done) < MIN_TRIALS:
        return {}, f"no parameter importance: {len(done)} finished trial(s), at least {MIN_TRIALS} needed"
    dists = {c: d for c in params if (d := _distribution(done[c])) is not None}
    if not dists:
        return {}, "no parameter importance: every search parameter took a single value"
    study = optuna.create_study(direction="minimize" if mode == "min" else "maximize")
    for _, row in done.iterrows():
        present = {c: d for c, d in dists.items() if not pd.isna(row[c])}
        study.add_trial(optuna.trial.create_trial(
            params={c[len("param."):]: _value(d, row[c]) for c, d in present.items()},
            distributions={c[len("param."):]: d for c, d in present.items()},
            value=float(row[metric])))
    try:
        imp, method = _rank(study)
    except RuntimeError as e:  # e.g. conditional parameters with no trial holding them all
        return {}, f"no parameter importance: {e}"
    if not imp:
        return {}, "no parameter importance: no parameter is shared by all finished trials"
    return imp, (
        f"Optuna {method} importance of {len(imp)} parameter(s) over {len(done)} finished trials (all arms/seeds)")
