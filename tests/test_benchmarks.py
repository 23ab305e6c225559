"""The ingest benchmark in a tiny configuration, so benchmarks/ keeps running (it asserts nothing about time).

What it does assert is issue 4's property: the tensor column reaches numpy without a copy, and
``load_datasets`` materializes one block per Parquet file (not one tiny block per row).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ lives beside src/, not in the package

from benchmarks import ingest  # noqa: E402
from benchmarks.common import render  # noqa: E402


def test_ingest_quick_zero_copy(ray_session: None) -> None:
    result = ingest.run(quick=True, repeats=1, train_worker=False)
    assert result["zero_copy"]["block_to_numpy_shares_arrow_buffer"]
    assert result["zero_copy"]["whole_block_batch_is_readonly_view"]
    for kind, b in result["materialized_blocks"].items():
        assert b["blocks"] == b["files"], kind
    labels = [r["label"] for r in result["rows"]]
    assert len(labels) == 2 and all("actor engine" in label for label in labels)
    for r in result["rows"]:
        assert r["figure"]["median"] > 0 and r["baseline"]["median"] > 0 and r["ratio"] > 0
    table = "\n".join(render(result))
    assert "| volume 1×46×55×46: actor engine" in table


def test_gpu_entry_is_marked_skipped_without_a_device() -> None:
    import torch

    from benchmarks import gpu_training

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the entry measures instead")
    r = gpu_training.run()
    assert r["rows"] == [] and "no device" in r["skipped"] and "--device cpu --quick" in r["skipped"]


@pytest.mark.slow
def test_gpu_script_dry_run_on_cpu(ray_session: None, tmp_path: Path) -> None:
    """Issue 20 item 4: the one GPU script runs every section end to end (CPU, quick) before GPU time is spent."""
    import json

    from benchmarks import gpu_training

    assert gpu_training.main(["--device", "cpu", "--quick", "--out", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "gpu_training.json").read_text())
    assert r["errors"] == [] and r["device"] == "cpu" and r["gpu"] is None and r["date"]
    assert set(r["sections"]) == {"data_wait", "precision", "torchtrainer", "onnx_cuda"}
    labels = " | ".join(x["label"] for x in r["rows"])
    for part in ("wait / (wait + compute)", "steps/s vs plain Lightning", "bf16-mixed vs 32-true",
                 "resources.precision: bf16-mixed", "TorchTrainer engine, one 1-worker trial"):
        assert part in labels, part
    for x in r["rows"]:
        assert x["figure"]["median"] > 0 or "overhead" in x["label"] or "wait /" in x["label"], x
    assert "CUDAExecutionProvider" in r["sections"]["onnx_cuda"]["skipped"]
    assert "| cpu: plain Lightning steps/s" in "\n".join(render(r))
