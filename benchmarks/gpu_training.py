"""Every GPU check in one script (issue 20 item 4), sized to finish in under 8 minutes on one GPU:

1. data wait: data_wait.py on the device — share of step time a Ray Train worker waits for batches, and its
   seconds per step against plain Lightning on the same device and data (throughput ratio = inverse);
2. mixed precision: plain Lightning steps per second at 32-true vs bf16-mixed (and 16-mixed on CUDA), and one
   neuroray trial with ``resources.precision: bf16-mixed`` (the option reaching the Trainer);
3. TorchTrainer engine: one 1-worker trial (1 GPU) through ``run_experiment`` vs the same fit in plain Lightning;
4. ONNX Runtime: EEGNeX batch-1 p50/p95 and batch-64 throughput on the CUDA execution provider vs the CPU one,
   when onnxruntime-gpu is installed (otherwise that section says so).

``python -m benchmarks.gpu_training`` writes ``benchmarks/results/gpu_training.json`` (RESULTS.md picks it up);
``--device cpu --quick --out DIR`` is the dry run that ``tests/test_benchmarks.py`` runs, so the script is known
to work before GPU time is spent. ``make bench`` runs :func:`run`, which is marked skipped without a GPU.
A failing section is recorded with its error; the others still run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks import data_wait
from benchmarks.common import row, skipped, tensor_loader

TITLE = "GPU: data wait, throughput vs plain Lightning, bf16-mixed, TorchTrainer trial, ONNX CUDA (issue 20)"
WAIT_GOAL, THROUGHPUT_GOAL = 0.05, 0.9
BATCH = 64
RESULTS = Path(__file__).resolve().parent / "results"


def _section(name: str, fn: Callable[[], tuple[list[dict[str, Any]], dict[str, Any]]],
             rows: list[dict[str, Any]], detail: dict[str, Any]) -> None:
    start = time.perf_counter()
    print(f"gpu_training: {name} ...", flush=True)
    try:
        got, info = fn()
        rows += got
        detail[name] = {**info, "wall_s": time.perf_counter() - start}
    except Exception as e:  # noqa: BLE001 - one failing check must not lose the others' figures
        traceback.print_exc()
        detail[name] = {"error": f"{type(e).__name__}: {e}", "wall_s": time.perf_counter() - start}
    print(f"gpu_training: {name}: {time.perf_counter() - start:.0f} s", flush=True)


def _data_wait(device: str, quick: bool, repeats: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    r = data_wait.run(quick=quick, repeats=repeats, device=device)
    wait, _, step = r["rows"]
    ratio = 1.0 / step["ratio"]  # steps per second, neuroray ÷ plain Lightning
    wait["label"] = f"{device}: {wait['label']}"
    throughput = row(f"{device}: Ray Train worker steps/s vs plain Lightning (same device and data)",
                     [1.0 / s for s in _values(r["epochs_ray"])], "steps/s",
                     [1.0 / s for s in _values(r["epochs_in_memory"])], ratio,
                     goal=f"≥ {THROUGHPUT_GOAL:g}× plain Lightning", met=ratio >= THROUGHPUT_GOAL)
    wait["goal"], wait["met"] = f"≤ {WAIT_GOAL:.0%}", wait["figure"]["median"] <= WAIT_GOAL
    return [wait, throughput], {"what": r["what"], "findings": r["findings"]}


def _values(epochs: list[dict[str, float]]) -> list[float]:
    return [(e["wait_s"] + e["compute_s"]) / e["batches"] for e in epochs[1:]]


def _shards(work: Path, quick: bool) -> Path:
    from neuroray.datasets.synthetic import write_synthetic_eeg

    shards = work / "eeg"
    if not shards.exists():
        subjects, per_subject = (4, 20) if quick else (20, 100)
        write_synthetic_eeg(shards, n_subjects=subjects, windows_per_subject=per_subject, n_chans=129, n_times=200)
    return shards


def _steps_per_s(shards: Path, device: str, precision: str, epochs: int) -> float:
    """Plain Lightning, in-memory tensors: training steps per second after a warm-up epoch."""
    import lightning as L

    from neuroray.datasets.shards import open_shard_set
    from neuroray.trainables import base

    s = open_shard_set(shards, verify="none")
    L.seed_everything(0, verbose=False)
    module = base.build("eeg_regressor", s.spec, {"encoder": "eegnex"}, "y")
    timer = data_wait.WaitTimer()
    trainer = L.Trainer(max_epochs=epochs + 1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, devices=1,
                        accelerator="gpu" if device == "cuda" else "cpu", precision=precision,  # type: ignore[arg-type]
                        callbacks=[timer])
    trainer.fit(module, tensor_loader(s, "train", BATCH, True))
    return 1.0 / statistics.median(_values(timer.epochs))


def _precision(device: str, quick: bool, work: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    shards = _shards(work, quick)
    epochs = 1 if quick else 3
    modes = ["32-true", "bf16-mixed", *(["16-mixed"] if device == "cuda" else [])]
    rate = {m: _steps_per_s(shards, device, m, epochs) for m in modes}
    rows = [row(f"{device}: plain Lightning steps/s, EEGNeX 129×200, {m} vs 32-true", [rate[m]], "steps/s",
                [rate["32-true"]], rate[m] / rate["32-true"]) for m in modes[1:]]
    trial_s = _trial(shards, work, "actor", device, "bf16-mixed", epochs=1)
    rows.append(row(f"{device}: one neuroray trial with resources.precision: bf16-mixed (wall, 1 epoch)",
                    [trial_s], "s"))
    return rows, {"steps_per_s": rate, "encoder": "eegnex", "batch": BATCH}


def _trial(shards: Path, work: Path, engine: str, device: str, precision: str, epochs: int) -> float:
    """Wall seconds of one trial through run_experiment (embedded Ray already started)."""
    import yaml

    from neuroray.datasets.shards import open_shard_set
    from neuroray.run.tune import run_experiment
    from neuroray.search_spaces.experiment import load

    gpus = 1 if device == "cuda" else 0
    exp = {"name": f"gpu-bench-{engine}-{time.time_ns()}", "data": {"shards": str(shards), "verify": "none"},
           "phases": [{"name": "fit", "trainable": "eeg_regressor", "target": "y", "epochs": epochs,
                       "batch_size": BATCH, "hparams": {"encoder": "shallow"}}],
           "search": {"sampler": "random", "num_samples": 1, "space": {"lr": "loguniform(1e-3, 1e-2)"}},
           "resources": {"workers": 1, "gpus_per_worker": gpus, "engine": engine, "max_concurrent_trials": 1,
                         "precision": precision}}
    path = work / f"{engine}.yaml"
    path.write_text(yaml.safe_dump(exp))
    start = time.perf_counter()
    run_experiment(load(path), open_shard_set(shards, verify="none"), work / "runs", verbose=0)
    return time.perf_counter() - start


def _plain_fit_s(shards: Path, device: str, epochs: int) -> float:
    import lightning as L

    from neuroray.datasets.shards import open_shard_set
    from neuroray.trainables import base

    start = time.perf_counter()
    s = open_shard_set(shards, verify="none")
    module = base.build("eeg_regressor", s.spec, {"encoder": "shallow"}, "y")
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, devices=1,
                        accelerator="gpu" if device == "cuda" else "cpu")
    trainer.fit(module, tensor_loader(s, "train", BATCH, True), tensor_loader(s, "val", BATCH, False))
    return time.perf_counter() - start


def _torchtrainer(device: str, quick: bool, work: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    shards = _shards(work, quick)
    epochs = 1 if quick else 3
    plain = _plain_fit_s(shards, device, epochs)
    tt = _trial(shards, work, "torchtrainer", device, "32-true", epochs)
    return ([row(f"{device}: TorchTrainer engine, one 1-worker trial ({epochs} epochs) vs plain Lightning", [tt], "s",
                 [plain], tt / plain),
             row(f"{device}: TorchTrainer engine: overhead per trial", [tt - plain], "s")],
            {"epochs": epochs})


def _onnx(device: str, quick: bool, work: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import onnxruntime as ort

    from neuroray.datasets.eeg.steps import resolve_layout
    from neuroray.datasets.spec import EEGWindowSpec
    from neuroray.export.inference import time_calls
    from neuroray.export.to_onnx import export_module
    from neuroray.trainables import base

    providers = ort.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        return [], {"skipped": f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (providers: "
                               f"{', '.join(providers)}); install onnxruntime-gpu to measure it"}
    spec = EEGWindowSpec(n_chans=129, n_times=200, sfreq=100.0, ch_names=tuple(resolve_layout("hbn129")))
    torch.manual_seed(0)
    path = export_module(base.build("eeg_regressor", spec, {"encoder": "eegnex"}, "y").eval(), work / "eegnex.onnx")
    runs = 50 if quick else 200
    figures: dict[str, dict[str, Any]] = {}
    for provider in ("CUDAExecutionProvider", "CPUExecutionProvider"):
        sess = ort.InferenceSession(str(path), providers=[provider])

        def call(x: Any, sess: Any = sess) -> Any:
            return sess.run(None, {"x": x})

        figures[provider] = time_calls(call, spec.sample_shape, runs=runs, warmup=20, batch=BATCH, batch_runs=20)
    cuda, cpu = figures["CUDAExecutionProvider"], figures["CPUExecutionProvider"]
    rows = [row(f"ONNX Runtime CUDA provider, EEGNeX batch-1 {k[7:10]} vs CPU provider", [cuda[k]], "ms", [cpu[k]],
                cuda[k] / cpu[k]) for k in ("batch1_p50_ms", "batch1_p95_ms")]
    rows.append(row(f"ONNX Runtime CUDA provider, EEGNeX batch-{BATCH} throughput vs CPU provider",
                    [cuda["throughput_per_s"]], "windows/s", [cpu["throughput_per_s"]],
                    cuda["throughput_per_s"] / cpu["throughput_per_s"]))
    return rows, {"figures": figures}


def measure(device: str, quick: bool = False, repeats: int = 3) -> dict[str, Any]:
    """Every section on ``device`` ("cuda" or "cpu", the dry run); the JSON that gpu_training.json holds."""
    from neuroray.run import session

    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch.cuda.is_available() is False; use --device cpu for the dry run")
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    detail: dict[str, Any] = {}
    started_here = False
    with tempfile.TemporaryDirectory(prefix="neuroray-bench-gpu-") as tmp:
        work = Path(tmp)
        _section("data_wait", lambda: _data_wait(device, quick, repeats), rows, detail)
        import ray

        if not ray.is_initialized():
            session.start()
            started_here = True
        try:
            _section("precision", lambda: _precision(device, quick, work), rows, detail)
            _section("torchtrainer", lambda: _torchtrainer(device, quick, work), rows, detail)
        finally:
            if started_here:
                session.stop()
        _section("onnx_cuda", lambda: _onnx(device, quick, work), rows, detail)
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
    errors = [f"{k}: {v['error']}" for k, v in detail.items() if "error" in v]
    findings = [f"Device: {gpu or 'CPU (dry run: figures check the script, they are not GPU figures)'}."]
    findings += [f"Section failed — {e}" for e in errors]
    if "skipped" in detail.get("onnx_cuda", {}):
        findings.append(f"ONNX CUDA provider not measured: {detail['onnx_cuda']['skipped']}.")
    return {"name": "gpu_training", "title": f"{TITLE} — {gpu or device}", "gpu": gpu, "device": device,
            "what": "Sections: data wait (data_wait.py on the device), plain-Lightning steps/s by precision, "
                    "a TorchTrainer 1-worker trial vs plain Lightning, ONNX Runtime CUDA vs CPU provider.",
            "rows": rows, "findings": findings, "sections": detail, "errors": errors, "quick": quick,
            "wall_s": time.perf_counter() - start}


def run(quick: bool = False, repeats: int = 3) -> dict[str, Any]:
    """``make bench``'s GPU entry: every section on CUDA; marked skipped without a device."""
    if not torch.cuda.is_available():
        return skipped("gpu_training", TITLE, "not measured: no device here (torch.cuda.is_available() is False). "
                       "`make bench-gpu` on a GPU machine measures every section in < 8 min; its CPU dry run "
                       "`python -m benchmarks.gpu_training --device cpu --quick` passes "
                       "(tests/test_benchmarks.py::test_gpu_script_dry_run_on_cpu, marked slow)")
    return measure("cuda", quick, repeats)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_training", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--quick", action="store_true", help="tiny sizes and one repeat: checks the script runs")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for gpu_training.json (default: %(default)s)")
    args = p.parse_args(argv)
    from benchmarks.__main__ import _machine, _versions

    result = measure(args.device, args.quick, repeats=1 if args.quick else 3)
    result.update(date=datetime.datetime.now().isoformat(timespec="minutes"), machine=_machine(),
                  versions=_versions())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_training.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"gpu_training: wrote {args.out / 'gpu_training.json'} in {result['wall_s']:.0f} s"
          + (f"; FAILED sections: {'; '.join(result['errors'])}" if result["errors"] else ""), flush=True)
    if args.out.resolve() == RESULTS.resolve():
        from benchmarks.__main__ import write_results_md

        write_results_md()
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
