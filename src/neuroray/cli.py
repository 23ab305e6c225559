"""`neuroray {prepare,demo,run,report,export,list}`; ``main(argv)`` returns the exit code (tests call it)."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from neuroray import __version__
from neuroray.errors import NeurorayError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, like every other bad input
        print(f"error: {message} (see `neuroray {self.prog.split()[-1]} --help`)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="neuroray", description="Neuro-ML experiments on Ray: shards → Lightning → Tune → reports.")
    p.add_argument("--version", action="version", version=f"neuroray {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    d = sub.add_parser("demo", help="synthetic EEG → 2 arms × 2 seeds × Optuna → report → ONNX, on embedded Ray")
    d.add_argument("--storage", default="runs", help="run folder root (default: runs/)")
    d.add_argument("--smoke", action="store_true", help="the small, fast version")
    d.add_argument("--address", default=None, help="join a running Ray (auto|HOST:PORT) instead of embedding one")

    r = sub.add_parser("run", help="run an experiment file")
    r.add_argument("experiment", help="experiments/….yaml")
    r.add_argument("--address", default=None, help="auto | HOST:PORT of a running Ray; default: embedded Ray "
                   "(or RAY_ADDRESS, as set by `ray job submit`)")
    r.add_argument("--storage", default="runs", help="run folder root (default: runs/)")
    r.add_argument("--smoke", action="store_true", help="tiny epochs/samples/seeds, run folder <name>-smoke")
    r.add_argument("--overwrite", action="store_true", help="replace an existing run folder of this experiment")
    r.add_argument("--quiet", action="store_true", help="no per-trial progress table")

    v = sub.add_parser("validate", help="check an experiment file without running it")
    v.add_argument("experiment")

    rep = sub.add_parser("report", help="re-write report.md from a finished run folder")
    rep.add_argument("run_dir")

    e = sub.add_parser("export", help="export a trial of a finished run to ONNX (parity-checked)")
    e.add_argument("run_dir")
    e.add_argument("--trial", default="best", help="best | TRIAL_ID")
    e.add_argument("--out", default=None, help="output folder (default: RUN_DIR/export)")

    pr = sub.add_parser("prepare", help="raw data → a shard set (Parquet + manifest)")
    kinds = pr.add_subparsers(dest="kind", required=True, parser_class=_Parser)
    _prepare_eeg_args(kinds.add_parser("eeg", help="EEG recordings (BIDS/HBN, EEGLAB, EDF/BDF, BrainVision, FIF) "
                                       "→ windows for challenge1 | challenge2 | pretrain"))
    for kind, module in _prepare_commands().items():  # other modalities bring their own `command.py`
        module.add_arguments(kinds.add_parser(kind, help=module.HELP))

    ls = sub.add_parser("list", help="list registered things")
    ls.add_argument("what", choices=["trainables"])
    return p


def _prepare_eeg_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--bids", help="BIDS root (HBN layout: sub-*/eeg/sub-*_task-*[_run-*]_eeg.set)")
    src.add_argument("--synthetic-hbn", type=int, metavar="N",
                     help="write an HBN-shaped synthetic BIDS tree with N subjects at --out (real R1 sidecars)")
    p.add_argument("--out", required=True, help="output folder (shard set, or the BIDS tree with --synthetic-hbn)")
    p.add_argument("--target", choices=["challenge1", "challenge2", "pretrain"], default="challenge1",
                   help="challenge1: CCD response time; challenge2: externalizing (+p_factor, ...); "
                   "pretrain: unlabeled windows (movies carry stimulus times). Default: challenge1")
    p.add_argument("--tasks", default=None, help="comma-separated BIDS tasks (default: contrastChangeDetection "
                   "for challenge1, all tasks otherwise)")
    p.add_argument("--subjects", default=None, help="comma-separated subject labels (default: all)")
    p.add_argument("--sfreq", type=float, default=100.0, help="resample to this rate in Hz (default 100)")
    p.add_argument("--l-freq", type=float, default=0.5, help="band-pass low edge in Hz (default 0.5; 0 = none)")
    p.add_argument("--h-freq", type=float, default=40.0, help="band-pass high edge in Hz (default 40; 0 = none)")
    p.add_argument("--notch", type=float, default=None, help="line frequency to notch with harmonics (50 or 60)")
    p.add_argument("--reference", default=None, help="re-reference: average | CHANNEL[,CHANNEL]")
    p.add_argument("--channels", default=None, help="target channel layout: hbn129 | 1020 | NAME,NAME,...")
    p.add_argument("--channel-mode", choices=["zeropad", "select", "interpolate"], default="zeropad",
                   help="how --channels treats missing channels (default zeropad)")
    p.add_argument("--montage", default=None, help="MNE montage for --channel-mode interpolate")
    p.add_argument("--window-s", type=float, default=None, help="window length in s (default: the target's)")
    p.add_argument("--stride-s", type=float, default=None, help="window stride in s (challenge2/pretrain)")
    p.add_argument("--shift-s", type=float, default=None, help="challenge1: window start after the target (0.5)")
    p.add_argument("--keep-no-response", action="store_true", help="challenge1: keep trials without a press")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the subject split (default 0)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted prepare; finished "
                   "recordings are not read again")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output / interrupted work")
    p.add_argument("--strict", action="store_true", help="exit 2 at the first unreadable recording instead of "
                   "recording it in the manifest's skipped list")
    p.add_argument("--address", default=None, help="join a running Ray (auto|HOST:PORT) instead of embedding one")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--synthetic-sfreq", type=float, default=500.0, help="--synthetic-hbn sampling rate (500)")
    p.add_argument("--synthetic-runs", type=int, default=3, help="--synthetic-hbn CCD runs per subject (3)")
    p.add_argument("--synthetic-movie", action="store_true", help="--synthetic-hbn: add a DespicableMe recording")


def _prepare_commands() -> dict[str, Any]:
    from neuroray.datasets.commands import prepare_commands

    return {k: v for k, v in prepare_commands().items() if k != "eeg"}


def _prepare(args: argparse.Namespace) -> int:
    if args.kind != "eeg":
        return int(_prepare_commands()[args.kind].run(args))
    from neuroray.datasets.eeg.prepare import make_config

    if args.synthetic_hbn is not None:
        from neuroray.datasets.eeg.synthetic_hbn import write_synthetic_hbn

        info = write_synthetic_hbn(args.out, n_subjects=args.synthetic_hbn, sfreq=args.synthetic_sfreq,
                                   runs=args.synthetic_runs, movie=args.synthetic_movie, overwrite=args.overwrite)
        print(f"synthetic HBN tree {args.out}: {info['subjects']} subjects, {info['recordings']} recordings "
              f"at {info['sfreq']} Hz; prepare it with `neuroray prepare eeg --bids {args.out} --target ...`")
        return 0
    cfg = make_config(
        target=args.target, tasks=args.tasks.split(",") if args.tasks else None, sfreq=args.sfreq,
        l_freq=args.l_freq, h_freq=args.h_freq, notch=args.notch, reference=args.reference, channels=args.channels,
        channel_mode=args.channel_mode, montage=args.montage, window_s=args.window_s, stride_s=args.stride_s,
        shift_s=args.shift_s, split_seed=args.split_seed, keep_no_response=args.keep_no_response,
    )
    from neuroray.platform.prepare import prepare_eeg, print_result

    result = prepare_eeg(args.bids, args.out, cfg, resume=args.resume, overwrite=args.overwrite,
                         strict=args.strict, address=args.address, progress=not args.quiet,
                         subjects=args.subjects.split(",") if args.subjects else None)
    print_result(result, args.out)
    return 0


def _run(args: argparse.Namespace) -> int:
    from neuroray.search_spaces.experiment import load

    loaded = load(args.experiment, smoke=args.smoke)  # validated before Ray starts
    from neuroray.platform.runner import print_summary, run

    run_dir = Path(loaded.model.storage or args.storage) / loaded.name
    if run_dir.exists() and any(run_dir.iterdir()):
        if not (args.overwrite or args.smoke):
            raise NeurorayError(f"{run_dir}: a run of {loaded.name!r} already exists; pass --overwrite to replace "
                                "it or --storage to write elsewhere")
        shutil.rmtree(run_dir)
    summary = run(loaded, storage=args.storage, address=args.address, verbose=0 if args.quiet else 1)
    print_summary(summary)
    return 0 if (summary.trials["status"] == "OK").any() else 1


def _demo(args: argparse.Namespace) -> int:
    from neuroray.platform.demo import demo

    return demo(storage=Path(args.storage), smoke=args.smoke, address=args.address)


def _report(args: argparse.Namespace) -> int:
    from neuroray.platform import report

    run_dir = Path(args.run_dir)
    info, trials = report.load_run(run_dir)
    table = report.write_reports(run_dir, trials, info["name"], info["metric"], info["mode"], info["arms"],
                                 shards=info.get("shards"))
    print(report.markdown_table(table))
    print(f"report: {run_dir / 'report.md'}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from neuroray.datasets.shards import open_shard_set
    from neuroray.platform import report
    from neuroray.platform.export import PARITY_TOL, export_checkpoint

    run_dir = Path(args.run_dir)
    info, trials = report.load_run(run_dir)
    if args.trial == "best":
        row = report.best_trial(trials, info["metric"], info["mode"])
        if row is None:
            raise NeurorayError(f"{run_dir}: no trial reported {info['metric']}; nothing to export")
    else:
        match = trials[trials["trial_id"] == args.trial]
        if match.empty:
            raise NeurorayError(f"--trial {args.trial}: not in {run_dir}; trials: {', '.join(trials['trial_id'])}")
        row = match.iloc[0]
    out = Path(args.out) if args.out else run_dir / "export"
    result = export_checkpoint(row["checkpoint"], open_shard_set(info["shards"]), out)
    print(f"exported trial {row['trial_id']} → {result.path}; onnxruntime vs torch max |Δ| = "
          f"{result.max_abs_diff:.2e} on {result.n_windows} validation windows")
    return 0 if result.max_abs_diff <= PARITY_TOL else 1


def _list(args: argparse.Namespace) -> int:
    from neuroray.trainables import base

    for name in base.available():
        cls = base.get(name)
        print(f"{name:24s} modality={cls.modality:12s} monitor={cls.monitor} ({cls.mode})")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from neuroray.search_spaces.experiment import load

    loaded = load(args.experiment)
    print(f"{args.experiment}: ok ({len(loaded.cells())} cells × {loaded.model.search.num_samples} samples)")
    return 0


COMMANDS = {"run": _run, "prepare": _prepare, "demo": _demo, "report": _report, "export": _export, "list": _list,
            "validate": _validate}


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (a scheduler's kill) takes the same cleanup path as Ctrl-C


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        return COMMANDS[args.command](args)
    except NeurorayError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        hint = {"prepare": "; finished recordings are kept: rerun with --resume"}.get(args.command, "")
        print(f"interrupted{hint}", file=sys.stderr)
        return 130


def entrypoint() -> None:
    sys.exit(main())
