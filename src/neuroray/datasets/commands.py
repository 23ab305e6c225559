"""`neuroray prepare <kind>` for the modalities that bring a ``datasets/<kind>/command.py``.

Each such module defines ``HELP``, ``add_arguments(parser)``, ``run(args) -> int`` (the CLI) and
``run_options(options, out, overwrite) -> int`` (an experiment's ``data.prepare: {kind: <kind>, …}``); both
take the kind's one options model (``<kind>/options.py``), so the flags and the keys are the same.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from types import ModuleType


def prepare_commands() -> dict[str, ModuleType]:
    """``{kind: command module}`` for every ``datasets/<kind>/command.py``."""
    import neuroray.datasets as package

    found: dict[str, ModuleType] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.ispkg and importlib.util.find_spec(f"{package.__name__}.{info.name}.command"):
            found[info.name] = importlib.import_module(f"{package.__name__}.{info.name}.command")
    return found
