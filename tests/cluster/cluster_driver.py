"""Run a multi-node driver script (``ray.cluster_utils.Cluster`` in its own process) and read its JSON line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest


def run_driver(script: Path, args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """The last JSON line ``script`` prints; the test fails with the driver's stderr when there is none.

    A short RAY_TMPDIR of its own: Ray's socket paths must stay under 107 bytes, and the session's Ray is left
    alone."""
    ray_tmp = tempfile.mkdtemp(prefix="nr-", dir="/tmp")
    full = {**os.environ, **(env or {}), "RAY_TMPDIR": ray_tmp, "WANDB_MODE": "disabled"}
    full.pop("RAY_ADDRESS", None)
    try:
        proc = subprocess.run([sys.executable, str(script), *args], env=full, capture_output=True, text=True,
                              timeout=600)
    except subprocess.TimeoutExpired as e:  # fail with the driver's output rather than pytest-timeout's stack
        tail = (e.stderr or b"")[-4000:]
        pytest.fail(f"{script.name} still running after 600 s; its stderr ends:\n"
                    f"{tail.decode(errors='replace') if isinstance(tail, bytes) else tail}")
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    return dict(json.loads(lines[-1]))
