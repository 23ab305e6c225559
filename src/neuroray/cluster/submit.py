"""`neuroray submit`: run an experiment as a Ray job (a thin wrapper over Ray's Job Submission SDK).

The job's working directory is the checkout the experiment file lives in (the nearest folder with a
``pyproject.toml``), uploaded minus data, run folders, the virtualenv, git metadata and secrets; the
neuroray package of that checkout travels too (``py_modules``), so the job runs the code you submit.
Exit status: 0 when the job SUCCEEDED, 1 when it FAILED or was STOPPED, 2 on bad input.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING

from neuroray.errors import NeurorayError
from neuroray.run.session import TRAIN_ENV
from neuroray.run_folder.storage import is_uri

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

# gitignore-style patterns (Ray's runtime_env "excludes"); Ray also honours the checkout's .gitignore
EXCLUDES = [
    "data/", "runs/", ".venv/", "venv/", ".git/", "__pycache__/", "*.egg-info/", ".mypy_cache/", ".pytest_cache/",
    ".ruff_cache/", "wandb/", "lightning_logs/", "benchmarks/results/",
    # secrets never leave the machine
    ".env", "*.env", ".env.*", "secrets/", "*.pem", "*.key", "id_rsa*", ".aws/", "credentials", "*.token",
    "auth_token",
]
TERMINAL = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 1}


def working_dir_of(experiment: Path) -> Path:
    """The checkout that holds ``experiment``: its nearest ancestor with a pyproject.toml, else the cwd."""
    for parent in experiment.resolve().parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    cwd = Path.cwd().resolve()
    if cwd not in experiment.resolve().parents:
        raise NeurorayError(f"{experiment}: not inside a checkout (no pyproject.toml above it) nor the current "
                            "directory; the job uploads one of those as its working dir")
    return cwd


def entrypoint(experiment: Path, root: Path, storage: str | None, smoke: bool, overwrite: bool) -> str:
    """The job's shell command: ``neuroray run EXPERIMENT`` (path relative to ``root``) with the given flags."""
    args = ["neuroray", "run", experiment.resolve().relative_to(root).as_posix()]
    args += ["--storage", storage] if storage else []
    args += ["--smoke"] * smoke + ["--overwrite"] * overwrite
    return shlex.join(args)


def runtime_env(root: Path) -> dict[str, object]:
    """Ray runtime_env for a job from ``root``: the working dir minus ``EXCLUDES``, ``TRAIN_ENV`` (values from the
    environment where set) and, in a neuroray checkout, its package as ``py_modules``."""
    env: dict[str, object] = {"working_dir": str(root), "excludes": EXCLUDES,
                              "env_vars": {k: os.environ.get(k, v) for k, v in TRAIN_ENV.items()}}
    package = root / "src" / "neuroray"
    if (package / "__init__.py").is_file():  # a neuroray checkout: the job imports this code, not the node's
        env["py_modules"] = [str(package)]
    return env


def _client(address: str) -> JobSubmissionClient:
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise NeurorayError(f"--address {address}: {_why(e)}") from None


def _why(e: BaseException) -> str:
    text = " ".join(str(e).split())[:300]
    if "Authentication" in text or "401" in text or "403" in text:
        text += ("; the head uses token auth: set RAY_AUTH_MODE=token and put the cluster's token in "
                 "~/.ray/auth_token (or RAY_AUTH_TOKEN)")
    return text


async def _tail(client: JobSubmissionClient, job_id: str) -> None:
    async for lines in client.tail_job_logs(job_id):
        print(lines, end="", flush=True)


def submit(experiment: str | Path, address: str, storage: str | None = None, smoke: bool = False,
           overwrite: bool = False, wait: bool = True) -> int:
    """Submit ``neuroray run EXPERIMENT`` as a job; stream its logs; return its exit status."""
    from neuroray.search_spaces.experiment import load

    path = Path(experiment)
    loaded = load(path, smoke=smoke)  # bad files fail here, with one line, before anything is uploaded
    if storage is None and loaded.model.storage is None:
        print("note: no --storage: results stay in the job's working dir on the head node; pass --storage "
              "s3://BUCKET/PREFIX (or a path every node shares) to keep them", flush=True)
    elif storage is not None and not is_uri(storage) and not Path(storage).is_absolute():
        raise NeurorayError(f"--storage {storage}: a job runs in its own working dir; give a URI (s3://…) or an "
                            "absolute path that every node shares")
    root = working_dir_of(path)
    cmd = entrypoint(path, root, storage, smoke, overwrite)
    client = _client(address)
    try:
        job_id = client.submit_job(entrypoint=cmd, runtime_env=runtime_env(root),
                                   metadata={"neuroray_experiment": loaded.name})
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise NeurorayError(f"--address {address}: the job was not accepted: {_why(e)}") from None
    print(f"submitted job {job_id} to {address}: {cmd}\n  working dir {root} (minus data/, runs/, .venv/, "
          f".git/, secrets)", flush=True)
    if not wait:
        print(f"follow it: ray job logs --follow --address {address} {job_id}\n"
              f"stop it:   ray job stop --address {address} {job_id}")
        return 0
    try:
        asyncio.run(_tail(client, job_id))
        status = client.get_job_status(job_id).value
        while status not in TERMINAL:  # the log stream can end a moment before the status turns final
            time.sleep(1)
            status = client.get_job_status(job_id).value
    except KeyboardInterrupt:
        print(f"\nstopped following; job {job_id} keeps running (ray job stop --address {address} {job_id})")
        raise
    message = client.get_job_info(job_id).message or ""
    print(f"job {job_id} {status}" + (f": {message}" if status != "SUCCEEDED" and message else ""))
    return TERMINAL[status]
