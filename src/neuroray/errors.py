"""User-facing errors: one line that names the file/key and what is allowed.

The CLI prints ``error: <message>`` and exits 2 for any ``NeurorayError``; everything else is a bug
and keeps its traceback.
"""


def first_line(e: BaseException, limit: int = 300) -> str:
    """The first line of ``e``'s message (its type's name when it has none), at most ``limit`` characters:
    for a library's multi-line message quoted inside one of ours."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:limit]


def one_line(e: BaseException) -> str:
    """``Type: message`` on one line: library messages (Arrow, nibabel) can span several, and an error
    line must stay one line."""
    return f"{type(e).__name__}: {' '.join(str(e).split())}"


class NeurorayError(Exception):
    """Bad input from the user (file, key, value). The message must say what is allowed."""


class ConfigError(NeurorayError):
    """An experiment file that does not validate."""


class ShardSetError(NeurorayError):
    """A shard set that is missing, corrupt or does not match the experiment."""
