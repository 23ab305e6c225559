"""`neuroray {demo,run,report,export,list}`; ``main(argv)`` returns the exit code (tests call it)."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

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

    ls = sub.add_parser("list", help="list registered things")
    ls.add_argument("what", choices=["trainables"])
    return p


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


COMMANDS = {"run": _run, "demo": _demo, "report": _report, "export": _export, "list": _list,
            "validate": _validate}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except NeurorayError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def entrypoint() -> None:
    sys.exit(main())
