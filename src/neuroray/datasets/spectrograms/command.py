"""`neuroray prepare spectrograms`: LFP trials or RF IQ → spectrogram shard set (layouts: lfp.py, iq.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from neuroray.datasets.shards import refuse_unless_replaceable
from neuroray.datasets.spectrograms.options import SpectrogramPrepareOptions
from neuroray.errors import NeurorayError

OPTIONS = SpectrogramPrepareOptions
HELP = "LFP trials (--lfp) or RF IQ (--iq) → spectrogram shard set; --synthetic-* plant a signal"

EPILOG = """input layouts:
  --lfp DIR  one file per session (stem = session id): <session>.npz with trials (n_trials x n_samples),
             sfreq, label (int), animal (str); or <session>.npy (2-D trials, or a 1-D trace cut into trials
             of trial_s seconds) + <session>.json {sfreq, label, animal[, trial_s]}; or <name>.parquet with
             one row per trial: signal (list of float), sfreq, label, animal[, session, trial]
  --iq DIR   one <recording>.npz per emission: iq (complex, n_receivers x n_samples), sfreq, pos_x, pos_y
             [, session]
  --synthetic-lfp / --synthetic-iq write planted-signal inputs to --inputs (default <out>-inputs), then
             prepare them the same way
"""


def run_options(opts: SpectrogramPrepareOptions, out: Path, overwrite: bool) -> int:
    """Prepare ``out`` from ``opts``; prints a one-line summary."""
    from neuroray.datasets.spectrograms.iq import IQConfig, prepare_iq
    from neuroray.datasets.spectrograms.lfp import LFPConfig, prepare_lfp
    from neuroray.datasets.spectrograms.synthetic import write_synthetic_iq, write_synthetic_lfp

    if out.exists() and not overwrite:
        raise NeurorayError(f"--out {out}: already exists; pass --overwrite or choose another folder")
    refuse_unless_replaceable(out)  # --overwrite replaces a shard set, never a folder of other files
    lfp = opts.lfp is not None or opts.synthetic_lfp
    if lfp:
        cfg_lfp = LFPConfig(
            n_trials=opts.n_trials, stride=opts.stride, nperseg=opts.nperseg or 256, noverlap=opts.noverlap,
            fmin=1.0 if opts.fmin is None else opts.fmin, fmax=100.0 if opts.fmax is None else opts.fmax,
            baseline=opts.baseline, split_by=opts.split_by, seed=opts.seed)
    else:
        cfg_iq = IQConfig(nperseg=opts.nperseg or 128, noverlap=opts.noverlap, n_mels=opts.n_mels,
                          n_mfcc=opts.n_mfcc, fmin=opts.fmin or 0.0, fmax=opts.fmax, seed=opts.seed)
    folder = str(opts.lfp or opts.iq)  # one is set: the options model requires exactly one source
    written: Path | None = None  # synthetic inputs this invocation wrote: removed again if the prepare refuses
    if opts.synthetic_lfp or opts.synthetic_iq:
        folder = opts.inputs or f"{out}-inputs"
        write = write_synthetic_lfp if opts.synthetic_lfp else write_synthetic_iq
        written = None if Path(folder).exists() else Path(folder)
        info = write(folder, seed=opts.seed, overwrite=overwrite)
        print(f"synthetic inputs: {info}")
    try:
        manifest = prepare_lfp(folder, out, cfg_lfp, overwrite) if lfp else prepare_iq(folder, out, cfg_iq,
                                                                                                overwrite)
    except NeurorayError:
        if written is not None:
            shutil.rmtree(written, ignore_errors=True)
        raise
    rows = manifest["rows"]
    print(f"{out}: spectrogram shards {manifest['spec']} — train {rows['train']}, val {rows['val']}, "
          f"test {rows['test']} rows; {len(manifest['skipped'])} input(s) skipped")
    if "note" in manifest["split"]:
        print(f"note: {manifest['split']['note']}")
    return 0
