"""Against a separate local head (`ray start --head`): a workstation with one (fake) GPU and jobs.

The head runs with its own RAY_TMPDIR and ports, so it never touches the session's embedded Ray, and is
stopped by signalling its `--block` process group (plain `ray stop` would end every Ray on the machine).
It advertises `--num-gpus 1` without a CUDA device: trials that ask for a GPU share are scheduled by Ray's
resource accounting and train on CPU (Lightning's accelerator "auto" picks cpu when torch has no CUDA).
Its environment points S3 clients at the test's moto server, as an IAM role would on a cloud node.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
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
def head(s3_server: Any) -> Iterator[dict[str, str]]:
    tmp = tempfile.mkdtemp(prefix="nrh", dir="/tmp")  # short: Ray's unix socket paths have a length limit
    gcs, dash, client, agent, agent_grpc, env_agent, metrics = _free_ports(7)
    # Its own token, passed to the head and every client: a fresh machine has no ~/.ray/auth_token yet (the
    # first embedded Ray writes one, perhaps after these tests), and the user's own token stays untouched.
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env = {**os.environ, **s3_server.env, **auth, "RAY_TMPDIR": tmp, "RAY_USAGE_STATS_ENABLED": "0",
           "WANDB_MODE": "offline", "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    log = open(Path(tmp) / "head.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--num-cpus", "6", "--num-gpus", "1",
         "--dashboard-host", "127.0.0.1",
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
    yield {"tmp": tmp, "dashboard": f"http://127.0.0.1:{dash}", "RAY_TMPDIR": tmp, **auth, "PATH": env["PATH"]}
    os.killpg(proc.pid, signal.SIGTERM)
    try:  # a throwaway head in its own session and tmp: no need to wait out Ray's graceful shutdown
        proc.wait(timeout=8)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()
    shutil.rmtree(tmp, ignore_errors=True)


def _env(head: dict[str, str]) -> dict[str, str]:
    """A client of the head: its RAY_TMPDIR (for `--address auto`) and token auth (Ray 2.60's default)."""
    env = {**os.environ, **{k: head[k] for k in ("RAY_TMPDIR", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "PATH")}}
    env.pop("RAY_ADDRESS", None)
    return env


def _max_overlap(progress: list[pd.DataFrame]) -> int:
    """Most trials running at the same moment, from each trial's reported timestamps (progress.csv)."""
    events = []
    for p in progress:
        start = float(p["timestamp"].iloc[0] - p["time_total_s"].iloc[0])
        events += [(start, 1), (float(p["timestamp"].iloc[-1]), -1)]
    running = peak = 0
    for _, step in sorted(events):  # an end (-1) sorts before a start at the same second
        running += step
        peak = max(peak, running)
    return peak


# ~2 min (the largest default test): slow-marked to keep the default run under 20 minutes; the other tests
# here still submit jobs to the head, and tests/cluster/test_storage_s3.py writes runs to S3
@pytest.mark.slow
def test_submit_quarter_gpu_trials_streams_logs_and_stores_in_s3(head: dict[str, str], s3_server: Any,
                                                                 tmp_path: Path) -> None:
    """`neuroray submit` of a smoke run whose trials take 0.25 GPU each, on a head with one (fake) GPU.

    The experiment file sits outside a checkout: its folder is the job's working dir and the head's
    installed neuroray runs it. Storage is the moto S3 server, reached through the head's environment.
    """
    exp = yaml.safe_load((REPO / "experiments" / "demo.yaml").read_text())
    exp["name"] = "quarter-gpu"
    exp["resources"] = {"workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 0.25, "engine": "actor"}
    (tmp_path / "quarter-gpu.yaml").write_text(yaml.safe_dump(exp))
    bucket = s3_server.bucket
    proc = subprocess.run(
        [str(BIN / "neuroray"), "submit", "quarter-gpu.yaml", "--address", head["dashboard"], "--smoke",
         "--storage", f"s3://{bucket}/jobs"],
        cwd=tmp_path, env=_env(head), capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    job_id = re.search(r"submitted job (\S+) to", out).group(1)  # type: ignore[union-attr]
    assert f"job {job_id} SUCCEEDED" in out
    assert "neuroray: quarter-gpu-smoke on joined Ray" in out  # the job's own output, streamed back
    # results and checkpoints are in the bucket
    run = f"{bucket}/jobs/quarter-gpu-smoke"
    keys = s3_server.keys(run)
    with s3_server.fs.open_input_stream(f"{run}/results.csv") as f:
        df = pd.read_csv(f)
    assert len(df) == 4 and (df["status"] == "OK").all()
    for ckpt in df["checkpoint"]:
        assert f"{ckpt.removeprefix('s3://')}/model.pt" in keys
    # Ray gave each trial a quarter of the GPU: its placement group bundle, from the head's state API
    state = subprocess.run([str(BIN / "ray"), "list", "placement-groups", "--detail", "--format", "json",
                            "--address", head["dashboard"], "--limit", "1000"],
                           env=_env(head), capture_output=True, text=True, timeout=120)
    assert state.returncode == 0, state.stderr[-2000:]
    bundles = [b["unit_resources"] for pg in json.loads(state.stdout) for b in pg["bundles"]]
    assert sum(b.get("GPU") == 0.25 for b in bundles) >= 1, bundles
    # ... and the trials shared that one GPU at the same time (a whole-GPU request allows one at a time)
    progress = []
    for key in (k for k in keys if k.endswith("/progress.csv")):
        with s3_server.fs.open_input_stream(key) as f:
            progress.append(pd.read_csv(f))
    assert len(progress) == 4
    assert _max_overlap(progress) >= 3, [p[["timestamp", "time_total_s"]] for p in progress]


def test_run_with_address_auto_joins_the_head(head: dict[str, str], tmp_path: Path) -> None:
    """The workstation route: `neuroray run --address auto` finds the head through RAY_TMPDIR (one tiny trial)."""
    exp = yaml.safe_load((REPO / "experiments" / "demo.yaml").read_text())
    exp["name"] = "tiny"
    exp["matrix"] = {"arm": {"shallow": exp["matrix"]["arm"]["shallow"]}, "seed": [0]}
    exp["scheduler"] = {"type": "none"}
    exp["smoke"] = {"epochs": 1, "num_samples": 1, "seeds": 1,
                    "overrides": {"data.shards": "data/tiny", "data.prepare.n_subjects": 4,
                                  "data.prepare.windows_per_subject": 20, "phases.fit.batch_size": 16}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(exp))
    proc = subprocess.run(
        [str(BIN / "neuroray"), "run", "tiny.yaml", "--smoke", "--quiet", "--address", "auto",
         "--storage", str(tmp_path / "runs")],
        cwd=tmp_path, env=_env(head), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "neuroray: tiny-smoke on joined Ray at auto" in proc.stdout
    df = pd.read_csv(tmp_path / "runs" / "tiny-smoke" / "results.csv")
    assert len(df) == 1 and (df["status"] == "OK").all()


def test_failed_job_exits_1_and_no_wait_returns_at_once(head: dict[str, str]) -> None:
    # a valid file, but the job's storage check fails on the head (no such bucket): the job FAILS
    cmd = [str(BIN / "neuroray"), "submit", "experiments/demo.yaml", "--address", head["dashboard"], "--smoke",
           "--storage", "s3://no-such-bucket-here/x"]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(head), capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert "--storage s3://no-such-bucket-here/x: not writable" in out and "FAILED" in out
    # --no-wait: back once the job is accepted (it fails on the head meanwhile; the head's teardown ends it)
    quick = subprocess.run([*cmd, "--no-wait"], cwd=REPO, env=_env(head), capture_output=True, text=True,
                           timeout=300)
    assert quick.returncode == 0, quick.stdout + quick.stderr
    job_id = re.search(r"submitted job (\S+) to", quick.stdout).group(1)  # type: ignore[union-attr]
    assert f"ray job logs --follow --address {head['dashboard']} {job_id}" in quick.stdout
    assert "not writable" not in quick.stdout  # it did not wait for the job's output


def test_ray_job_submit_as_in_the_readme(head: dict[str, str]) -> None:
    proc = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", head["dashboard"], "--working-dir", ".", "--",
         "neuroray", "validate", "experiments/demo.yaml"],
        cwd=REPO, env=_env(head), capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert re.search(r"Job '.*' succeeded", out) and "experiments/demo.yaml: ok" in out, out[-4000:]


@pytest.mark.parametrize(("args", "expected"), [
    (["experiments/nope.yaml"], "nope.yaml"),
    (["experiments/demo.yaml", "--storage", "relative/runs"], "--storage relative/runs: a job runs in its own"),
    (["experiments/demo.yaml", "--address", "http://127.0.0.1:9"], "--address http://127.0.0.1:9: "),
])
def test_submit_bad_input_exits_2_with_one_line(args: list[str], expected: str, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from neuroray.cli import main

    monkeypatch.chdir(REPO)
    argv = ["submit", *args] if "--address" in args else ["submit", *args, "--address", "http://127.0.0.1:9"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expected in err and "\n" not in err, err
