"""`neuroray generate`'s arguments and what it prints (the work is in the modules beside this one)."""

from __future__ import annotations

import argparse
from pathlib import Path

from neuroray.errors import NeurorayError
from neuroray.outputs import check_count, check_output

__all__ = ["HELP", "add_arguments", "generate"]

HELP = ("pictures from a finished run's checkpoint: vae3d brain maps (--reconstruct, --traverse, --condition) "
        "as NIfTI + PNG + a latent slider; temporal_vit attention rollout per class (--attention)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of `neuroray generate`."""
    p.add_argument("run_dir", help="finished run folder (runs/<experiment>)")
    p.add_argument("--trial", default="best", help="best (by the run's metric) | TRIAL_ID")
    p.add_argument("--attention", action="store_true", help="temporal_vit: attention rollout over the test "
                   "split, mean per true class, as (trial, time) token maps (NPY + PNG)")
    p.add_argument("--reconstruct", type=int, default=None, metavar="N", help="vae3d: N studies of the split, "
                   "input and reconstruction (NIfTI + glass brains, voxel r and SSIM)")
    p.add_argument("--traverse", type=int, default=None, metavar="DIM", help="vae3d: the mean latent decoded with "
                   "dimension DIM swept (NIfTI + PNG per step, latent_slider.html)")
    p.add_argument("--steps", type=int, default=7, help="--traverse: values of DIM (default 7)")
    p.add_argument("--range", type=float, default=3.0, dest="span", help="--traverse: DIM goes over "
                   "[-RANGE, RANGE] prior standard deviations (default 3)")
    p.add_argument("--condition", nargs="+", default=[], metavar="COL=V1,V2", help="vae3d: the same latents "
                   "decoded with other conditioning, e.g. year_z=-1,0,1 journal_code=2 (every combination)")
    p.add_argument("--split", choices=["test", "val", "train"], default="test", help="studies from (default test)")
    p.add_argument("--out", default=None, help="output folder (default: RUN_DIR/generate/<trial>/<what>)")
    p.add_argument("--batch-size", type=int, default=64, help="sequences per forward pass (default 64)")


def generate(args: argparse.Namespace) -> int:
    """Run `neuroray generate` with parsed ``args``; returns the exit code."""
    maps = args.reconstruct is not None or args.traverse is not None or bool(args.condition)
    if maps == args.attention:
        raise NeurorayError("generate: say what to make: --reconstruct/--traverse/--condition (a vae3d trial) "
                            "or --attention (a temporal_vit trial), not both")
    check_count(args.batch_size, "--batch-size", 1, 65536)
    out = Path(args.out) if args.out else None
    if out is not None:
        check_output(out, "--out", folder=True)
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise NeurorayError(f"{run_dir}: not a folder; give a finished run folder (runs/<experiment>)")
    if maps:
        from neuroray.generate.atlas import BrainMapRequest, make_brain_maps

        req = BrainMapRequest(args.reconstruct, args.traverse, args.steps, args.span, args.condition, args.split)
        print("\n".join(make_brain_maps(run_dir, args.trial, req, out)))
        return 0
    from neuroray.generate.attention import attention_maps

    result = attention_maps(run_dir, args.trial, out, batch_size=args.batch_size)
    shape = "×".join(str(n) for n in next(iter(result.maps.values())).shape)
    counts = ", ".join(f"class {k}: {n}" for k, n in result.counts.items())
    print(f"attention rollout of trial {result.trial_id} on the test split ({counts}): per-class maps of "
          f"{shape} (trial tokens × time tokens)")
    for path in result.files:
        print(f"  {path}")
    return 0
