"""`neuroray prepare <kind>` for the modalities that bring a ``datasets/<kind>/command.py``.

Each such module defines ``OPTIONS`` (the kind's one options model, ``<kind>/options.py``), ``HELP``, an
optional ``EPILOG`` and ``run_options(options, out, overwrite) -> int``. The CLI's flags (``add_arguments``)
and an experiment's ``data.prepare: {kind: <kind>, …}`` keys both come from ``OPTIONS``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import pkgutil
from pathlib import Path
from types import ModuleType

from neuroray.datasets.locations import is_uri
from neuroray.datasets.options import add_flags, from_args
from neuroray.datasets.remote_shards import prepare_to_uri
from neuroray.errors import NeurorayError


def prepare_commands() -> dict[str, ModuleType]:
    """``{kind: command module}`` for every ``datasets/<kind>/command.py``."""
    import neuroray.datasets as package

    found: dict[str, ModuleType] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.ispkg and importlib.util.find_spec(f"{package.__name__}.{info.name}.command"):
            found[info.name] = importlib.import_module(f"{package.__name__}.{info.name}.command")
    return found


def add_arguments(module: ModuleType, p: argparse.ArgumentParser) -> None:
    """The flags of `neuroray prepare <kind>`: the options model's, plus --out and --overwrite."""
    if getattr(module, "EPILOG", None):
        p.formatter_class = argparse.RawDescriptionHelpFormatter
        p.epilog = module.EPILOG
    add_flags(p, module.OPTIONS)
    p.add_argument("--out", required=True, help="output shard set: a folder, or s3://BUCKET/PREFIX (any pyarrow "
                   "filesystem URI; parts first, manifest.json last)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (and synthetic inputs)")
    p.add_argument("--resume", action="store_true", help="finish an interrupted upload to --out URI: parts "
                   "already there with the same bytes are kept")


def run(module: ModuleType, args: argparse.Namespace) -> int:
    """`neuroray prepare <kind>` from parsed flags; ``--out URI``: prepared locally, then published there."""
    opts = from_args(module.OPTIONS, args)
    if is_uri(args.out):
        return prepare_to_uri(args.out, lambda local: module.run_options(opts, local, True),
                              overwrite=args.overwrite, resume=args.resume)
    if args.resume:
        raise NeurorayError(f"--resume: {args.out} is a folder; a local prepare of this kind is written whole or "
                            "not at all, so there is nothing to resume. Run it again")
    return int(module.run_options(opts, Path(args.out), args.overwrite))
