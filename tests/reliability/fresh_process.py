"""A `neuroray run` in a new process, for the tests that show a refusal starts no Ray and takes seconds."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def refused_in_a_fresh_process(experiment: Path, storage: Path) -> list[str]:
    """`neuroray run` in a new process (no session Ray): exit 2 within 15 s; its non-blank stderr lines."""
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "neuroray", "run", str(experiment), "--storage", str(storage)],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "RAY_ADDRESS": ""})
    assert done.returncode == 2, done.stderr[-2000:]
    assert time.time() - started < 15
    assert "Started a local Ray instance" not in done.stdout + done.stderr
    return [line for line in done.stderr.splitlines() if line.strip()]
