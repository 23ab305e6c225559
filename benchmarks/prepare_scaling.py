"""Preprocessing scaling (issue 9 item 3): `neuroray prepare eeg` windows/s with 1 vs 2 CPUs.

One synthetic HBN tree (real R1 sidecars, synthetic EEGLAB signals at 250 Hz, resampled to 100 Hz by the
default pipeline). For each CPU count a fresh process starts its own embedded Ray with ``num_cpus=N`` (so at
most N recordings are processed at once), warms N task workers (Python start-up, MNE imports), then runs
``run.prepare.prepare_eeg`` ``repeats`` times into fresh output folders. windows/s = rows written / wall time of
``prepare_eeg``, which includes the serial assembly of the shard set (split, train statistics, Parquet).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import row, summary

REPO = Path(__file__).resolve().parents[1]
GOAL = 1.8
SFREQ = 250.0  # half HBN's 500 Hz keeps `make bench` under 10 min; the pipeline filters and resamples to 100 Hz


def _warm() -> None:
    import mne  # noqa: F401

    import neuroray.datasets.eeg.prepare  # noqa: F401


def worker(bids: Path, work: Path, num_cpus: int, repeats: int) -> dict[str, Any]:
    """In its own process: embedded Ray with ``num_cpus`` CPUs, then warm-up + timed prepares."""
    import ray

    from neuroray.datasets.eeg.prepare import make_config
    from neuroray.run import session
    from neuroray.run.prepare import prepare_eeg

    session.start(num_cpus=num_cpus)
    # Warm-up: start the N task workers and import what process_recording needs, so the timed runs measure
    # preprocessing, not Python start-up (Ray reuses these idle workers for the prepare tasks).
    ray.get([ray.remote(num_cpus=1)(_warm).remote() for _ in range(num_cpus)])
    cfg = make_config(target="challenge1")
    rates, seconds = [], []
    for i in range(repeats):
        start = time.perf_counter()
        result = prepare_eeg(bids, work / f"c1-{num_cpus}-{i}", cfg, progress=False)
        elapsed = time.perf_counter() - start
        rows = sum(result.manifest["rows"].values())
        rates.append(rows / elapsed)
        seconds.append(elapsed)
    session.stop()
    return {"windows_per_s": rates, "seconds": seconds, "windows": rows}


def _run_worker(bids: Path, work: Path, num_cpus: int, repeats: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, "-m", "benchmarks.prepare_scaling", "worker", str(bids), str(work),
                           str(num_cpus), str(repeats)], env=env, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"prepare with {num_cpus} CPU(s) failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def cpu_ceiling(work_units: int = 20_000_000) -> float:
    """What the machine offers right now: the same pure-Python loop in 2 processes at once vs 1, as a speed-up.

    On a quiet 2-core machine ≈ 2; when other work holds a core, less — and so does any 2-CPU figure."""
    code = f"s = 0\nfor i in range({work_units}): s += i"

    def wall(n: int) -> float:
        start = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]
        for p in procs:
            p.wait()
        return time.perf_counter() - start

    return 2 * wall(1) / wall(2)


def run(quick: bool = False, repeats: int = 3, subjects: int = 6) -> dict[str, Any]:
    from neuroray.datasets.eeg.synthetic_hbn import write_synthetic_hbn

    subjects = 3 if quick else subjects
    with tempfile.TemporaryDirectory(prefix="neuroray-bench-prepare-") as tmp:
        work = Path(tmp)
        write_synthetic_hbn(work / "bids", n_subjects=subjects, sfreq=SFREQ, runs=1)
        ceiling = [cpu_ceiling(2_000_000 if quick else 20_000_000)]
        one = _run_worker(work / "bids", work, 1, repeats)
        two = _run_worker(work / "bids", work, 2, repeats)
        ceiling.append(cpu_ceiling(2_000_000 if quick else 20_000_000))
    ratio = summary(two["windows_per_s"])["median"] / summary(one["windows_per_s"])["median"]
    return {
        "name": "prepare_scaling",
        "title": "Preprocessing: `neuroray prepare eeg` with 1 vs 2 CPUs (issue 9 item 3)",
        "what": (f"synthetic HBN tree, {subjects} CCD recordings (129 ch at {SFREQ:.0f} Hz → 100 Hz, 0.5–40 Hz "
                 f"band-pass), challenge-1 windows ({one['windows']} per run); embedded Ray with num_cpus=N in a "
                 "fresh process per N, N task workers warmed (imports), then timed runs incl. assembling the "
                 "shard set."),
        "rows": [
            row("2 CPUs vs 1 CPU (baseline)", two["windows_per_s"], "windows/s", one["windows_per_s"], ratio,
                f"≥ {GOAL}×", ratio >= GOAL),
            row("machine ceiling: a pure-Python loop in 2 processes vs 1 (before and after)", ceiling, "×"),
        ],
        "findings": [
            "The ceiling row says how much of a second core this run could get: when it is well below 2, other work "
            "held a core and the 2-CPU figure cannot reach the goal either. Per-recording tasks are "
            "single-threaded (CPU time ≈ wall time in a 1-CPU run); the serial part (finding recordings, "
            "assembling the shard set, ~0.2 s) is small, so on a quiet machine the ratio is bounded by how evenly "
            f"{subjects} recordings of different lengths fill 2 workers.",
        ],
        "seconds_1cpu": summary(one["seconds"]),
        "seconds_2cpu": summary(two["seconds"]),
        "quick": quick,
    }


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "worker":
    print(json.dumps(worker(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))))
