"""Safe defaults and a dying trial, on one real `python -m neuroray run` of the demo (--smoke, one seed).

The run is a separate process with its own embedded Ray, started with fake credentials in its environment
(W&B key, *_TOKEN, *_SECRET, *PASSWORD*, AWS): every process of the run sees them, as a user's shell would
give them. While it runs, the trial actors' processes are SIGKILLed (as the OOM killer would): one as it
starts, the other after its first epoch. Then:
- the run ends by itself (no hang, no crash) with an ERROR row for each trial;
- no credential appears in any file of the run folder (results, reports, W&B offline files, TensorBoard
  events, Tune state), of the shard set, of Ray's session logs, or in the run's stdout/stderr;
- exporting the dead trial (no checkpoint) exits 2 with one line.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from neuroray.errors import NeurorayError

REPO = Path(__file__).resolve().parents[2]
FAKE = {name: f"{name.lower()}-{secrets.token_hex(12)}" for name in (
    "WANDB_API_KEY", "MY_SERVICE_TOKEN", "LAB_DB_PASSWORD", "NEURORAY_TEST_SECRET", "AWS_SECRET_ACCESS_KEY",
    "HF_TOKEN", "OPENAI_API_KEY")}


@dataclass(frozen=True)
class SecretRun:
    work: Path  # the run's cwd: data/ (shard set) and runs/ below it
    run_dir: Path
    ray_logs: Path
    log: Path  # the run's stdout + stderr
    returncode: int
    killed: list[int]


def _children(pid: int) -> Iterator[int]:
    """Every descendant of ``pid`` (from /proc): only this run's processes, never another test's."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {c for c, p in parents.items() if p in frontier} - found
        found |= frontier
    yield from found


def _reported(work: Path) -> bool:
    return any(len(p.read_text().splitlines()) > 1 for p in (work / "runs").rglob("progress.csv"))


def _trial_actor(pid: int, besides: list[int]) -> int | None:
    for child in set(_children(pid)) - set(besides):
        try:
            if Path(f"/proc/{child}/comm").read_text().startswith("ray::ImplicitFu"):  # Tune's trial actor
                return child
        except OSError:
            continue
    return None


@pytest.fixture(scope="module")
def secret_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecretRun]:
    work = tmp_path_factory.mktemp("safety")
    raw = yaml.safe_load((REPO / "experiments" / "demo.yaml").read_text())
    raw["smoke"]["seeds"] = 1  # demo --smoke with one seed: shallow and conv, one trial each
    (work / "demo.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    ray_tmp = Path(tempfile.mkdtemp(prefix="nr-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    env = {**os.environ, **FAKE, "RAY_TMPDIR": str(ray_tmp), "WANDB_MODE": "offline"}
    for inherited in ("RAY_ADDRESS", "RAY_LOGGER_LEVEL"):  # its own embedded Ray, with neuroray's defaults
        env.pop(inherited, None)
    log = work / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "neuroray", "run", "demo.yaml", "--smoke", "--quiet",
                                 "--storage", "runs"], cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        killed: list[int] = []
        deadline = time.time() + 600
        try:
            while proc.poll() is None and time.time() < deadline:
                actor = _trial_actor(proc.pid, besides=killed)
                # one trial's worker dies as its actor starts, the other's once it has reported an epoch
                if actor is not None and (not killed or (len(killed) == 1 and _reported(work))):
                    os.kill(actor, signal.SIGKILL)
                    killed.append(actor)
                time.sleep(0.1)
            returncode = proc.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"the run hung after its trial actor was killed; log: {log.read_text()[-3000:]}")
    sessions = sorted((ray_tmp / "ray").glob("session_2*"))
    yield SecretRun(work, work / "runs" / "demo-smoke", sessions[-1] / "logs" if sessions else ray_tmp, log,
                    returncode, killed)
    shutil.rmtree(ray_tmp, ignore_errors=True)


def _rows(run: SecretRun) -> tuple[pd.Series, pd.Series]:
    """(the trial that died starting, the trial that died training)."""
    df = pd.read_csv(run.run_dir / "results.csv")
    return df[df["checkpoint"].isna()].iloc[0], df[df["checkpoint"].notna()].iloc[0]


def test_dead_trial_actors_end_in_error_rows_not_a_hang(secret_run: SecretRun) -> None:
    assert len(secret_run.killed) == 2, f"trial actors killed: {secret_run.killed}"
    log = secret_run.log.read_text()
    assert secret_run.returncode == 1, log[-3000:]  # the run ended by itself: no trial finished, so exit 1
    df = pd.read_csv(secret_run.run_dir / "results.csv")
    # Ray says "died" for an actor killed while running, "never ran" for one killed as it was being started
    assert list(df["status"]) == ["ERROR", "ERROR"] and df["error"].str.contains("died|never ran").all(), df
    starting, training = _rows(secret_run)
    assert pd.isna(starting["val/nrmse"]) and starting["epochs"] == 0
    # the other trial went on after the first one's death, reported, then died itself
    assert training["epochs"] >= 1 and training["val/nrmse"] > 0
    assert "2 failed" in (secret_run.run_dir / "report.md").read_text()


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


def test_no_credential_in_results_reports_dashboards_or_logs(secret_run: SecretRun) -> None:
    scanned = _files(secret_run.run_dir) + _files(secret_run.work / "data") + _files(secret_run.ray_logs)
    scanned.append(secret_run.log)
    names = {p.name for p in scanned}
    # the scan covers what the run writes: W&B offline runs, TensorBoard events, Tune state, results, Ray logs
    assert list(secret_run.run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert any(n.startswith("events.out.tfevents") for n in names)
    assert {"results.csv", "results.parquet", "report.md", "run.json", "tuner.pkl", "manifest.json"} <= names
    assert any(n.endswith(".log") for n in names if n != secret_run.log.name)  # Ray's own session logs
    leaks = [(str(p), name) for p in scanned for name, value in FAKE.items() if value.encode() in p.read_bytes()]
    assert not leaks, leaks


def test_export_of_a_trial_without_checkpoint(secret_run: SecretRun, tmp_path: Path,
                                              expect_exit2: Callable[..., str]) -> None:
    dead = str(_rows(secret_run)[0]["trial_id"])
    out = tmp_path / "export"
    expect_exit2(["export", str(secret_run.run_dir), "--trial", dead, "--out", str(out)],
                 f"trial {dead} has no checkpoint to export", untouched=[out, secret_run.run_dir])


class _RunsCode:
    """A "checkpoint" that runs a command when unpickled without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def poisoned_run(secret_run: SecretRun, tmp_path: Path) -> tuple[Path, str, Path]:
    """A copy of the run whose checkpointed trial's model.pt holds a pickled command instead of tensors."""
    run = Path(shutil.copytree(secret_run.run_dir, tmp_path / "run", symlinks=True))
    results = pd.read_parquet(run / "results.parquet")
    results["checkpoint"] = results["checkpoint"].str.replace(str(secret_run.run_dir), str(run), regex=False)
    results.to_parquet(run / "results.parquet", index=False)
    trained = results[results["checkpoint"].notna()].iloc[0]
    marker = tmp_path / "code-ran"
    torch.save({"weight": _RunsCode(marker)}, Path(trained["checkpoint"]) / "model.pt")
    return run, str(trained["trial_id"]), marker


def test_pickled_checkpoint_never_runs_code(poisoned_run: tuple[Path, str, Path]) -> None:
    from neuroray.run_folder.checkpoints import load_checkpoint

    run, trial, marker = poisoned_run
    ckpt = pd.read_parquet(run / "results.parquet").set_index("trial_id").loc[trial, "checkpoint"]
    with pytest.raises(NeurorayError, match="refused: it holds pickled objects"):
        load_checkpoint(ckpt)  # torch.load(weights_only=True)
    assert not marker.exists()


def test_pickled_checkpoint_is_refused_with_one_line(poisoned_run: tuple[Path, str, Path], tmp_path: Path,
                                                     expect_exit2: Callable[..., str]) -> None:
    run, trial, marker = poisoned_run
    out = tmp_path / "export"
    expect_exit2(["export", str(run), "--trial", trial, "--out", str(out)], "model.pt", "refused",
                 untouched=[out])
    assert not marker.exists()


def test_local_dashboard_binds_to_localhost(ray_session: None) -> None:
    import ray

    url = ray._private.worker._global_node.webui_url  # the embedded session's dashboard
    host, port = url.rsplit(":", 1)
    assert host == "127.0.0.1", url
    # and the socket really listens on loopback only (/proc/net/tcp: local address 0100007F = 127.0.0.1)
    listening = [line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                 if line.split()[3] == "0A"]
    assert f"0100007F:{int(port):04X}" in listening
    assert f"00000000:{int(port):04X}" not in listening


def test_job_working_dir_leaves_data_and_secrets_behind(tmp_path: Path) -> None:
    """`neuroray submit` uploads the checkout through Ray's own packager with its excludes: list the zip."""
    import zipfile

    from ray._private.runtime_env.packaging import create_package

    from neuroray.cluster.submit import runtime_env, working_dir_of

    root = tmp_path / "checkout"
    keep = ["pyproject.toml", "experiments/x.yaml", "src/neuroray/__init__.py", "README.md"]
    drop = [".env", "prod.env", ".env.local", "secrets/db.txt", "certs/server.pem", "certs/server.key",
            "data/eeg/sub-01_eeg.set", "runs/x/results.csv", ".venv/bin/python", "wandb/run/x.wandb",
            ".aws/credentials", "api.token"]
    for rel in keep + drop:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(FAKE["MY_SERVICE_TOKEN"] if rel in drop else "ok")
    assert working_dir_of(root / "experiments" / "x.yaml") == root
    env = runtime_env(root)
    create_package(str(env["working_dir"]), tmp_path / "pkg.zip", include_gitignore=True,
                   excludes=list(env["excludes"]))  # type: ignore[call-overload]
    uploaded = set(zipfile.ZipFile(tmp_path / "pkg.zip").namelist())
    assert set(keep) <= uploaded
    assert not [rel for rel in drop if rel in uploaded], sorted(uploaded)
