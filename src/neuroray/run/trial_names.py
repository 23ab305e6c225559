"""A trial's name in logs, folders and dashboards; its own module so trial processes need not import W&B."""

from __future__ import annotations

from typing import Any


def trial_label(config: dict[str, Any], trial_id: str) -> str:
    """``<arm>-s<seed>[-f<fold>]-<trial id>``: a trial's name in logs and dashboards."""
    fold = f"-f{config['fold']}" if config.get("fold") is not None else ""
    return f"{config.get('arm', 'trial')}-s{config.get('seed', 0)}{fold}-{trial_id}"
