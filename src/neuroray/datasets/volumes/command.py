"""`neuroray prepare volumes`: Neurosynth peaks, a NIfTI folder or a synthetic set → volume shard set."""

from __future__ import annotations

import argparse
from pathlib import Path

from neuroray.datasets.shards import refuse_unless_replaceable
from neuroray.errors import NeurorayError

HELP = "Neurosynth coordinates / NIfTI maps / synthetic → MNI152 volume shards"


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--neurosynth", metavar="DIR", help="folder with Neurosynth coordinates.tsv.gz + metadata.tsv.gz")
    src.add_argument("--nifti", metavar="DIR", help="folder of 3-D *.nii[.gz] maps; maps on another grid are "
                     "resampled onto the MNI152 grid (see --resample)")
    src.add_argument("--synthetic", type=int, metavar="N", help="N planted-signal studies (peak x depends on year)")
    p.add_argument("--out", required=True, help="output shard set folder")
    p.add_argument("--voxel-mm", type=float, default=2.0, help="MNI152 grid: 2 (91x109x91, default) or 4 (46x55x46)")
    p.add_argument("--kernel", default="gaussian", help="gaussian (default) | mkda (binary sphere)")
    p.add_argument("--fwhm", type=float, default=10.0, help="Gaussian FWHM in mm (default 10)")
    p.add_argument("--radius", type=float, default=10.0, help="MKDA sphere radius in mm (default 10)")
    p.add_argument("--mask", default="none", help="none (default) | brain (the MNI152 whole-brain mask shipped "
                   "with nilearn; nothing is downloaded) | ellipsoid (rough stand-in)")
    p.add_argument("--resample", default="linear", help="--nifti maps on another grid: linear (default) | nearest "
                   "(label maps) | none (skip them)")
    p.add_argument("--terms", metavar="FILE", default=None, help="term/topic weights to add as term_* columns: a "
                   "Neurosynth *features.npz (its *vocabulary.txt beside it) or a TSV with an id column")
    p.add_argument("--term-names", default=None, help="comma-separated labels to keep from --terms (default: all)")
    p.add_argument("--min-journal-count", type=int, default=10, help="journals with fewer train studies are coded "
                   "0 = other in journal_code (default 10)")
    p.add_argument("--unknown", default="drop", help="studies whose space is UNKNOWN: drop (default) | keep (as MNI)")
    p.add_argument("--subset", type=int, default=None, help="stratified subset of N studies (year x peak-count bins)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset, the split and the synthetic set")
    p.add_argument("--rows-per-file", type=int, default=256, help="rows per Parquet file (default 256)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def run(args: argparse.Namespace) -> int:
    from neuroray.datasets.volumes.prepare import VolumePrepareConfig, prepare_neurosynth, prepare_nifti
    from neuroray.datasets.volumes.synthetic import write_synthetic_volumes

    if args.rows_per_file < 1:
        raise NeurorayError(f"--rows-per-file {args.rows_per_file}: must be >= 1")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise NeurorayError(f"--out {out}: already exists; pass --overwrite or choose another folder")
    refuse_unless_replaceable(out)  # --overwrite replaces a shard set, never a folder of other files
    cfg = VolumePrepareConfig(voxel_mm=args.voxel_mm, kernel=args.kernel, fwhm_mm=args.fwhm, radius_mm=args.radius,
                              mask=args.mask, unknown=args.unknown, subset=args.subset, seed=args.seed,
                              rows_per_file=args.rows_per_file, resample=args.resample,
                              min_journal_count=args.min_journal_count, terms=args.terms,
                              term_names=tuple(n.strip() for n in args.term_names.split(",") if n.strip())
                              if args.term_names else None)
    if args.neurosynth is not None:
        manifest = prepare_neurosynth(args.neurosynth, out, cfg, overwrite=args.overwrite)
    elif args.nifti is not None:
        manifest = prepare_nifti(args.nifti, out, cfg, overwrite=args.overwrite)
    else:
        manifest = write_synthetic_volumes(out, args.synthetic, cfg, overwrite=args.overwrite)
    rows = manifest["rows"]
    print(f"volume shard set {out}: {' / '.join(f'{s} {rows[s]}' for s in rows)} rows on "
          f"{manifest['spec']['shape']} at {manifest['spec']['voxel_mm']:g} mm; {len(manifest['skipped'])} skipped")
    return 0
