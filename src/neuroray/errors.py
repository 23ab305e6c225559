"""User-facing errors: one line that names the file/key and what is allowed.

The CLI prints ``error: <message>`` and exits 2 for any ``NeurorayError``; everything else is a bug
and keeps its traceback.
"""


class NeurorayError(Exception):
    """Bad input from the user (file, key, value). The message must say what is allowed."""


class ConfigError(NeurorayError):
    """An experiment file that does not validate."""


class ShardSetError(NeurorayError):
    """A shard set that is missing, corrupt or does not match the experiment."""
