"""`neuroray {prepare,demo,run,report,export,generate,bench-model,predict,list}`; ``main(argv)`` returns the
exit code."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from neuroray import __version__
from neuroray.errors import NeurorayError
from neuroray.generate import command as generate
from neuroray.outputs import check_count, check_output

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, like every other bad input
        """Print argparse's complaint as one error line and exit 2."""
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
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
    r.add_argument("--storage", default=None,
                   help="run root, a folder or s3://BUCKET/PREFIX (default: the file's storage: key, else runs/)")
    r.add_argument("--smoke", action="store_true", help="tiny epochs/samples/seeds, run folder <name>-smoke")
    r.add_argument("--overwrite", action="store_true", help="replace an existing run folder of this experiment")
    r.add_argument("--resume", action="store_true", help="continue an interrupted run of this experiment: finished "
                   "trials are kept, unfinished ones continue from their last checkpoint")
    r.add_argument("--quiet", action="store_true", help="no per-trial progress table")

    j = sub.add_parser("submit", help="run an experiment as a Ray job on a cluster; streams its logs")
    j.add_argument("experiment", help="experiments/….yaml (inside the checkout that is uploaded)")
    j.add_argument("--address", required=True, help="the cluster's dashboard, e.g. http://127.0.0.1:8265")
    j.add_argument("--storage", default=None, help="s3://BUCKET/PREFIX (or a path every node shares) for results")
    j.add_argument("--smoke", action="store_true", help="tiny epochs/samples/seeds")
    j.add_argument("--overwrite", action="store_true", help="replace an earlier run of this experiment in --storage")
    j.add_argument("--no-wait", action="store_true", help="return once submitted; do not stream logs")

    v = sub.add_parser("validate", help="check an experiment file without running it")
    v.add_argument("experiment")

    rep = sub.add_parser("report", help="report.md/.csv/.html of a finished run folder: per-arm stats over seeds, "
                         "Δ vs baseline with paired tests, learning curves, parameter importance")
    rep.add_argument("run_dir", help="finished run folder (runs/<experiment>, or s3://…/<experiment> in --storage)")
    rep.add_argument("--baseline", default=None, help="arm the others are compared with (default: the run's "
                     "matrix.baseline, else its first arm)")
    rep.add_argument("--combine", default=None, metavar="RUN_C2", help="EEG2025: RUN_DIR is the challenge-1 run, "
                     "RUN_C2 the challenge-2 run; adds the score 0.3·C1 + 0.7·C2")
    rep.add_argument("--out", default=None, help="write the report here instead of into RUN_DIR")

    e = sub.add_parser("export", help="export a trial of a finished run to ONNX (parity-checked, model card, "
                       "optional INT8/FP16), or build an EEG2025 submission zip with --challenge eeg2025")
    e.add_argument("run_dir", nargs="?", help="finished run folder (runs/<experiment>, or s3://…/<experiment>)")
    e.add_argument("--trial", default="best", help="best | TRIAL_ID")
    e.add_argument("--out", default=None, help="output folder (default: RUN_DIR/export); with --challenge: the "
                   "zip file (default: submission.zip)")
    e.add_argument("--quantize", choices=["none", "int8", "int8-static", "fp16"], default="none",
                   help="int8: dynamic (weights INT8, activations per batch); int8-static: QDQ calibrated on "
                   "training windows; fp16: half precision. Default none")
    e.add_argument("--accept-loss", action="store_true", help="keep a quantized model whose validation metric is "
                   "worse than --max-loss-pct (default: refuse, exit 2)")
    e.add_argument("--max-loss-pct", type=float, default=2.0, help="largest relative loss of the validation "
                   "metric a quantized model may have, in percent (default 2)")
    e.add_argument("--calib-windows", type=int, default=256, help="int8-static: training windows to calibrate on")
    e.add_argument("--challenge", choices=["eeg2025"], default=None, help="build a challenge submission zip")
    e.add_argument("--challenge1", metavar="RUN_DIR[@TRIAL]", help="--challenge eeg2025: the run (and trial, "
                   "default best) of the challenge-1 model (response time, 129 ch x 200 samples at 100 Hz)")
    e.add_argument("--challenge2", metavar="RUN_DIR[@TRIAL]", help="--challenge eeg2025: the run of the "
                   "challenge-2 model (externalizing factor)")

    bm = sub.add_parser("bench-model", help="batch-1 latency p50/p95 and batch-64 throughput of an ONNX model")
    bm.add_argument("model", help="model.onnx")
    bm.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    bm.add_argument("--runs", type=int, default=200, help="timed batch-1 runs (default 200)")
    bm.add_argument("--warmup", type=int, default=20, help="untimed warm-up runs (default 20)")
    bm.add_argument("--batch", type=int, default=64, help="batch size of the throughput test (default 64)")
    bm.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON")

    pd_ = sub.add_parser("predict", help="batch inference of an ONNX model over a shard set → Parquet")
    pd_.add_argument("model", help="model.onnx or s3://…/model.onnx (its model_card.json beside it is checked)")
    pd_.add_argument("shards", help="shard set: a folder or s3://BUCKET/PREFIX")
    pd_.add_argument("--out", required=True, help="output Parquet file (written atomically)")
    pd_.add_argument("--split", choices=["train", "val", "test", "all"], default="test", help="default test")
    pd_.add_argument("--batch-size", type=int, default=256, help="rows per inference batch (default 256)")
    pd_.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: all)")

    pr = sub.add_parser("prepare", help="raw data → a shard set (Parquet + manifest)")
    kinds = pr.add_subparsers(dest="kind", required=True, parser_class=_Parser)
    _prepare_eeg_args(kinds.add_parser("eeg", help="EEG recordings (BIDS/HBN, EEGLAB, EDF/BDF, BrainVision, FIF) "
                                       "→ windows for challenge1 | challenge2 | pretrain"))
    from neuroray.datasets.commands import add_arguments

    for kind, module in _prepare_commands().items():  # other modalities bring their own `command.py`
        add_arguments(module, kinds.add_parser(kind, help=module.HELP))

    generate.add_arguments(sub.add_parser("generate", help=generate.HELP))
    ls = sub.add_parser("list", help="list registered things")
    ls.add_argument("what", choices=["trainables"])
    return p


def _prepare_eeg_args(p: argparse.ArgumentParser) -> None:
    from neuroray.datasets.eeg.options import EEGPrepareOptions
    from neuroray.datasets.options import add_flags

    add_flags(p, EEGPrepareOptions)  # the data options, defined once on the model
    p.add_argument("--out", required=True, help="output folder (shard set, or the BIDS tree with --synthetic-hbn)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted prepare; finished "
                   "recordings are not read again")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output / interrupted work")
    p.add_argument("--strict", action="store_true", help="exit 2 at the first unreadable recording instead of "
                   "recording it in the manifest's skipped list")
    p.add_argument("--address", default=None, help="join a running Ray (auto|HOST:PORT) instead of embedding one")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _prepare_commands() -> dict[str, Any]:
    from neuroray.datasets.commands import prepare_commands

    return {k: v for k, v in prepare_commands().items() if k != "eeg"}


def _prepare(args: argparse.Namespace) -> int:
    if args.kind != "eeg":
        from neuroray.datasets.commands import run

        return run(_prepare_commands()[args.kind], args)
    from neuroray.datasets.eeg.options import EEGPrepareOptions
    from neuroray.datasets.eeg.prepare import make_config
    from neuroray.datasets.options import from_args

    opts = from_args(EEGPrepareOptions, args)
    if opts.synthetic_hbn is not None:
        from neuroray.datasets.eeg.synthetic_hbn import write_synthetic_hbn

        info = write_synthetic_hbn(args.out, n_subjects=opts.synthetic_hbn, sfreq=opts.synthetic_sfreq,
                                   runs=opts.synthetic_runs, movie=opts.synthetic_movie, overwrite=args.overwrite)
        print(f"synthetic HBN tree {args.out}: {info['subjects']} subjects, {info['recordings']} recordings "
              f"at {info['sfreq']} Hz; prepare it with `neuroray prepare eeg --bids {args.out} --target ...`")
        return 0
    cfg = make_config(**opts.config_kwargs())  # type: ignore[arg-type]
    from neuroray.run.prepare import prepare_eeg, print_result

    def build(out: str | Path, resume: bool, overwrite: bool) -> None:
        result = prepare_eeg(str(opts.bids), out, cfg, resume=resume, overwrite=overwrite, strict=args.strict,
                             address=args.address, progress=not args.quiet, subjects=opts.subjects)
        print_result(result, out)

    from neuroray.datasets.locations import is_uri

    if is_uri(args.out):  # prepared in a staging folder kept per URI (its finished recordings too), then uploaded
        from neuroray.datasets.remote_shards import prepare_to_uri

        return prepare_to_uri(args.out, lambda local: build(local, resume=args.resume, overwrite=not args.resume),
                              overwrite=args.overwrite, resume=args.resume)
    build(args.out, resume=args.resume, overwrite=args.overwrite)
    return 0


def _remove_empty(folder: Path, top: Path | None) -> None:
    """Remove ``folder`` and its parents up to ``top`` (the first one this run made) while they are empty."""
    if top is None:
        return
    for path in [folder, *folder.parents]:
        if not path.is_dir() or any(path.iterdir()):
            return
        path.rmdir()
        if path == top:
            return


def _run(args: argparse.Namespace) -> int:
    from neuroray.search_spaces.experiment import load

    loaded = load(args.experiment, smoke=args.smoke)  # validated before Ray starts
    from neuroray.run.runner import print_summary, run
    from neuroray.run_folder.full_disk import is_no_space, nearly_full, no_space_line, quiet_full_disk
    from neuroray.run_folder.run_lock import RunLock
    from neuroray.run_folder.storage import check_writable, clear_previous_run, local_root

    storage = args.storage or loaded.model.storage or "runs"  # the command line wins over the file's storage:
    run_dir = local_root(storage) / loaded.name  # s3://… keeps its summary in runs/
    if args.resume and args.overwrite:
        raise NeurorayError("--resume and --overwrite exclude each other: continue the run, or replace it")
    if args.resume and not run_dir.is_dir():
        raise NeurorayError(f"--resume: {run_dir} does not exist; there is no run of {loaded.name!r} to continue")
    made = next((p for p in reversed([run_dir, *run_dir.parents]) if not p.exists()), None)  # top folder made
    check_writable(storage)  # before the lock makes its folder
    lock = RunLock(run_dir).acquire()  # a second run of this experiment into this storage stops here
    try:
        if not args.resume:  # an earlier run here (local, or in s3://… storage) is an error unless replaced
            # --smoke replaces a finished smoke run on its own, never an interrupted one
            finished = (run_dir / "results.csv").is_file()
            clear_previous_run(storage, loaded.name,
                               replace=args.overwrite or (args.smoke and finished))
        try:
            with quiet_full_disk():
                summary = run(loaded, storage=storage, address=args.address, verbose=0 if args.quiet else 1,
                              resume=args.resume)
        except Exception as e:  # a full disk surfaces as OSError, or as Tune failing to read what it cut short
            if not (is_no_space(e) or nearly_full(storage)):
                raise
            raise NeurorayError(no_space_line(storage)) from None
    finally:
        lock.release()
        _remove_empty(run_dir, made)  # refused before anything was written: leave no folder behind
    print_summary(summary)
    if (summary.trials["status"] != "OK").any() and summary.trials["error"].astype(str).str.contains(
            "No space left on device").any():
        raise NeurorayError(no_space_line(storage))
    if summary.unrecovered:
        print(f"error: --resume: {len(summary.unrecovered)} interrupted trial(s) could not be recovered "
              f"({', '.join(summary.unrecovered)}); their rows say why", file=sys.stderr)
        return 1
    return 0 if (summary.trials["status"] == "OK").any() else 1


def _demo(args: argparse.Namespace) -> int:
    from neuroray.run.demo import demo
    from neuroray.run_folder.storage import is_uri

    if is_uri(args.storage):
        raise NeurorayError(f"--storage {args.storage}: the demo writes a local folder; for remote storage run "
                            "`neuroray run experiments/demo.yaml --storage URI`")
    return demo(storage=Path(args.storage), smoke=args.smoke, address=args.address)


def _report(args: argparse.Namespace) -> int:
    from neuroray.reports import folder as report
    from neuroray.run_folder.remote_run import open_run, publish_report

    if args.out:
        check_output(Path(args.out), "--out", folder=True)
    run_dir, remote = open_run(args.run_dir)  # s3://…/<run>: its summary read from the bucket
    table, out = report.rebuild(run_dir, baseline=args.baseline,
                                combine=open_run(args.combine, "--combine")[0] if args.combine else None,
                                out=Path(args.out) if args.out else None)
    print(report.markdown_table(table))
    where = publish_report(out, remote) if remote and not args.out else out  # back next to the trials
    print(f"report: {where}/report.md, report.csv, report.html")
    return 0


def _export(args: argparse.Namespace) -> int:
    if args.challenge:
        from neuroray.challenges.eeg2025.submission import build_submission, format_submission

        if not (args.challenge1 and args.challenge2) or args.run_dir:
            raise NeurorayError("--challenge eeg2025 takes --challenge1 RUN_DIR[@TRIAL] and --challenge2 "
                                "RUN_DIR[@TRIAL] (no positional RUN_DIR)")
        out = Path(args.out or "submission.zip")
        print(format_submission(build_submission(args.challenge1, args.challenge2, out)))
        return 0
    if not args.run_dir:
        raise NeurorayError("export needs RUN_DIR (or --challenge eeg2025 --challenge1 ... --challenge2 ...)")
    from neuroray.export.quantize import MODES
    from neuroray.export.to_onnx import export_trial, format_report

    if args.max_loss_pct < 0 or args.calib_windows < 1:
        raise NeurorayError("--max-loss-pct must be >= 0 and --calib-windows >= 1")
    from neuroray.run_folder.remote_run import open_run, publish_export

    run_dir, remote = open_run(args.run_dir)  # s3://…/<run>: its summary read from the bucket
    if args.out:
        check_output(Path(args.out), "--out", folder=True)
    row, report = export_trial(run_dir, args.trial, Path(args.out) if args.out else None, MODES[args.quantize],
                               max_loss=args.max_loss_pct / 100, accept_loss=args.accept_loss,
                               calib_windows=args.calib_windows)
    print(format_report(str(row["trial_id"]), report))
    if remote and not args.out:  # the export goes back next to the trials; predict/bench-model take the local copy
        print(f"export: {publish_export(run_dir, remote)}/ (local copy: {run_dir / 'export'})")
    return 0


def _bench_model(args: argparse.Namespace) -> int:
    import json

    from neuroray.export.inference import OnnxModel, bench, format_bench
    from neuroray.run_folder.remote_run import fetch_model

    check_count(args.batch, "--batch", 1, 65536)
    check_count(args.runs, "--runs", 1, 1_000_000)
    result = bench(OnnxModel(fetch_model(args.model), threads=args.threads), runs=args.runs, warmup=args.warmup,
                   batch=args.batch)
    print(format_bench(result))
    if args.json:
        from neuroray.outputs import atomic_write

        text = json.dumps(result, indent=2)
        path = Path(args.json)
        try:  # a missing parent folder is made, as --out folders are elsewhere
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda p: p.write_text(text))
        except OSError as e:
            raise NeurorayError(f"--json {path}: cannot write there ({e.strerror or e}); choose a path in a "
                                "folder you can write") from None
    return 0


def _predict(args: argparse.Namespace) -> int:
    from neuroray.datasets.shards import open_shard_set
    from neuroray.export.inference import OnnxModel, predict
    from neuroray.run_folder.remote_run import fetch_model

    check_output(Path(args.out), "--out", folder=False)
    check_count(args.batch_size, "--batch-size", 1, 65536)
    model = OnnxModel(fetch_model(args.model), threads=args.threads)
    result = predict(model, open_shard_set(args.shards), args.out, split=args.split, batch_size=args.batch_size)
    print(f"{result.rows} predictions ({', '.join(result.splits)}) → {result.out}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from neuroray.trainables import base

    for name in base.available():
        cls = base.get(name)
        print(f"{name:24s} modality={cls.modality:12s} monitor={cls.monitor} ({cls.mode})")
    return 0


def _submit(args: argparse.Namespace) -> int:
    from neuroray.cluster.submit import submit

    return submit(args.experiment, args.address, storage=args.storage, smoke=args.smoke, overwrite=args.overwrite,
                  wait=not args.no_wait)


def _validate(args: argparse.Namespace) -> int:
    from neuroray.run.phase_data import describe, existing_phase_sets, phase_sets
    from neuroray.run.preflight import existing_shards
    from neuroray.search_spaces.experiment import load

    loaded = load(args.experiment)
    # Existing shard sets are checked too (columns, each arm's modules built for its windows, the chain across
    # phase sets); their files' sizes are checked, their checksums are left to `run`.
    shards = existing_shards(loaded, verify="size")
    data = (f"; shard set {shards.root} checked" if shards is not None
            else f"; no shard set at {loaded.model.data.shards} yet")
    sets = phase_sets(loaded)
    data += describe(sets, existing_phase_sets(loaded, sets, shards, verify="size"))
    print(f"{args.experiment}: ok ({len(loaded.cells())} cells × {loaded.model.search.num_samples} samples{data})")
    return 0


COMMANDS = {"run": _run, "prepare": _prepare, "demo": _demo, "report": _report, "export": _export, "list": _list,
            "validate": _validate, "bench-model": _bench_model, "predict": _predict, "submit": _submit,
            "generate": generate.generate}


def _interrupt_on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM (a scheduler's kill) takes the same path as Ctrl-C: while Tune runs, that is Tune's own
    handler (it saves the experiment state for --resume); otherwise a KeyboardInterrupt."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and handler is not signal.default_int_handler:
        handler(signal.SIGINT, frame)
        return
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv`` names (default ``sys.argv[1:]``); returns the exit code (2 for bad input)."""
    args = _parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        return COMMANDS[args.command](args)
    except NeurorayError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        hint = {"prepare": "; finished recordings are kept: rerun with --resume",
                "run": "; finished trials and checkpoints are kept: rerun with --resume"}.get(args.command, "")
        print(f"interrupted{hint}", file=sys.stderr)
        return 130


def entrypoint() -> None:
    """The ``neuroray`` console script: ``main()``'s exit code as the process's."""
    sys.exit(main())
