"""Spot first, on-demand when spot has no capacity: a node-type scorer for Ray's autoscaler.

For pending resource demands (e.g. trials waiting for ``GPU: 1``), Ray's autoscaler launches the node
type with the best utilization score. Its default scorer ignores failed launches, so a spot type that
has no capacity would be chosen again and again. This scorer drops node types whose last launch failed
(Ray's availability tracker remembers that for ``AUTOSCALER_NODE_AVAILABILITY_MAX_STALENESS_S``, 30 min),
so the on-demand twin of a spot type takes over, and breaks ties in favour of spot types (``spot`` in
the node-type name). The head of ``cluster.yaml`` loads it with
``RAY_AUTOSCALER_UTILIZATION_SCORER=neuroray.cluster.autoscaling.spot_first_scorer``.
Imports nothing heavy: it runs inside the autoscaler's monitor process.
"""

from __future__ import annotations

from typing import Any


def spot_first_scorer(node_resources: dict[str, Any], resources: list[dict[str, Any]], node_type: str,
                      *, node_availability_summary: Any) -> tuple[Any, ...] | None:
    """Ray's utilization score for ``node_type`` with a spot flag appended (ties favour spot); None when Ray's scorer
    gives none or the type's last launch failed."""
    from neuroray.run.ray_compat import private  # light: it imports each Ray internal on first use

    _resource_based_utilization_scorer = private("utilization_scorer")
    record = node_availability_summary.node_availabilities.get(node_type) if node_availability_summary else None
    if record is not None and not record.is_available:
        return None  # its last launch failed (e.g. InsufficientInstanceCapacity for spot): use another type
    score = _resource_based_utilization_scorer(node_resources, resources,
                                               node_availability_summary=node_availability_summary)
    if score is None:
        return None
    return (*score, "spot" in node_type.lower())
