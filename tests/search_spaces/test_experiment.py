import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from neuroray.cli import main
from neuroray.errors import ConfigError
from neuroray.search_spaces import distributions
from neuroray.search_spaces.experiment import load

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "experiments" / "demo.yaml"


def _variant(tmp_path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    raw = yaml.safe_load(DEMO.read_text())
    edit(raw)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_demo_file_loads_and_expands() -> None:
    loaded = load(DEMO)
    assert loaded.arms == ["shallow", "conv"] and len(loaded.cells()) == 4
    assert loaded.metric == ("val/nrmse", "min")
    exp = loaded.resolve("conv", 1, {"lr": 0.004, "dropout": 0.1})
    assert exp.phases[0].hparams == {"encoder": "conv", "lr": 0.004, "dropout": 0.1}
    smoke = load(DEMO, smoke=True)
    assert smoke.name == "demo-smoke" and smoke.model.search.num_samples == 1
    assert smoke.model.data.shards != loaded.model.data.shards


BAD = [  # one (edit, expected message) per line
    (lambda r: r["phases"][0].update(epochz=3), "unknown key 'phases.fit.epochz'; allowed here: name, trainable, epochs"),
    (lambda r: r.update(metrics={"name": "x"}), "unknown key 'metrics'; allowed here: name, description, data"),
    (lambda r: r["phases"][0].update(epochs="many"), "phases.fit.epochs: Input should be a valid integer"),
    (lambda r: r["phases"][0].update(trainable="eeg_regresor"), "unknown trainable 'eeg_regresor'; available:"),
    (lambda r: r["search"]["space"].update(lr="lognormal(1, 2)"), "unknown distribution 'lognormal'; allowed: uniform"),
    (lambda r: r["search"]["space"].update(lr="uniform(0.1, 0.01)"), "search.space.lr: low 0.1 > high 0.01"),
    (lambda r: r["search"]["space"].update(lr="loguniform(0, 1)"), "loguniform bounds must be > 0"),
    (lambda r: r["search"]["space"].update(momentum="uniform(0, 1)"), "no phase's trainable has a hyper-parameter 'momentum'"),
    (lambda r: r["phases"][0].update({"from": "pretrain"}), "phases.fit.from: 'pretrain' is not an earlier phase"),
    (lambda r: r["matrix"]["arm"].update(bad={"phases.fitt.epochs": 2}), "no phase named 'fitt'"),
    (lambda r: r["matrix"]["arm"].update(bad={"phases.fit.hparams.encoder": "rnn"}), "encoder: 'rnn' is not one of"),
    (lambda r: r["resources"].update(engine="spark"), "resources.engine: Input should be 'auto', 'actor' or 'torchtrainer'"),
    (lambda r: r["resources"].update(precision="bf16"),
     "resources.precision: Input should be '32-true', 'bf16-mixed' or '16-mixed'"),
]


@pytest.mark.parametrize(("edit", "message"), BAD)
def test_bad_files_fail_with_one_line_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      edit, message: str) -> None:  # type: ignore[no-untyped-def]
    path = _variant(tmp_path, edit)
    with pytest.raises(ConfigError):
        load(path)
    assert main(["run", str(path), "--storage", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()  # nothing written: validation precedes everything


def test_yaml_syntax_error_names_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nphases: [\n  {name: a\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:" in err and "YAML syntax error" in err and len(err.strip().splitlines()) == 1


def test_cli_process_exits_2_without_traceback(tmp_path: Path) -> None:
    path = _variant(tmp_path, lambda r: r["phases"][0].update(epochz=3))
    proc = subprocess.run([sys.executable, "-m", "neuroray", "run", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "epochz" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_distribution_parsing() -> None:
    d = distributions.parse("int(2, 10, 2)", "k")
    assert (d.kind, d.low, d.high, d.step) == ("int", 2, 10, 2)
    assert distributions.parse("choice(['a', 'b'])", "k").choices == ("a", "b")
    assert distributions.parse("choice(1, 2, 3)", "k").to_optuna().choices == (1, 2, 3)
    with pytest.raises(ConfigError, match="k: int\\(\\) bounds must be integers"):
        distributions.parse("int(1.5, 3)", "k")


def test_multiphase_aux_and_freeze_fold_into_hparams(tmp_path: Path) -> None:
    raw = {
        "name": "mp", "data": {"shards": "data/x"},
        "phases": [
            {"name": "pretrain", "trainable": "eeg_masked_pretrain", "epochs": 2,
             "aux": {"target": "p_factor", "weight": 0.15}},
            {"name": "contrastive", "from": "pretrain", "trainable": "eeg_contrastive", "epochs": 2},
            {"name": "finetune", "from": "contrastive", "trainable": "eeg_regressor", "target": "rt",
             "freeze_epochs": 1, "epochs": 3},
        ],
        "matrix": {"arm": {"full": {}, "no_aux": {"phases.pretrain.aux": False},
                           "supervised": {"phases.pretrain": False, "phases.contrastive": False}}},
    }
    path = tmp_path / "mp.yaml"
    path.write_text(yaml.safe_dump(raw))
    loaded = load(path)
    full = loaded.resolve("full", 0)
    assert full.phases[0].hparams == {"aux_target": "p_factor", "aux_weight": 0.15}
    assert full.phases[2].hparams == {"freeze_epochs": 1}
    assert loaded.resolve("no_aux", 0).phases[0].hparams == {}
    supervised = loaded.resolve("supervised", 0)
    assert [p.name for p in supervised.phases] == ["finetune"] and supervised.phases[0].from_ is None
    assert supervised.phases[0].hparams == {}  # no carried-over encoder: nothing to freeze

    raw["phases"][0]["trainable"] = "vae3d"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"phases.pretrain \(arm full\).aux: trainable 'vae3d' does not support it"):
        load(path)
