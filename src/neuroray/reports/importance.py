"""Optuna parameter importance from a finished run's trial table (its ``param.*`` columns + the metric).

The run's searcher state is not needed: the trials are rebuilt as an in-memory Optuna study with
``optuna.trial.create_trial``. Distributions are inferred from the values seen (a float range spanning
≥ 2 decades of positive values is treated as log-uniform, as the search spaces declare learning rates).
"""

from __future__ import annotations

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


def param_importances(trials: pd.DataFrame, metric: str, mode: str) -> tuple[dict[str, float], str]:
    """(importance per parameter, note); empty with the reason when there is nothing to rank."""
    params = [c for c in trials.columns if c.startswith("param.")]
    done = trials[trials[metric].notna()] if metric in trials else trials.iloc[0:0]
    if not params:
        return {}, "no parameter importance: the experiment has no search parameters"
    if len(done) < MIN_TRIALS:
        return {}, f"no parameter importance: {len(done)} finished trial(s), at least {MIN_TRIALS} needed"
    dists = {c: d for c in params if (d := _distribution(done[c])) is not None}
    if not dists:
        return {}, "no parameter importance: every search parameter took a single value"
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line per report
    study = optuna.create_study(direction="minimize" if mode == "min" else "maximize")
    for _, row in done.iterrows():
        present = {c: d for c, d in dists.items() if not pd.isna(row[c])}
        study.add_trial(optuna.trial.create_trial(
            params={c[len("param."):]: _value(d, row[c]) for c, d in present.items()},
            distributions={c[len("param."):]: d for c, d in present.items()},
            value=float(row[metric])))
    method = "fANOVA"
    try:
        imp = optuna.importance.get_param_importances(study)
    except ImportError:  # fANOVA needs scikit-learn; PED-ANOVA does not
        method = "PED-ANOVA"
        imp = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    except RuntimeError as e:  # e.g. conditional parameters with no trial holding them all
        return {}, f"no parameter importance: {e}"
    if not imp:
        return {}, "no parameter importance: no parameter is shared by all finished trials"
    return {k: float(v) for k, v in imp.items()}, (
        f"Optuna {method} importance of {len(imp)} parameter(s) over {len(done)} finished trials (all arms/seeds)")
