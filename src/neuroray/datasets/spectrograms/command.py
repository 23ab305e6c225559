"""`neuroray prepare spectrograms`: LFP trials or RF IQ → spectrogram shard set (layouts: lfp.py, iq.py)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from neuroray.datasets.shards import refuse_unless_replaceable
from neuroray.errors import NeurorayError

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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--lfp", metavar="DIR", help="folder of LFP sessions (.npz, .npy + .json, or .parquet)")
    src.add_argument("--iq", metavar="DIR", help="folder of IQ recordings (.npz)")
    src.add_argument("--synthetic-lfp", action="store_true", help="knock-out animals (label 1) with raised gamma")
    src.add_argument("--synthetic-iq", action="store_true", help="arrival time/power across 4 receivers "
                     "encodes (pos_x, pos_y)")
    p.add_argument("--out", required=True, help="output shard set folder")
    p.add_argument("--inputs", default=None, help="--synthetic-*: where to write the input files "
                   "(default: <out>-inputs)")
    p.add_argument("--n-trials", type=int, default=8, help="LFP: consecutive trials per sequence (default 8)")
    p.add_argument("--stride", type=int, default=None, help="LFP: trials between sequence starts "
                   "(default --n-trials: no overlap)")
    p.add_argument("--nperseg", type=int, default=None, help="STFT window in samples (default 256 LFP, 128 IQ)")
    p.add_argument("--noverlap", type=int, default=None, help="STFT overlap in samples (default nperseg // 2)")
    p.add_argument("--fmin", type=float, default=None, help="lowest kept frequency in Hz (default 1 LFP, 0 IQ)")
    p.add_argument("--fmax", type=float, default=None, help="highest kept frequency in Hz (default 100 LFP, "
                   "sfreq/2 IQ)")
    p.add_argument("--baseline", choices=["broadband", "per-frequency", "none"], default="broadband",
                   help="LFP per-session baseline (default broadband; see lfp.py)")
    p.add_argument("--split-by", choices=["animal", "session"], default="animal",
                   help="LFP split groups (default animal); IQ splits by session")
    p.add_argument("--n-mels", type=int, default=32, help="IQ: mel bins (default 32)")
    p.add_argument("--n-mfcc", type=int, default=None, help="IQ: MFCC coefficients instead of log-mel")
    p.add_argument("--seed", type=int, default=0, help="split seed and synthetic seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (and synthetic inputs)")


def run(args: argparse.Namespace) -> int:
    from neuroray.datasets.spectrograms.iq import IQConfig, prepare_iq
    from neuroray.datasets.spectrograms.lfp import LFPConfig, prepare_lfp
    from neuroray.datasets.spectrograms.synthetic import write_synthetic_iq, write_synthetic_lfp

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise NeurorayError(f"--out {out}: already exists; pass --overwrite or choose another folder")
    refuse_unless_replaceable(out)  # --overwrite replaces a shard set, never a folder of other files
    for flag, value, low in (("--nperseg", args.nperseg, 2), ("--noverlap", args.noverlap, 0)):
        if value is not None and value < low:  # 0 used to mean "the default" without a word
            raise NeurorayError(f"{flag} {value}: must be >= {low}")
    lfp = args.lfp is not None or args.synthetic_lfp
    if lfp:
        cfg_lfp = LFPConfig(
            n_trials=args.n_trials, stride=args.stride, nperseg=args.nperseg or 256, noverlap=args.noverlap,
            fmin=1.0 if args.fmin is None else args.fmin, fmax=100.0 if args.fmax is None else args.fmax,
            baseline=args.baseline, split_by=args.split_by, seed=args.seed)
    else:
        cfg_iq = IQConfig(nperseg=args.nperseg or 128, noverlap=args.noverlap, n_mels=args.n_mels,
                          n_mfcc=args.n_mfcc, fmin=args.fmin or 0.0, fmax=args.fmax, seed=args.seed)
    folder = args.lfp or args.iq
    written: Path | None = None  # synthetic inputs this invocation wrote: removed again if the prepare refuses
    if args.synthetic_lfp or args.synthetic_iq:
        folder = args.inputs or f"{out}-inputs"
        write = write_synthetic_lfp if args.synthetic_lfp else write_synthetic_iq
        written = None if Path(folder).exists() else Path(folder)
        info = write(folder, seed=args.seed, overwrite=args.overwrite)
        print(f"synthetic inputs: {info}")
    try:
        manifest = prepare_lfp(folder, out, cfg_lfp, args.overwrite) if lfp else prepare_iq(folder, out, cfg_iq,
                                                                                                args.overwrite)
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
