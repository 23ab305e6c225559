"""`neuroray prepare <kind>` for the modalities that bring a ``datasets/<kind>/command.py``.

Each such module defines ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; the CLI and an
experiment's ``data.prepare: {kind: <kind>, args: [...]}`` both go through it, so the options are the same.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import pkgutil
from pathlib import Path
from types import ModuleType

from neuroray.errors import NeurorayError


def prepare_commands() -> dict[str, ModuleType]:
    import neuroray.datasets as package

    found: dict[str, ModuleType] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.ispkg and importlib.util.find_spec(f"{package.__name__}.{info.name}.command"):
            found[info.name] = importlib.import_module(f"{package.__name__}.{info.name}.command")
    return found


class _Args(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise NeurorayError(f"data.prepare.args: {message}")


def run_prepare(kind: str, args: list[str], out: Path) -> int:
    """Run ``neuroray prepare <kind> ARGS --out OUT`` in-process."""
    commands = prepare_commands()
    if kind not in commands:
        raise NeurorayError(f"data.prepare.kind: {kind!r}; allowed: {', '.join(sorted(commands))}")
    parser = _Args(prog=f"neuroray prepare {kind}")
    commands[kind].add_arguments(parser)
    return int(commands[kind].run(parser.parse_args([*args, "--out", str(out)])))
