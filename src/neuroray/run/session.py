"""Start an embedded Ray, or join a running one (``--address auto`` / ``RAY_ADDRESS`` / ``ray job submit``)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass

import ray

log = logging.getLogger(__name__)

# Safe, offline defaults; the user's environment wins.
# Train V2's controller collects worker reports (and starts/ends the worker group) on this poll, 2 s by default:
# a 3-epoch TorchTrainer trial of a small EEG model took 45 s with it and 29 s at 0.25 s
# (benchmarks/trial_overhead.py). Also passed to jobs by `neuroray submit`.
TRAIN_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25"}

DEFAULT_ENV = {
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "RAY_USAGE_STATS_ENABLED": "0",
    # At INFO, the embedded head's runtime-env agent logs every actor's env_vars under /tmp/ray/session_*/logs,
    # and Ray passes WANDB_API_KEY / AWS_SECRET_ACCESS_KEY to actors that way: warnings only.
    "RAY_LOGGER_LEVEL": "warning",
    # Tune snapshots its state whenever a trial checkpoints more often than num_to_keep (every epoch here,
    # so that --resume and restarts lose nothing); that is intended, not a warning.
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    **TRAIN_ENV,
}


def apply_default_env() -> None:
    """Set neuroray's Ray environment defaults (those the user has not set)."""
    for key, value in DEFAULT_ENV.items():
        os.environ.setdefault(key, value)


def logical_cpus() -> int:
    """More logical CPUs than cores: Ray Data read tasks need CPU while train workers hold theirs."""
    return (os.cpu_count() or 1) + 2


def configure_data_context() -> None:
    """Ray Data settings for training reads in this process (quiet logs, the context's limits)."""
    import ray.data

    # Per-execution INFO lines from Ray Data drown the trial table; warnings still show.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_operator_progress_bars = False


#: Modules the driver imports only after Ray is up, each measured with ``python -X importtime`` on a 20-trial
#: run: Tune's usage tagging imports Ray's MLflow integration whatever the callbacks (0.72 s), Tune's
#: TensorBoard logger tensorboardX (0.57 s), the report's Optuna parameter importance (0.54 s), the W&B
#: callback's wandb (0.69 s; kept out of run.tune so trial processes do not import it). While ``ray.init``
#: waits for its processes (~4 s of the driver's 5.7 s in it), a thread imports them.
AFTER_INIT_IMPORTS = ("ray.air.integrations.mlflow", "tensorboardX", "optuna.importance", "ray.train.torch",
                      "neuroray.run.tracking")


def _prefetch(modules: tuple[str, ...] = AFTER_INIT_IMPORTS) -> threading.Thread:
    def work() -> None:
        import contextlib
        import importlib

        for name in modules:
            # an optional module: whoever needs it later gets the real error
            with contextlib.suppress(Exception):
                importlib.import_module(name)

    thread = threading.Thread(target=work, name="neuroray-prefetch-imports", daemon=True)
    thread.start()
    return thread


def _init(**kwargs: object) -> None:
    """ray.init, keeping the caller's SIGTERM handler: Ray replaces it with one that exits at once, and the
    CLI's lets Tune save its state for --resume."""
    before = signal.getsignal(signal.SIGTERM)
    prefetch = _prefetch()
    ray.init(**kwargs)  # type: ignore[arg-type]
    prefetch.join()  # half-imported modules must not meet the main thread's imports later
    if callable(before) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, before)


def pin_data_actors_here() -> None:
    """Create Ray Data's cluster-wide helper actors (stats, autoscaling coordinator) from this driver.

    Ray Data pins them, detached, to the node of whoever first needs them; left to the first trial, that is
    a worker node, and losing that node (a spot reclaim) stalls every other trial's data. Created here, they
    fate-share with the driver's node.
    """
    from neuroray.run.ray_compat import create_data_helper_actors

    create_data_helper_actors()


JOIN_TIMEOUT_S = 10.0


def check_reachable(address: str, timeout: float = JOIN_TIMEOUT_S) -> None:
    """``HOST:PORT`` of a Ray head must answer within ``timeout``; Ray itself retries for minutes.
    ``auto``, ``local`` and ``ray://`` addresses are left to Ray (they fail fast or have their own timeout)."""
    import socket

    from neuroray.errors import NeurorayError

    if address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise NeurorayError(f"--address {address}: not HOST:PORT (the head's GCS address, e.g. 10.0.0.5:6379), "
                            "'auto' or ray://HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return
    except OSError as e:
        raise NeurorayError(f"--address {address}: no Ray head answers there within {timeout:g} s "
                            f"({e.strerror or type(e).__name__}); start one with `ray start --head` or leave "
                            "out --address for an embedded Ray") from None


@dataclass(frozen=True)
class Connection:
    """How this process is connected to Ray: a description for the log, and whether it started Ray itself."""

    description: str
    embedded: bool  # this process started Ray (and holds back logical CPUs for Ray Data)


def start(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None) -> Connection:
    """Connect to Ray. Reuses an already-initialized (embedded) Ray, as the test session does."""
    apply_default_env()
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        check_reachable(address)  # a dead address: one line in seconds, not minutes of Ray's retries
    if ray.is_initialized():
        configure_data_context()
        return Connection("the already-initialized Ray", embedded=True)
    if address:
        _init(address=address, logging_level=logging.WARNING, log_to_driver=True)
        configure_data_context()
        return Connection(f"joined Ray at {address}", embedded=False)
    # address="local" always starts a fresh instance: a stale ray_current_cluster file left by an
    # earlier `ray start` must not turn an embedded run into a failed connection.
    _init(address="local", num_cpus=num_cpus or logical_cpus(), num_gpus=num_gpus, include_dashboard=True,
          dashboard_host="127.0.0.1", logging_level=logging.WARNING)
    configure_data_context()
    return Connection(f"embedded Ray ({int(ray.cluster_resources().get('CPU', 0))} logical CPUs)", embedded=True)


def stop() -> None:
    """Shut down this process's Ray connection, if any."""
    if ray.is_initialized():
        ray.shutdown()
