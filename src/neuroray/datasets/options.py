"""One definition per prepare option: a typed model per prepare kind, from which both the CLI flags of
`neuroray prepare <kind>` and the keys of an experiment's ``data.prepare`` are derived.

A field ``l_freq`` is the flag ``--l-freq`` and the key ``l_freq``; its default, type, limits and help
(``Field(description=…)``) are written once, on the model. ``sources`` names the fields of which exactly
one picks the input (``--neurosynth DIR`` | ``--nifti DIR`` | ``--synthetic N``).
"""

from __future__ import annotations

import argparse
import types
import typing
from typing import Any, ClassVar, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from neuroray.errors import NeurorayError

__all__ = ["PrepareOptions", "flag", "add_flags", "from_args", "from_argv", "explain"]


def flag(field: str) -> str:
    """The CLI flag of an options field: ``l_freq`` → ``--l-freq``."""
    return "--" + field.replace("_", "-")


def _inner(annotation: Any) -> tuple[Any, bool]:
    """(annotation without ``None``, whether ``None`` is allowed)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True  # noqa: UP007
    return annotation, False


def _is_list(annotation: Any) -> bool:
    """A list-only field: its flag takes ``A,B,…``. (``str | list[str]`` keeps the flag's text as given.)"""
    inner, _ = _inner(annotation)
    return typing.get_origin(inner) is list


class PrepareOptions(BaseModel):
    """Base of each kind's options: strict keys, and exactly one of ``sources`` set (when it has any)."""

    model_config = ConfigDict(extra="forbid")
    sources: ClassVar[tuple[str, ...]] = ()
    metavars: ClassVar[dict[str, str]] = {}

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.sources:
            given = [s for s in self.sources if getattr(self, s) not in (None, False)]
            if len(given) != 1:
                raise ValueError(f"give exactly one of {', '.join(self.sources)}"
                                 + (f" (got {', '.join(given)})" if given else ""))
        return self


OptionsT = TypeVar("OptionsT", bound=PrepareOptions)


def add_flags(parser: argparse.ArgumentParser, model: type[PrepareOptions], skip: tuple[str, ...] = ()) -> None:
    """Add one flag per field of ``model`` (sources as a required mutually exclusive group)."""
    group = parser.add_mutually_exclusive_group(required=True) if model.sources else None
    for name, info in model.model_fields.items():
        if name in skip or name == "kind":
            continue
        target: Any = group if group is not None and name in model.sources else parser
        ann, _ = _inner(info.annotation)
        help_ = info.description or ""
        default = None if name in model.sources else info.get_default(call_default_factory=True)
        if ann is bool:
            target.add_argument(flag(name), action="store_true", help=help_)
            continue
        kw: dict[str, Any] = {"default": default, "help": help_, "dest": name}
        if name in model.metavars:
            kw["metavar"] = model.metavars[name]
        if typing.get_origin(ann) is Literal:
            kw["choices"] = list(typing.get_args(ann))
        elif _is_list(info.annotation):
            kw["metavar"] = kw.get("metavar", "A,B,…")
        elif ann in (int, float):
            kw["type"] = ann
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            kw.setdefault("metavar", "N" if ann is int else str(extra.get("unit", "X")).upper())
        else:
            kw.setdefault("metavar", "TEXT")
        if default not in (None, "", []) and "(default" not in help_:
            kw["help"] = f"{help_} (default {','.join(map(str, default)) if isinstance(default, list) else default})"
        target.add_argument(flag(name), **kw)


_LIMITS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="), "less_than": ("lt", "<"),
           "less_than_equal": ("le", "<=")}


def explain(e: ValidationError, model: type[PrepareOptions], cli: bool, where: str = "") -> str:
    """A pydantic error on options as one line naming the flag (CLI) or key (experiment file)."""
    err = e.errors()[0]
    loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
    if not loc:
        return f"{where or 'options'}: {err['msg'].removeprefix('Value error, ')}"
    name = flag(loc[0]) if cli else f"{where}.{'.'.join(loc)}"
    info = model.model_fields.get(loc[0])
    extra = info.json_schema_extra if info is not None and isinstance(info.json_schema_extra, dict) else {}
    unit = f" {extra['unit']}" if "unit" in extra else ""
    if err["type"] in _LIMITS:
        key, op = _LIMITS[err["type"]]
        limit = err["ctx"][key]
        return f"{name} {err['input']!r}: must be {op} {limit:g}{unit}"
    return f"{name} {err['input']!r}: {err['msg'].removeprefix('Value error, ')}"


def from_args(model: type[OptionsT], ns: argparse.Namespace, where: str = "") -> OptionsT:
    """The options a parsed command line gives (comma-separated lists split); one-line error if invalid."""
    values: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name == "kind" or not hasattr(ns, name):
            continue
        v = getattr(ns, name)
        if isinstance(v, str) and _is_list(info.annotation):
            v = [s.strip() for s in v.split(",") if s.strip()]
        values[name] = v
    try:
        return model(**values)
    except ValidationError as e:
        raise NeurorayError(explain(e, model, cli=True, where=where)) from None


class _Argv(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        """Raise NeurorayError with the parser's message instead of printing usage and exiting."""
        raise NeurorayError(f"{self.prog}: {message}")


def from_argv(model: type[PrepareOptions], argv: list[str], where: str) -> dict[str, Any]:
    """An old-style ``args: [--flag, value, …]`` list as the model's keys (only those given)."""
    parser = _Argv(prog=where, add_help=False)
    add_flags(parser, model)
    for action in parser._actions:  # only what the list names; defaults stay the model's own
        action.default = argparse.SUPPRESS
        action.required = False
    for group in parser._mutually_exclusive_groups:
        group.required = False
    ns = parser.parse_args(argv)
    out = vars(ns)
    for name, info in model.model_fields.items():
        if isinstance(out.get(name), str) and _is_list(info.annotation):
            out[name] = [s.strip() for s in out[name].split(",") if s.strip()]
    return out
