"""Outputs: paths given on the command line checked before any work (one line instead of a traceback later),
and the one way every writer publishes a file or a folder (readers see the old or the new, never half)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from neuroray.errors import NeurorayError

__all__ = ["atomic_write", "publish_dir", "check_output", "check_count"]

T = TypeVar("T")


def atomic_write(path: Path, write: Callable[[Path], T]) -> T:
    """``write(tmp)`` to a temp file in the same folder, then rename onto ``path``; returns what ``write``
    returns. A failed or interrupted write leaves neither half a file nor its temp."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        result = write(tmp)
        os.replace(tmp, path)
        return result
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def publish_dir(folder: Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` fills a temp folder beside ``folder``, which then replaces ``folder`` whole."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def check_output(path: Path, flag: str, folder: bool) -> None:
    """``path`` can become a ``folder`` (or a file): nothing of the other kind stands there or above it."""
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise NeurorayError(f"{flag} {path}: {parent} is a file, not a folder; choose a path in a folder")
        if parent.is_dir():
            break
    if folder and path.exists() and not path.is_dir():
        raise NeurorayError(f"{flag} {path}: a file is in the way; give a folder (it is created if missing)")
    if not folder and path.is_dir():
        raise NeurorayError(f"{flag} {path}: is a folder; give a file path")


def check_count(value: int, flag: str, low: int, high: int) -> None:
    """A count flag (batch sizes, repeats) within what can run; a huge batch was a MemoryError traceback."""
    if not low <= value <= high:
        raise NeurorayError(f"{flag} {value}: must be between {low} and {high}")
