"""Both engines run the same loop: in the trial actor (single worker) and via a Train V2 TorchTrainer."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from neuroray.errors import ConfigError
from neuroray.run.runner import run
from neuroray.run.tune import choose_engine
from neuroray.search_spaces.experiment import load


def _experiment(tmp_path: Path, shards: Path, **resources: object) -> Path:
    exp = {
        "name": f"engine-{resources.get('engine', 'auto')}",
        "data": {"shards": str(shards)},
        "phases": [{"name": "fit", "trainable": "eeg_regressor", "target": "y", "epochs": 2, "batch_size": 16,
                    "hparams": {"lr": 5e-3}}],
        "metric": {"name": "val/nrmse", "mode": "min"},
        "resources": {"workers": 1, "cpus_per_worker": 1, **resources},
    }
    path = tmp_path / f"{exp['name']}.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


def test_engine_choice_rules(tmp_path: Path, small_eeg: Path) -> None:
    assert choose_engine(load(_experiment(tmp_path, small_eeg)).model) == "actor"
    assert choose_engine(load(_experiment(tmp_path, small_eeg, workers=2)).model) == "torchtrainer"
    with pytest.raises(ConfigError, match="'actor' runs one worker"):
        choose_engine(load(_experiment(tmp_path, small_eeg, workers=2, engine="actor")).model)


# The 2-worker TorchTrainer case is ~65 s of Train V2 start-up for one 2-epoch trial: slow-marked to keep the
# default run under 20 minutes on 2 cores (`make test-all` runs it).
@pytest.mark.parametrize("resources", [{"engine": "actor"},
                                       pytest.param({"engine": "torchtrainer", "workers": 2}, marks=pytest.mark.slow)],
                         ids=["actor", "torchtrainer-2-workers"])
def test_engine_trains_reports_and_checkpoints(ray_session: None, tmp_path: Path, small_eeg: Path,
                                               resources: dict[str, object]) -> None:
    summary = run(load(_experiment(tmp_path, small_eeg, **resources)), storage=tmp_path / "runs", verbose=0)
    df = pd.read_csv(summary.run_dir / "results.csv")
    assert len(df) == 1 and df.loc[0, "status"] == "OK", df.loc[0, "error"]
    assert df.loc[0, "epochs"] == 2 and 0 < df.loc[0, "val/nrmse"] < 1.5
    assert (Path(df.loc[0, "checkpoint"]) / "model.pt").is_file()
