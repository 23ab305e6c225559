"""Output paths given on the command line, checked before any work: one line instead of a traceback later."""

from __future__ import annotations

from pathlib import Path

from neuroray.errors import NeurorayError


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
