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
    """One search distribution: its kind and bounds/step, or its choices."""

    kind: str
    low: float | int | None = None
    high: float | int | None = None
    step: int | None = None
    choices: tuple[Any, ...] = ()

    def to_optuna(self) -> optuna.distributions.BaseDistribution:
        """The same distribution as Optuna's."""
        if self.kind == "choice":
            return optuna.distributions.CategoricalDistribution(list(self.choices))
        if self.kind in ("int", "logint"):
            assert self.low is not None and self.high is not None  # established by parse()
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.kind == "logint",
                                                        step=self.step or 1)
        assert self.low is not None and self.high is not None
        return optuna.distributions.FloatDistribution(float(self.low), float(self.high),
                                                      log=self.kind == "loguniform")


def _bare(token: str) -> Any:
    token = token.strip()
    try:
        return ast.literal_eval(token)
    except (ValueError, SyntaxError):
        return token


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
        if kind != "choice":
            raise ConfigError(f"{where}: cannot read the arguments of {text!r}; allowed: {ALLOWED}") from None
        args = tuple(_bare(a) for a in rest[:-1].split(","))  # choice(conv, eegnex): bare words are strings
    if kind == "choice":
        choices = tuple(args[0]) if len(args) == 1 and isinstance(args[0], list | tuple) else tuple(args)
        if not choices:
            raise ConfigError(f"{where}: choice() needs at least one value")
        return Distribution("choice", choices=choices)
    if len(args) not in (2, 3) or not all(isinstance(a, int | float) and not isinstance(a, bool) for a in args):
        raise ConfigError(f"{where}: {kind}() takes two numbers (low, high); got {text!r}")
    low, high = args[0], args[1]
    if len(args) == 3 and kind != "int":
        raise ConfigError(f"{where}: only int(low, high, step) takes a step; got {text!r}")
    # Checked here, not left to optuna: a step of 0 or below is an optuna ValueError, 2.5 would be truncated.
    if len(args) == 3 and not (float(args[2]).is_integer() and args[2] >= 1):
        raise ConfigError(f"{where}: the step of int(low, high, step) must be a whole number >= 1; "
                          f"got {args[2]!r} in {text!r}")
    step = int(args[2]) if len(args) == 3 else None
    if low > high:
        raise ConfigError(f"{where}: low {low} > high {high} in {text!r}; the lower bound comes first")
    if kind in ("loguniform", "logint") and low <= 0:
        raise ConfigError(f"{where}: {kind} bounds must be > 0; got low={low} in {text!r}")
    if kind in ("int", "logint") and not (float(low).is_integer() and float(high).is_integer()):
        raise ConfigError(f"{where}: {kind}() bounds must be integers; got {text!r}")
    return Distribution(kind, low=low, high=high, step=step)


@dataclass(frozen=True)
class Param:
    """One search-space entry: a distribution, sampled only when every ``when`` key took an allowed value."""

    dist: Distribution
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def active(self, sampled: dict[str, Any]) -> bool:
        """Whether this parameter is sampled, given the values ``sampled`` so far (its ``when`` conditions)."""
        return all(k in sampled and sampled[k] in allowed for k, allowed in self.when)


def parse_space(space: dict[str, Any], where: str = "search.space") -> dict[str, Param]:
    """Parse ``search.space``; conditional entries are ``{dist: "...", when: {earlier_key: value | [values]}}``."""
    out: dict[str, Param] = {}
    for key, value in space.items():
        at = f"{where}.{key}"
        if not isinstance(value, dict):
            out[key] = Param(parse(value, at))
            continue
        extra = set(value) - {"dist", "when"}
        if extra or "dist" not in value:
            raise ConfigError(f"{at}: a conditional parameter is {{dist: \"{KINDS[0]}(...)\", when: {{key: value}}}}; "
                              f"got keys {sorted(value)}")
        when = value.get("when") or {}
        if not isinstance(when, dict) or not when:
            raise ConfigError(f"{at}.when: name at least one earlier parameter and its value(s), e.g. "
                              "{encoder: conv}")
        conds: list[tuple[str, tuple[Any, ...]]] = []
        for other, allowed in when.items():
            if other not in out:
                raise ConfigError(f"{at}.when.{other}: not an earlier key of {where}; earlier keys: "
                                  f"{', '.join(out) or 'none'}")
            values = tuple(allowed) if isinstance(allowed, list | tuple) else (allowed,)
            dist = out[other].dist
            if dist.kind == "choice" and not set(values) <= set(dist.choices):
                raise ConfigError(f"{at}.when.{other}: {list(values)} is not among its choices {list(dist.choices)}")
            conds.append((other, values))
        out[key] = Param(parse(value["dist"], f"{at}.dist"), tuple(conds))
    return out


class DefineByRun:
    """Optuna define-by-run sampling of a (possibly conditional) space; a class so searchers can be pickled."""

    def __init__(self, space: dict[str, Param]) -> None:
        self.space = space

    def __call__(self, trial: optuna.Trial) -> None:
        sampled: dict[str, Any] = {}
        for key, param in self.space.items():
            if not param.active(sampled):
                continue
            d = param.dist
            if d.kind == "choice":
                sampled[key] = trial.suggest_categorical(key, list(d.choices))
            elif d.kind in ("int", "logint"):
                sampled[key] = trial.suggest_int(key, int(d.low or 0), int(d.high or 0), step=d.step or 1,
                                                 log=d.kind == "logint")
            else:
                sampled[key] = trial.suggest_float(key, float(d.low or 0), float(d.high or 0),
                                                   log=d.kind == "loguniform")
        return None
