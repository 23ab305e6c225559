"""`neuroray demo`: the whole platform on synthetic EEG, on an embedded Ray, offline, in minutes."""

from __future__ import annotations

import shutil
from pathlib import Path

from neuroray.errors import NeurorayError
from neuroray.export.to_onnx import PARITY_TOL, export_checkpoint
from neuroray.run.runner import print_summary, run
from neuroray.search_spaces.experiment import load


def demo_file() -> Path:
    """experiments/demo.yaml of the working directory, else of the source checkout."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (base / "experiments" / "demo.yaml").is_file():
            return base / "experiments" / "demo.yaml"
    raise NeurorayError("experiments/demo.yaml not found; run `neuroray demo` from the neuroray checkout")


def demo(storage: Path = Path("runs"), smoke: bool = False, address: str | None = None) -> int:
    """`neuroray demo`: run experiments/demo.yaml, print its summary, export the best trial; returns the exit code."""
    loaded = load(demo_file(), smoke=smoke)
    run_dir = storage / loaded.name
    shutil.rmtree(run_dir, ignore_errors=True)  # the demo always starts clean
    summary = run(loaded, storage=storage, address=address)
    print_summary(summary)
    best = summary.best
    if best is None:
        print("no trial finished; nothing to export")
        return 1
    result = export_checkpoint(best["checkpoint"], summary.shard_set, summary.run_dir / "export")
    ok = result.max_abs_diff <= PARITY_TOL
    print(f"ONNX: {result.path} — onnxruntime vs torch max |Δ| = {result.max_abs_diff:.2e} on "
          f"{result.n_windows} validation windows ({'ok' if ok else 'FAILED'}: tolerance {PARITY_TOL:g})")
    return 0 if ok else 1
