"""Start an embedded Ray, or join a running one (``--address auto`` / ``RAY_ADDRESS`` / ``ray job submit``)."""

from __future__ import annotations

import logging
import os

import ray

log = logging.getLogger(__name__)

# Safe, offline defaults; the user's environment wins.
DEFAULT_ENV = {
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def apply_default_env() -> None:
    for key, value in DEFAULT_ENV.items():
        os.environ.setdefault(key, value)


def logical_cpus() -> int:
    """More logical CPUs than cores: Ray Data read tasks need CPU while train workers hold theirs."""
    return (os.cpu_count() or 1) + 2


def configure_data_context() -> None:
    import ray.data

    # Per-execution INFO lines from Ray Data drown the trial table; warnings still show.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_operator_progress_bars = False


def start(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None) -> str:
    """Connect to Ray; returns a one-line description. Reuses an already-initialized Ray (tests)."""
    apply_default_env()
    if ray.is_initialized():
        configure_data_context()
        return "using the already-initialized Ray"
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
        where = f"joined Ray at {address}"
    else:
        # address="local" always starts a fresh instance: a stale ray_current_cluster file left by an
        # earlier `ray start` must not turn an embedded run into a failed connection.
        ray.init(
            address="local",
            num_cpus=num_cpus or logical_cpus(),
            num_gpus=num_gpus,
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            logging_level=logging.WARNING,
        )
        where = f"embedded Ray ({int(ray.cluster_resources().get('CPU', 0))} logical CPUs)"
    configure_data_context()
    return where


def stop() -> None:
    if ray.is_initialized():
        ray.shutdown()
