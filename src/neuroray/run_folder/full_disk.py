"""A full disk under ``--storage`` (reliability D5): recognized, reported as one line, and kept out of the log.

When the storage fills, every trial and Tune's own state saving fail with the same ENOSPC, and Ray logs each
failure with its traceback (a trial's, the syncer's, "Trials did not complete"). Those records say nothing the
CLI's one ``error: --storage …: no space left on device`` line does not, so while a run is in progress
:func:`quiet_full_disk` drops them from the log (any other error still shows in full).
"""

from __future__ import annotations

import errno
import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from neuroray.run_folder.storage import is_uri

NO_SPACE_TEXT = ("No space left on device", "[Errno 28]")
# Tune's summary of failed trials; once the disk was full it only repeats what the one line says.
AFTERMATH = ("Trials did not complete",)


def is_no_space(e: BaseException | None) -> bool:
    """``e`` or anything in its cause/context chain is ENOSPC (Ray wraps a trial's OSError in RayTaskError)."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if getattr(e, "errno", None) == errno.ENOSPC or any(t in str(e) for t in NO_SPACE_TEXT):
            return True
        e = e.__cause__ or e.__context__
    return False


def nearly_full(storage: str | Path) -> bool:
    """Local storage with under 1 MiB free (an error that is only a symptom of it counts as a full disk)."""
    return not is_uri(storage) and shutil.disk_usage(storage).free < 1 << 20


def no_space_line(storage: str | Path) -> str:
    """The CLI's one line for a full ``storage``: how much is free, what is kept, how to go on."""
    free = "" if is_uri(storage) else f" ({shutil.disk_usage(storage).free / 1e6:.1f} MB free)"
    return (f"--storage {storage}: no space left on device{free}; finished trials and their checkpoints are "
            "kept. Free some space (or move the run folder to a larger disk) and rerun with --resume")


class _NoSpaceFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        """False (drop) for a full-disk record, and for Tune's failed-trials summary once one was seen."""
        exc = record.exc_info[1] if record.exc_info else None
        message = record.getMessage()
        if is_no_space(exc) or any(t in message for t in NO_SPACE_TEXT):
            self.seen = True
            return False
        return not (self.seen and record.levelno >= logging.ERROR and any(t in message for t in AFTERMATH))


@contextmanager
def quiet_full_disk() -> Iterator[None]:
    """Drop full-disk error records from the handlers of Ray's and the root logger while the block runs."""
    flt = _NoSpaceFilter()
    handlers = [h for name in ("ray", "") for h in logging.getLogger(name or None).handlers]
    for h in handlers:
        h.addFilter(flt)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(flt)
