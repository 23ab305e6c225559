"""Against a separate local head (`ray start --head`): `neuroray run --address auto` and `ray job submit`.

The head runs with its own RAY_TMPDIR and ports, so it never touches the session's embedded Ray, and
is stopped by signalling its `--block` process (plain `ray stop` would end every Ray on the machine).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.cluster


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture(scope="module")
def head() -> Iterator[dict[str, str]]:
    tmp = tempfile.mkdtemp(prefix="nrh", dir="/tmp")  # short: Ray's unix socket paths have a length limit
    gcs, dash, client, agent, agent_grpc, env_agent, metrics = _free_ports(7)
    env = {**os.environ, "RAY_TMPDIR": tmp, "RAY_USAGE_STATS_ENABLED": "0",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    log = open(Path(tmp) / "head.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--num-cpus", "2", "--dashboard-host", "127.0.0.1",
         f"--port={gcs}", f"--dashboard-port={dash}", f"--ray-client-server-port={client}",
         f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
         f"--runtime-env-agent-port={env_agent}", f"--metrics-export-port={metrics}",
         "--min-worker-port=20000", "--max-worker-port=20999"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address_file = Path(tmp) / "ray" / "ray_current_cluster"
    deadline = time.time() + 120
    while not address_file.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(1)
    if not address_file.exists():
        proc.kill()
        pytest.fail(f"ray start --head did not come up:\n{(Path(tmp) / 'head.log').read_text()[-3000:]}")
    time.sleep(3)  # the dashboard (job server) starts just after the GCS
    client_env = {**env, "RAY_AUTH_MODE": "token"}
    yield {"tmp": tmp, "dashboard": f"http://127.0.0.1:{dash}", **{k: v for k, v in client_env.items()
                                                                    if k in ("RAY_TMPDIR", "RAY_AUTH_MODE", "PATH")}}
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()
    shutil.rmtree(tmp, ignore_errors=True)


def _env(head: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **{k: head[k] for k in ("RAY_TMPDIR", "RAY_AUTH_MODE", "PATH")}}
    env.pop("RAY_ADDRESS", None)
    return env


def test_run_with_address_auto_joins_the_head(head: dict[str, str], tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(BIN / "neuroray"), "run", str(REPO / "experiments" / "demo.yaml"), "--smoke", "--quiet",
         "--address", "auto", "--storage", str(tmp_path / "runs")],
        cwd=tmp_path, env=_env(head), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "joined Ray at auto" in proc.stdout
    df = pd.read_csv(tmp_path / "runs" / "demo-smoke" / "results.csv")
    assert len(df) == 4 and (df["status"] == "OK").all()


def test_ray_job_submit_runs_the_smoke_experiment(head: dict[str, str]) -> None:
    proc = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", head["dashboard"], "--working-dir", ".", "--",
         "neuroray", "run", "experiments/demo.yaml", "--smoke"],
        cwd=REPO, env=_env(head), capture_output=True, text=True, timeout=500)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert re.search(r"Job '.*' succeeded", out), out[-4000:]
    results = Path(re.search(r"results: (\S+results\.csv)", out).group(1))  # type: ignore[union-attr]
    df = pd.read_csv(results)
    assert len(df) == 4 and (df["status"] == "OK").all()
