"""Bad hyper-parameter values and columns (reliability issue D8): caught by `validate` and `run` before Ray
starts, one line naming the file, the phase and the key; before this, each started Ray and errored N trials."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fresh_process import refused_in_a_fresh_process

BASE: dict[str, Any] = {
    "name": "bad-hp",
    "phases": [{"name": "fit", "trainable": "eeg_regressor", "target": "y", "epochs": 1, "batch_size": 16}],
    "search": {"num_samples": 1, "space": {"lr": "loguniform(1e-3, 1e-2)"}},
}


def _hp(**values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda raw: raw["phases"][0].setdefault("hparams", {}).update(values)


def _phase(**values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda raw: raw["phases"][0].update(values)


def _space(**values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda raw: raw["search"]["space"].update(values)


CASES = [  # (id, edit, fragments of the error line)
    ("n_filters-0", _hp(n_filters=0), ["phases.fit.hparams.n_filters: 0 must be >= 1"]),
    ("n_filters-negative", _hp(n_filters=-4), ["phases.fit.hparams.n_filters: -4 must be >= 1"]),
    ("dropout-1.5", _hp(dropout=1.5), ["phases.fit.hparams.dropout: 1.5 must be >= 0 and < 1"]),
    ("search-dropout-beyond-1", _space(dropout="uniform(0.5, 3)"), ["hparams.dropout: 3.0 must be >= 0 and < 1"]),
    ("lr-negative", _space(lr="uniform(-0.1, 0.1)"), ["hparams.lr: -0.1 must be > 0"]),
    ("dropout-nan", _hp(dropout=float("nan")), ["hparams.dropout: nan must be a finite number"]),
    ("weight-decay-negative", _hp(weight_decay=-1), ["hparams.weight_decay: -1.0 must be >= 0"]),
    ("seed-negative", lambda raw: raw.update(matrix={"seed": [-5]}), ["matrix.seed.[0]", "greater than or equal to 0"]),
    ("classifier-one-class", _phase(trainable="eeg_classifier", target="run", hparams={"n_classes": 1}),
     ["hparams.n_classes: 1 must be >= 2"]),
    ("encoder-misspelled", _hp(encoder="eegnexx"), ["phases.fit.hparams.encoder: 'eegnexx' is not one of"]),
    ("metric-not-logged", lambda raw: raw.update(metric={"name": "val/bogus", "mode": "min"}),
     ["metric: 'val/bogus' is not logged by the final phase 'fit'", "it logs: train/loss, val/loss, val/nrmse, val/r"]),
    ("unknown-search-key", _space(n_filterz="int(8, 16)"), ["search.space.n_filterz: no phase's trainable"]),
    # columns, checked against the shard set's manifest before Ray starts
    ("target-string-column", _phase(target="subject"),
     ["phases.fit.target: column 'subject' holds string; this needs a numeric column"]),
    ("target-missing", _phase(target="rt"), ["phases.fit.target: column 'rt' is not in"]),
    ("classifier-float-target", _phase(trainable="eeg_classifier", target="y"),
     ["phases.fit.target: column 'y' holds float; this needs a whole-number (class) column"]),
    ("aux-target-missing", _phase(aux={"target": "p_factr"}), ["phases.fit.hparams.aux_target: column 'p_factr'"]),
    ("aux-target-string", _phase(aux={"target": "task"}), ["hparams.aux_target: column 'task' holds string"]),
]


def _write(path: Path, shards: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    raw = yaml.safe_load(yaml.safe_dump(BASE))
    raw["data"] = {"shards": str(shards)}
    edit(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.parametrize(("edit", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_hparam_or_column_is_one_line_before_ray(edit: Callable[[dict[str, Any]], None], fragments: list[str],
                                                     small_eeg: Path, tmp_path: Path,
                                                     expect_exit2: Callable[..., str]) -> None:
    exp = _write(tmp_path / "exp.yaml", small_eeg, edit)
    runs = tmp_path / "runs"
    column_case = any("column" in f for f in fragments)
    if not column_case:  # the file alone says it: validate knows
        expect_exit2(["validate", str(exp)], str(exp), *fragments)
    expect_exit2(["run", str(exp), "--storage", str(runs)], *fragments)
    assert not (runs / "bad-hp").exists()


def test_refused_without_starting_ray_in_seconds(small_eeg: Path, tmp_path: Path) -> None:
    """A fresh process: exit 2 in well under 15 s, and no Ray process was ever its child."""
    for name, edit, fragments in (CASES[0], CASES[12]):
        exp = _write(tmp_path / f"{name}.yaml", small_eeg, edit)
        lines = refused_in_a_fresh_process(exp, tmp_path / "runs")
        assert len(lines) == 1 and all(f in lines[0] for f in fragments), lines
