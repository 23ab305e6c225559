"""Run by test_node_loss.py in its own process: a head + 2 worker nodes (``ray.cluster_utils.Cluster``), a
2-trial experiment, and the worker node hosting one trial removed mid-trial. Prints one JSON summary line."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import ray
from ray.cluster_utils import Cluster

from neuroray.run import runner
from neuroray.search_spaces.experiment import load


def _progress(run_dir: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for p in run_dir.glob("*-s*-*/progress.csv"):
        with contextlib.suppress(pd.errors.EmptyDataError, OSError):
            out[p.parent.name] = pd.read_csv(p)
    return out


def main(experiment: str, storage: str) -> None:
    # The head keeps 1 CPU for Ray Data; each worker node fits one 1-CPU trial.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    workers = [cluster.add_node(num_cpus=1, resources={"trial_slot": 1}) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    loaded = load(experiment)
    run_dir = Path(storage) / loaded.name
    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            outcome["summary"] = runner.run(loaded, storage=storage, address=cluster.address, verbose=0)
        except BaseException as e:  # reported in the JSON line, not lost in a thread
            outcome["error"] = repr(e)

    thread = threading.Thread(target=fit, daemon=True)
    thread.start()
    victim, victim_trial, epochs_at_loss = None, None, 0
    deadline = time.time() + 240
    while victim is None and time.time() < deadline and thread.is_alive():
        for trial, df in _progress(run_dir).items():
            if len(df) >= 2:  # two epochs done and checkpointed: lose its node now
                victim = next((w for w in workers if w.node_id == df["node_id"].iloc[-1]), None)
                if victim is not None:
                    victim_trial, epochs_at_loss = trial, len(df)
                    break
        time.sleep(0.2)
    nodes_used = {df["node_id"].iloc[0] for df in _progress(run_dir).values()}
    if victim is not None:
        cluster.remove_node(victim, allow_graceful=False)
    thread.join(timeout=300)
    progress = {t: [[int(r.training_iteration), int(r.phase_epoch), str(r.node_id)] for r in df.itertuples()]
                for t, df in _progress(run_dir).items()}
    summary = outcome.get("summary")
    print(json.dumps({
        "error": outcome.get("error"), "victim_trial": victim_trial, "epochs_at_loss": epochs_at_loss,
        "trial_nodes": len(nodes_used), "progress": progress,
        "results": summary.trials[["trial_id", "status", "epochs"]].to_dict("records") if summary else None,
    }))
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
