"""cluster.yaml against Ray's own autoscaler code: schema + defaults, and the scheduling decisions it leads to.

No AWS calls: `prepare_config` merges Ray's AWS defaults.yaml and `validate_config` checks ray-schema.json
(the installed Ray's). The scheduling tests feed the node types (with the CPU/GPU/memory that Ray's AWS
provider would detect for each instance type) to the v1 autoscaler's `get_nodes_for`.
"""

from __future__ import annotations

import copy
import time
from functools import partial
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.loader import load_function_or_class  # what the autoscaler uses for the scorer
from ray.autoscaler._private.node_provider_availability_tracker import (
    NodeAvailabilityRecord,
    NodeAvailabilitySummary,
    UnavailableNodeInformation,
)
from ray.autoscaler._private.resource_demand_scheduler import _default_utilization_scorer, get_nodes_for
from ray.autoscaler._private.util import prepare_config, validate_config

from neuroray.cluster.autoscaling import spot_first_scorer

REPO = Path(__file__).resolve().parents[2]
# What Ray's AWS provider detects (describe-instance-types): vCPUs, GPUs, memory in GiB
INSTANCES = {"m6i.2xlarge": (8, 0, 32), "c6i.4xlarge": (16, 0, 32), "g6.xlarge": (4, 1, 16),
             "g6.12xlarge": (48, 4, 192)}


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_valid_for_rays_autoscaler(config: dict[str, Any]) -> None:
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)  # raises jsonschema.ValidationError / ValueError on a bad config
    types = prepared["available_node_types"]
    assert prepared["head_node_type"] == "head" and types["head"]["max_workers"] == 0
    assert sum(t["min_workers"] for t in types.values()) <= prepared["max_workers"]
    assert prepared["idle_timeout_minutes"] > 0 and prepared["provider"]["type"] == "aws"
    # every node runs the common setup (merged by prepare_config) and installs neuroray from the upload
    for key in ("head_setup_commands", "worker_setup_commands"):
        cmds = "\n".join(prepared[key])
        assert "-e ~/neuroray" in cmds and "-c ~/neuroray/constraints.txt" in cmds
        assert "download.pytorch.org/whl/cpu" in cmds and "nvidia-smi -L" in cmds  # CPU torch unless a GPU
    assert prepared["file_mounts"]["~/neuroray"] == "."
    assert {".git", ".venv", "data", "runs", ".env"} <= set(prepared["rsync_exclude"])
    # the same validation rejects a misspelt key: the check is real
    bad = copy.deepcopy(prepared)
    bad["available_node_types"]["gpu_1x_spot"]["max_worker"] = 8
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        validate_config(bad)


def test_node_types_spot_with_on_demand_twins_and_trial_driver(config: dict[str, Any]) -> None:
    types = config["available_node_types"]
    head = types["head"]
    assert INSTANCES[head["node_config"]["InstanceType"]][1] == 0, "the head is a CPU node"
    gpu_types = {INSTANCES[t["node_config"]["InstanceType"]][1] for t in types.values()}
    assert {1, 4} <= gpu_types  # a single-GPU and a multi-GPU worker type
    for name, t in types.items():
        spot = t["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"
        assert spot == ("spot" in name), name
        assert ("trial_driver" in t["resources"]) == (not spot), f"{name}: trial_driver only on on-demand nodes"
        if spot and INSTANCES[t["node_config"]["InstanceType"]][1]:
            twin = types[name.replace("spot", "ondemand")]
            assert twin["node_config"]["InstanceType"] == t["node_config"]["InstanceType"]
            assert t["priority"] > twin["priority"]
        assert t["node_config"]["IamInstanceProfile"]["Name"] in ("neuroray-head", "neuroray-worker")
    # the head's autoscaler loads neuroray's scorer by its dotted path, which must import
    start = "\n".join(config["head_start_ray_commands"])
    path = start.split("RAY_AUTOSCALER_UTILIZATION_SCORER=")[1].split(";")[0].strip()
    assert load_function_or_class(path) is spot_first_scorer
    assert "RAY_AUTH_MODE=token" in start and "RAY_AUTH_MODE=token" in "\n".join(config["worker_start_ray_commands"])


def _node_types(config: dict[str, Any]) -> dict[str, Any]:
    """Node types with the resources Ray's AWS provider fills in (detected + the config's custom ones)."""
    out = {}
    for name, t in config["available_node_types"].items():
        cpus, gpus, mem = INSTANCES[t["node_config"]["InstanceType"]]
        detected = {"CPU": cpus, "memory": int(mem * 0.7 * 2**30), **({"GPU": gpus} if gpus else {})}
        out[name] = {**t, "resources": {**detected, **t["resources"]}}
    return out


def _launch(config: dict[str, Any], demands: list[dict[str, float]], unavailable: tuple[str, ...] = (),
            scorer: Any = spot_first_scorer) -> dict[str, int]:
    now = time.time()
    summary = NodeAvailabilitySummary({
        name: NodeAvailabilityRecord(name, False, now, UnavailableNodeInformation(
            "InsufficientInstanceCapacity", "no spot capacity")) for name in unavailable})
    to_add, infeasible = get_nodes_for(_node_types(config), {"head": 1}, "head", 16, demands,
                                       partial(scorer, node_availability_summary=summary))
    assert not infeasible, infeasible
    return dict(to_add)


def test_pending_trials_drive_the_autoscaler(config: dict[str, Any]) -> None:
    gpu_trial = {"CPU": 1, "GPU": 1}
    assert _launch(config, [gpu_trial]) == {"gpu_1x_spot": 1}
    # spot has no capacity (its last launch failed): the on-demand twin is launched instead ...
    assert _launch(config, [gpu_trial], unavailable=("gpu_1x_spot",)) == {"gpu_1x_ondemand": 1}
    # ... which Ray's default scorer would not do: it keeps choosing the failing spot type
    assert _launch(config, [gpu_trial], unavailable=("gpu_1x_spot",),
                   scorer=_default_utilization_scorer) == {"gpu_1x_spot": 1}
    # gpus_per_worker: 0.25 → four pending trials fit one single-GPU node
    assert _launch(config, [{"CPU": 1, "GPU": 0.25}] * 4) == {"gpu_1x_spot": 1}
    # a 4-worker DDP phase (workers: 4, cpus_per_worker: 8, gpus_per_worker: 1) needs the 4-GPU type
    assert _launch(config, [{"CPU": 8, "GPU": 1}] * 4) == {"gpu_4x_spot": 1}
    # CPU-only trials never start a GPU node
    assert _launch(config, [{"CPU": 1}] * 8) == {"cpu_spot": 1}
    # trial drivers (driver_resources: {trial_driver: 1}) beyond the head go to on-demand nodes only
    assert set(_launch(config, [{"CPU": 0.01, "trial_driver": 1}] * 150)) <= {"gpu_1x_ondemand", "gpu_4x_ondemand"}
