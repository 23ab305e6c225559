"""`neuroray export --challenge eeg2025`: the zip is loaded back the way the challenge's scorer loads it and scored."""

from __future__ import annotations

import ast
import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from export_runs import CASES, fit_regressor, write_run, write_shards

from neuroray.cli import main
from neuroray.datasets.shards import open_shard_set, tensor_column_to_numpy
from neuroray.datasets.synthetic import write_synthetic_eeg
from neuroray.run_folder.checkpoints import load_checkpoint
from neuroray.trainables import base
from neuroray.trainables.metrics import nrmse

FILES = ["model_challenge_1.json", "model_challenge_2.json", "submission.py", "weights_challenge_1.pt",
         "weights_challenge_2.pt"]


@pytest.fixture(scope="module")
def challenge_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Two finished runs on 129 ch x 200 samples at 100 Hz: a fitted `shallow` regressor (challenge 1) and a
    braindecode EEGNeX regressor (challenge 2, untrained: it exercises the braindecode code path)."""
    work = tmp_path_factory.mktemp("eeg2025")
    write_synthetic_eeg(work / "eeg", n_subjects=6, windows_per_subject=8, n_chans=129, n_times=200, seed=1)
    spec = open_shard_set(work / "eeg").spec
    torch.manual_seed(0)
    c1 = fit_regressor(base.build("eeg_regressor", spec, {"encoder": "shallow"}, "y"), work / "eeg", steps=25,
                       lr=1e-2)
    c2 = base.build("eeg_regressor", spec, {"encoder": "eegnex"}, "y")
    c2.set_target_stats(0.1, 0.9)
    return (write_run(work / "c1", work / "eeg", {"t1": c1}, "val/nrmse", "min"),
            write_run(work / "c2", work / "eeg", {"t2": c2}, "val/nrmse", "min"), work / "eeg")


def _import_like_the_scorer(path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("submission", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_submission_zip_round_trips_and_scores(challenge_runs: tuple[Path, Path, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    c1, c2, shards = challenge_runs
    out = tmp_path / "submission.zip"
    assert main(["export", "--challenge", "eeg2025", "--challenge1", str(c1), "--challenge2", f"{c2}@t2",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "challenge 1: shallow regressor" in printed and "challenge 2: eegnex regressor" in printed
    with zipfile.ZipFile(out) as zf:
        assert sorted(zf.namelist()) == FILES  # flat, at the zip's root
        zf.extractall(tmp_path / "scoring")
    source = (tmp_path / "scoring" / "submission.py").read_text()
    imported = {n.names[0].name if isinstance(n, ast.Import) else n.module
                for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Import | ast.ImportFrom)}
    assert imported <= {"json", "pathlib", "torch", "braindecode.models"}  # no neuroray at the scorer

    sub = _import_like_the_scorer(tmp_path / "scoring" / "submission.py").Submission(100, "cpu")
    # a synthetic evaluation set: the test split, un-normalized back to the raw units the scorer feeds
    shard_set = open_shard_set(shards)
    table = shard_set.read_split("test", ["x", "y"])
    x = tensor_column_to_numpy(table["x"])
    norm = shard_set.manifest["normalization"]
    raw = (x * np.asarray(norm["std"])[:, None] + np.asarray(norm["mean"])[:, None]).astype(np.float32)
    y = torch.from_numpy(table["y"].to_numpy())
    scores = {}
    for challenge, run, trial in ((1, c1, "t1"), (2, c2, "t2")):
        model = getattr(sub, f"get_model_challenge_{challenge}")()
        assert isinstance(model, torch.nn.Module) and not model.training
        with torch.no_grad():
            got = model(torch.from_numpy(raw))
            ref = load_checkpoint(run / "checkpoints" / trial)(torch.from_numpy(x.copy()))
        assert got.shape == (len(x), 1)
        assert torch.allclose(got.reshape(-1), ref, atol=1e-4 * max(1.0, float(ref.abs().max())))
        scores[challenge] = nrmse(got.reshape(-1), y)
        assert scores[challenge] == pytest.approx(nrmse(ref, y), rel=1e-5)
    assert scores[1] < 0.9  # the fitted model beats the mean predictor (NRMSE 1.0) on the planted target


def test_submission_refuses_models_the_scorer_cannot_feed(challenge_runs: tuple[Path, Path, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    c1, _, _ = challenge_runs
    spec, hparams, _ = CASES["eeg_regressor"]
    shards = write_shards(tmp_path / "small", spec)
    small = write_run(tmp_path / "small-run", shards, {"s": base.build("eeg_regressor", spec, hparams, "y")},
                      "val/nrmse", "min")
    clf = write_run(tmp_path / "clf-run", shards, {"k": base.build("eeg_classifier", spec, {}, "label")},
                    "val/auroc", "max")
    out = tmp_path / "s.zip"
    for bad, expected in ((small, "the scorer feeds 129 x 200 at 100 Hz"), (clf, "take eeg_regressor models")):
        assert main(["export", "--challenge", "eeg2025", "--challenge1", str(c1), "--challenge2", str(bad),
                     "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, err
    assert not out.exists()
