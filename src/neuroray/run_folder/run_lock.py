"""One live run per run folder: a lock file holding the holder's pid, host and process start time.

Two `neuroray run`s of one experiment into one storage would write their trials into one folder and read
each other's Tune snapshots; the second is refused in its first second instead. A lock left by a run that
was SIGKILLed (its pid is gone, or reused by a process that started later) is stale and taken over.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from neuroray.errors import NeurorayError
from neuroray.run_folder.storage import LOCK_FILE


def _start_ticks(pid: int) -> int | None:
    """The process's start time (clock ticks since boot, /proc/<pid>/stat field 22); None when it is gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int, ticks: int | None) -> bool:
    if Path("/proc").is_dir():
        now = _start_ticks(pid)
        return now is not None and (ticks is None or now == ticks)
    try:  # no /proc (macOS): the pid alone
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _stale(holder: dict[str, Any] | None) -> bool:
    """Only a lock of this host can be judged: a dead pid there (or one reused by a newer process)."""
    if holder is None:  # unreadable: never half-written (created whole by link), so it is not ours to judge
        return False
    if holder.get("host") != socket.gethostname():
        return False
    return not _alive(int(holder.get("pid", -1)), holder.get("start_ticks"))


class RunLock:
    """Held while a run writes its folder; ``release()`` (or the context manager) removes it."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_FILE
        self.me = {"pid": os.getpid(), "host": socket.gethostname(), "start_ticks": _start_ticks(os.getpid()),
                   "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv[:4])[:200]}

    def acquire(self) -> RunLock:
        """Take the lock (atomically; a stale holder's lock is taken over) or raise naming the live holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{LOCK_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.me))
        try:
            for _ in range(2):
                try:
                    os.link(tmp, self.path)  # atomic create-if-absent, with its content already in place
                    return self
                except FileExistsError:
                    holder = _holder(self.path)
                    if not _stale(holder):
                        raise NeurorayError(self._busy(holder)) from None
                    self.path.unlink(missing_ok=True)  # a SIGKILLed run's lock
            raise NeurorayError(self._busy(_holder(self.path)))
        finally:
            tmp.unlink(missing_ok=True)

    def _busy(self, holder: dict[str, Any] | None) -> str:
        who = (f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}" if holder
               else "holder unknown")
        return (f"{self.path.parent}: another neuroray run of this experiment is using this folder ({who}); "
                f"wait for it to end or write elsewhere with --storage. If that run is gone, delete {self.path}")

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        holder = _holder(self.path)
        if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == self.me["host"]:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
