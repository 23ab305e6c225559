"""User-facing errors: one line that names the file/key and what is allowed.

The CLI prints ``error: <message>`` and exits 2 for any ``NeurorayError``; everything else is a bug
and keeps its traceback.
"""


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
