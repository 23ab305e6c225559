"""The demo experiment end to end in --smoke mode, on the session's Ray: learns, reports, exports."""

import json
import struct
from collections.abc import Iterator
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
    for _, row in pd.read_csv(smoke_run / "results.csv").iterrows():
        ckpt = Path(row["checkpoint"])
        assert (ckpt / "model.pt").is_file() and (ckpt / "meta.json").is_file()
        # Every epoch is checkpointed; the row's checkpoint (what export ships) is the best epoch's.
        metrics = json.loads((ckpt / "meta.json").read_text())["metrics"]
        assert metrics["phase_epoch"] == row["best_epoch"]
        assert metrics["val/nrmse"] == pytest.approx(row["val/nrmse"])
    assert (smoke_run / "tuner.pkl").is_file()  # Tune's restorable experiment state


def _wandb_records(path: Path) -> Iterator[object]:
    """The records of an offline W&B run file (wandb ≥ 0.2x has no Python reader): a 7-byte header, then
    LevelDB-style 32 KiB blocks of (crc32, length, type) framed chunks, each record a protobuf."""
    from wandb.proto import wandb_internal_pb2 as pb

    block, head = 32768, 7
    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    pos, buf = head, b""
    while pos + head <= len(data):
        if (left := block - pos % block) < head:  # the rest of a block too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + head])
        if kind == 0 and length == 0:
            break
        buf += data[pos + head:pos + head + length]
        pos += head + length
        if kind in (1, 4):  # FULL or LAST chunk: a whole record
            record = pb.Record()
            record.ParseFromString(buf)
            buf = b""
            yield record


def test_wandb_offline_runs_are_grouped_tagged_and_complete(smoke_run: Path) -> None:
    """One W&B run per trial (all logged from one actor), grouped by experiment, tagged arm/seed/phase, every
    epoch logged, and finished cleanly."""
    trials = pd.read_csv(smoke_run / "results.csv")
    files = sorted(smoke_run.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == len(trials)
    seen = set()
    for f in files:
        records = list(_wandb_records(f))
        kinds = [r.WhichOneof("record_type") for r in records]  # type: ignore[attr-defined]
        run = next(r.run for r in records if r.WhichOneof("record_type") == "run")  # type: ignore[attr-defined]
        arm, seed = run.tags[0].removeprefix("arm:"), int(run.tags[1].removeprefix("seed:"))
        assert run.run_group == "demo-smoke" and list(run.tags[2:]) == ["phase:fit"], run.tags
        assert run.display_name.startswith(f"{arm}-s{seed}-")
        row = trials[trials["trial_id"] == run.display_name.rsplit("-", 1)[1]].iloc[0]
        assert (row["arm"], row["seed"]) == (arm, seed)
        assert kinds.count("history") == row["epochs"]
        assert [r.exit.exit_code for r in records if r.WhichOneof("record_type") == "exit"] == [0]  # type: ignore[attr-defined]
        seen.add(run.run_id)
    assert len(seen) == len(files)


def test_export_best_trial_with_parity(smoke_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(smoke_run)]) == 0
    out = capsys.readouterr().out
    assert (smoke_run / "export" / "model.onnx").is_file()
    diff = float(out.split("max |Δ| = ")[1].split()[0])
    assert diff <= 1e-4
    assert main(["export", str(smoke_run), "--trial", "nope"]) == 2
    assert main(["report", str(smoke_run)]) == 0


def test_every_trial_is_scored_on_held_out_test_subjects(smoke_run: Path) -> None:
    """Each trial's chosen (best-val) checkpoint scored on the test split: the same NRMSE a direct computation
    over the test rows gives, the planted signal carries to unseen subjects, and the headline is on it."""
    import numpy as np

    from neuroray.datasets.shards import open_shard_set, tensor_column_to_numpy
    from neuroray.run_folder.checkpoints import load_checkpoint

    df = pd.read_csv(smoke_run / "results.csv")
    ok = df[df["status"] == "OK"]
    assert ok["test/nrmse"].notna().all() and ok["test/r"].notna().all()
    assert ok["test/nrmse"].min() < 0.9  # the mean predictor scores 1.0
    shards = open_shard_set(Path(json.loads((smoke_run / "run.json").read_text())["shards"]))
    table = shards.read_split("test", ["x", "y"])
    x, y = tensor_column_to_numpy(table.column("x")), table.column("y").to_numpy().astype(np.float64)
    row = ok.iloc[0]
    module = load_checkpoint(row["checkpoint"])
    import torch

    with torch.no_grad():
        pred = module(torch.from_numpy(x).float()).double().numpy()
    nrmse = float(np.sqrt(np.mean((pred - y) ** 2)) / y.std())
    assert row["test/nrmse"] == pytest.approx(nrmse, rel=1e-4)
    assert row["test/nrmse"] != pytest.approx(row["val/nrmse"], rel=1e-6)  # another split, not a copy of val
    report = (smoke_run / "report.md").read_text()
    assert "Headline on held-out test subjects: `test/nrmse`" in report
    assert "| shallow | test/nrmse |" in report and "val/nrmse mean" in report
    assert json.loads((smoke_run / "run.json").read_text())["test"] is True


def test_test_scores_as_ray_tasks_match_the_in_process_ones(smoke_run: Path) -> None:
    """The run scored in the driver (embedded CPU Ray); a joined cluster scores as Ray tasks: same numbers."""
    from neuroray.datasets.shards import open_shard_set
    from neuroray.run.test_scores import add_test_scores
    from neuroray.search_spaces.experiment import load

    df = pd.read_parquet(smoke_run / "results.parquet")
    loaded = load(REPO / "experiments" / "demo.yaml", smoke=True)
    shards = open_shard_set(Path(json.loads((smoke_run / "run.json").read_text())["shards"]))
    bare = df.drop(columns=[c for c in df.columns if c.startswith("test/")])
    remote = add_test_scores(bare, loaded, shards, tasks=2).trials
    for col in ("test/nrmse", "test/r", "test/loss"):
        assert remote[col].to_numpy() == pytest.approx(df[col].to_numpy(), rel=1e-5), col


def test_tensorboard_hparams_sessions_compare_trials(smoke_run: Path) -> None:
    """Every trial's TensorBoard run holds an HParams session (arm, seed, search params) and its best epoch's
    metrics as `best/…` scalars, so `tensorboard --logdir runs/<exp>/tensorboard` compares trials there."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    trials = pd.read_csv(smoke_run / "results.csv")
    for _, row in trials.iterrows():
        folder = smoke_run / "tensorboard" / f"{row['arm']}-s{row['seed']}-{row['trial_id']}" / "fit"
        acc = EventAccumulator(str(folder))
        acc.Reload()
        content = acc.PluginTagToContent("hparams")
        assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(content), content.keys()
        data = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        hp = data.session_start_info.hparams
        assert hp["arm"].string_value == row["arm"] and hp["seed"].number_value == row["seed"]
        assert hp["param.lr"].number_value == pytest.approx(row["param.lr"])
        best = acc.Scalars("best/val/nrmse")
        assert best[-1].value == pytest.approx(row["val/nrmse"], rel=1e-5)
        assert min(e.value for e in acc.Scalars("val/nrmse")) == pytest.approx(best[-1].value, rel=1e-5)


def test_wandb_summary_is_the_best_epoch(smoke_run: Path) -> None:
    """Each W&B run's summary holds the metric's best value (define_metric summary=min), not its last."""
    trials = pd.read_csv(smoke_run / "results.csv")
    for f in sorted(smoke_run.glob("wandb/offline-run-*/run-*.wandb")):
        records = list(_wandb_records(f))
        run = next(r.run for r in records if r.WhichOneof("record_type") == "run")  # type: ignore[attr-defined]
        row = trials[trials["trial_id"] == run.display_name.rsplit("-", 1)[1]].iloc[0]
        defined = [r.metric for r in records if r.WhichOneof("record_type") == "metric"]  # type: ignore[attr-defined]
        assert any(m.name == "val/nrmse" and m.summary.min for m in defined), defined
        summaries = [json.loads(item.value_json) for r in records if r.WhichOneof("record_type") == "summary"  # type: ignore[attr-defined]
                     for item in r.summary.update if (item.key or "/".join(item.nested_key)) == "val/nrmse"]
        assert summaries and summaries[-1] == {"min": pytest.approx(row["val/nrmse"], rel=1e-5)}, summaries
