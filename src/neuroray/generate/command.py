"""`neuroray generate`'s arguments and what it prints (the work is in the modules beside this one)."""

from __future__ import annotations

import argparse
from pathlib import Path

from neuroray.errors import NeurorayError
from neuroray.outputs import check_count, check_output

__all__ = ["HELP", "add_arguments", "generate"]

HELP = "pictures from a finished run's checkpoint: --attention (temporal_vit attention rollout per class)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of `neuroray generate`."""
    p.add_argument("run_dir", help="finished run folder (runs/<experiment>)")
    p.add_argument("--trial", default="best", help="best (by the run's metric) | TRIAL_ID")
    p.add_argument("--attention", action="store_true", help="temporal_vit: attention rollout over the test "
                   "split, mean per true class, as (trial, time) token maps (NPY + PNG)")
    p.add_argument("--out", default=None, help="output folder (default: RUN_DIR/generate/<trial>/<what>)")
    p.add_argument("--batch-size", type=int, default=64, help="sequences per forward pass (default 64)")


def generate(args: argparse.Namespace) -> int:
    """Run `neuroray generate` with parsed ``args``; returns the exit code."""
    if not args.attention:
        raise NeurorayError("generate: say what to make: --attention")
    check_count(args.batch_size, "--batch-size", 1, 65536)
    out = Path(args.out) if args.out else None
    if out is not None:
        check_output(out, "--out", folder=True)
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise NeurorayError(f"{run_dir}: not a folder; give a finished run folder (runs/<experiment>)")
    from neuroray.generate.attention import attention_maps

    result = attention_maps(run_dir, args.trial, out, batch_size=args.batch_size)
    shape = "×".join(str(n) for n in next(iter(result.maps.values())).shape)
    counts = ", ".join(f"class {k}: {n}" for k, n in result.counts.items())
    print(f"attention rollout of trial {result.trial_id} on the test split ({counts}): per-class maps of "
          f"{shape} (trial tokens × time tokens)")
    for path in result.files:
        print(f"  {path}")
    return 0
