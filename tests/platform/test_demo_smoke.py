"""The demo experiment end to end in --smoke mode, on the session's Ray: learns, reports, exports."""

from pathlib import Path

import pandas as pd
import pytest

from neuroray.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke_run(demo_smoke_run: Path) -> Path:
    return demo_smoke_run


def test_results_cover_matrix_and_model_learns(smoke_run: Path) -> None:
    df = pd.read_csv(smoke_run / "results.csv")
    assert len(df) == 4 and set(df["arm"]) == {"shallow", "conv"} and set(df["seed"]) == {0, 1}
    assert (df["status"] == "OK").all()
    assert {"param.lr", "param.dropout", "val/nrmse", "checkpoint"} <= set(df.columns)
    # The mean predictor scores NRMSE 1.0; the best trial must learn the planted target.
    assert df["val/nrmse"].min() < 0.9


def test_report_dashboards_and_checkpoints(smoke_run: Path) -> None:
    report = (smoke_run / "report.md").read_text()
    assert "| shallow |" in report and "| conv |" in report and "delta_vs_shallow" in report
    assert list((smoke_run / "tensorboard").rglob("events.out.tfevents.*"))
    assert list((smoke_run / "wandb").glob("offline-run-*"))
    for ckpt in pd.read_csv(smoke_run / "results.csv")["checkpoint"]:
        assert (Path(ckpt) / "model.pt").is_file() and (Path(ckpt) / "meta.json").is_file()
    assert (smoke_run / "tuner.pkl").is_file()  # Tune's restorable experiment state


def test_export_best_trial_with_parity(smoke_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(smoke_run)]) == 0
    out = capsys.readouterr().out
    assert (smoke_run / "export" / "model.onnx").is_file()
    diff = float(out.split("max |Δ| = ")[1].split()[0])
    assert diff <= 1e-4
    assert main(["export", str(smoke_run), "--trial", "nope"]) == 2
    assert main(["report", str(smoke_run)]) == 0
