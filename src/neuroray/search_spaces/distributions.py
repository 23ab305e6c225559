"""Search-space distributions written as strings in the experiment file, e.g. ``loguniform(1e-4, 3e-3)``."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

import optuna

from neuroray.errors import ConfigError

KINDS = ("uniform", "loguniform", "int", "logint", "choice")
ALLOWED = "uniform(low, high), loguniform(low, high), int(low, high[, step]), logint(low, high), choice(a, b, ...)"


@dataclass(frozen=True)
class Distribution:
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    step: int | None = None
    choices: tuple[Any, ...] = ()

    def to_optuna(self) -> optuna.distributions.BaseDistribution:
        if self.kind == "choice":
            return optuna.distributions.CategoricalDistribution(list(self.choices))
        if self.kind in ("int", "logint"):
            assert self.low is not None and self.high is not None  # established by parse()
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.kind == "logint",
                                                        step=self.step or 1)
        assert self.low is not None and self.high is not None
        return optuna.distributions.FloatDistribution(float(self.low), float(self.high),
                                                      log=self.kind == "loguniform")


def parse(text: Any, where: str) -> Distribution:
    """Parse one distribution; errors name the key (``where``) and the allowed forms."""
    if not isinstance(text, str) or "(" not in text or not text.rstrip().endswith(")"):
        raise ConfigError(f"{where}: {text!r} is not a distribution; allowed: {ALLOWED}")
    kind, _, rest = text.strip().partition("(")
    kind = kind.strip()
    if kind not in KINDS:
        raise ConfigError(f"{where}: unknown distribution {kind!r}; allowed: {ALLOWED}")
    args: tuple[Any, ...]
    try:
        args = tuple(ast.literal_eval(f"({rest[:-1]},)")) if rest[:-1].strip() else tuple()
    except (ValueError, SyntaxError):
        raise ConfigError(f"{where}: cannot read the arguments of {text!r}; allowed: {ALLOWED}") from None
    if kind == "choice":
        choices = tuple(args[0]) if len(args) == 1 and isinstance(args[0], list | tuple) else tuple(args)
        if not choices:
            raise ConfigError(f"{where}: choice() needs at least one value")
        return Distribution("choice", choices=choices)
    if len(args) not in (2, 3) or not all(isinstance(a, int | float) and not isinstance(a, bool) for a in args):
        raise ConfigError(f"{where}: {kind}() takes two numbers (low, high); got {text!r}")
    low, high = args[0], args[1]
    step = int(args[2]) if len(args) == 3 else None
    if step is not None and kind != "int":
        raise ConfigError(f"{where}: only int(low, high, step) takes a step; got {text!r}")
    if low > high:
        raise ConfigError(f"{where}: low {low} > high {high} in {text!r}; the lower bound comes first")
    if kind in ("loguniform", "logint") and low <= 0:
        raise ConfigError(f"{where}: {kind} bounds must be > 0; got low={low} in {text!r}")
    if kind in ("int", "logint") and not (float(low).is_integer() and float(high).is_integer()):
        raise ConfigError(f"{where}: {kind}() bounds must be integers; got {text!r}")
    return Distribution(kind, low=low, high=high, step=step)
