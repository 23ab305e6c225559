"""The ingest benchmark in a tiny configuration, so benchmarks/ keeps running (it asserts nothing about time).

What it does assert is issue 4's property: the tensor column reaches numpy without a copy, and
``load_datasets`` materializes one block per Parquet file (not one tiny block per row).
"""

from __future__ import annotations

import sys
from pathlib import Path

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
