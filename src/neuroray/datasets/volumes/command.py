"""`neuroray prepare volumes`: Neurosynth peaks, a NIfTI folder or a synthetic set → volume shard set."""

from __future__ import annotations

from pathlib import Path

from neuroray.datasets.shards import refuse_unless_replaceable
from neuroray.datasets.volumes.options import VolumePrepareOptions
from neuroray.errors import NeurorayError

OPTIONS = VolumePrepareOptions
HELP = "Neurosynth coordinates / NIfTI maps / synthetic → MNI152 volume shards"


def run_options(opts: VolumePrepareOptions, out: Path, overwrite: bool) -> int:
    """Prepare ``out`` from ``opts``; prints a one-line summary."""
    from neuroray.datasets.volumes.prepare import VolumePrepareConfig, prepare_neurosynth, prepare_nifti
    from neuroray.datasets.volumes.synthetic import write_synthetic_volumes

    if opts.rows_per_file < 1:
        raise NeurorayError(f"--rows-per-file {opts.rows_per_file}: must be >= 1")
    if out.exists() and not overwrite:
        raise NeurorayError(f"--out {out}: already exists; pass --overwrite or choose another folder")
    refuse_unless_replaceable(out)  # --overwrite replaces a shard set, never a folder of other files
    cfg = VolumePrepareConfig(voxel_mm=opts.voxel_mm, kernel=opts.kernel, fwhm_mm=opts.fwhm, radius_mm=opts.radius,
                              mask=opts.mask, unknown=opts.unknown, subset=opts.subset, seed=opts.seed,
                              rows_per_file=opts.rows_per_file, resample=opts.resample,
                              min_journal_count=opts.min_journal_count, terms=opts.terms,
                              term_names=tuple(opts.term_names) if opts.term_names else None)
    if opts.neurosynth is not None:
        manifest = prepare_neurosynth(opts.neurosynth, out, cfg, overwrite=overwrite)
    elif opts.nifti is not None:
        manifest = prepare_nifti(opts.nifti, out, cfg, overwrite=overwrite)
    else:
        manifest = write_synthetic_volumes(out, int(opts.synthetic or 0), cfg, overwrite=overwrite)
    rows = manifest["rows"]
    print(f"volume shard set {out}: {' / '.join(f'{s} {rows[s]}' for s in rows)} rows on "
          f"{manifest['spec']['shape']} at {manifest['spec']['voxel_mm']:g} mm; {len(manifest['skipped'])} skipped")
    return 0
