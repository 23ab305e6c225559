"""Best by the experiment's mode, written once: every "which is best" in reports, export and the run."""

from __future__ import annotations

from typing import Any

import pandas as pd

from neuroray.errors import NeurorayError

__all__ = ["MODES", "best_index"]

MODES = ("min", "max")


def best_index(values: pd.Series, mode: str) -> Any:
    """The index label of the best value of ``values`` (NaN skipped) by ``mode`` ("min" or "max")."""
    if mode not in MODES:
        raise NeurorayError(f"mode {mode!r}: must be one of {', '.join(MODES)}")
    return values.idxmin() if mode == "min" else values.idxmax()
