"""Run by test_s3_shard_sets.py in its own process: a head + 1 worker node (``ray.cluster_utils.Cluster``) that
reach moto's S3 server through the AWS variables; one trial, placed on the worker node (``trial_slot``), reads
its shard set from the bucket and writes to ``--storage s3://…``; then the worker node is removed. Prints one
JSON line: the head's and the trial's node ids, and the run's outcome."""

from __future__ import annotations

import json
import os
import sys
import tempfile

import ray
from ray.cluster_utils import Cluster

from neuroray.run import runner
from neuroray.search_spaces.experiment import load


def main(experiment: str, storage: str) -> None:
    os.chdir(tempfile.mkdtemp(prefix="nr-driver-"))  # nothing of the test's folders is this process's cwd
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1, resources={"trial_slot": 1})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    head = ray.get_runtime_context().get_node_id()
    out: dict[str, object] = {"head": head, "worker": worker.node_id, "error": None}
    try:
        summary = runner.run(load(experiment), storage=storage, address=cluster.address, verbose=0)
        out["results"] = summary.trials[["trial_id", "status"]].to_dict("records")
    except BaseException as e:  # reported in the JSON line
        out["error"] = repr(e)
    cluster.remove_node(worker, allow_graceful=False)
    out["cwd"] = os.getcwd()
    print(json.dumps(out))
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
