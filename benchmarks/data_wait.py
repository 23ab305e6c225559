"""Training data wait (issue 9 item 4): the fraction of step time a Lightning fit spends waiting for its next
batch under Ray Train (TorchTrainer, 1 worker, ``get_dataset_shard`` → ``run.train.Batches``, i.e.
neuroray's own ``run_phases`` loop) vs the same module fed by an in-memory tensor DataLoader.

A callback stamps ``on_train_batch_start`` against the previous ``on_train_batch_end`` (the first batch of an
epoch against ``on_train_epoch_start``): that gap is the wait for data; batch start → end is compute.
wait fraction = wait / (wait + compute) per epoch; epoch 0 is the warm-up and is left out.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import ray
import torch

from benchmarks.common import row, summary, tensor_loader
from neuroray.datasets.shards import ShardSet, open_shard_set
from neuroray.datasets.synthetic import write_synthetic_eeg
from neuroray.run import ingest, session
from neuroray.trainables import base as registry

GOAL = 0.05
BATCH = 64
HPARAMS = {"encoder": "shallow"}


class WaitTimer(L.Callback):
    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []
        self._mark = self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.epochs.append({"wait_s": 0.0, "compute_s": 0.0, "batches": 0, "first_wait_s": 0.0, "max_wait_s": 0.0})
        self._mark = time.perf_counter()

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._start = time.perf_counter()
        e, wait = self.epochs[-1], self._start - self._mark
        e["wait_s"] += wait
        e["max_wait_s"] = max(e["max_wait_s"], wait)
        if batch_idx == 0:
            e["first_wait_s"] = wait

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._mark = time.perf_counter()
        e = self.epochs[-1]
        e["compute_s"] += self._mark - self._start
        e["batches"] += 1


def med_of(epochs: list[dict[str, float]], key: str) -> float:
    return summary([e[key] for e in epochs[1:]])["median"]


def steady_fractions(epochs: list[dict[str, float]]) -> list[float]:
    return [(e["wait_s"] - e["first_wait_s"]) / (e["wait_s"] - e["first_wait_s"] + e["compute_s"]) for e in epochs[1:]]


def fractions(epochs: list[dict[str, float]]) -> list[float]:
    return [e["wait_s"] / (e["wait_s"] + e["compute_s"]) for e in epochs[1:]]


def loop_config(shard_set: ShardSet, epochs: int) -> dict[str, Any]:
    """What ``tune.loop_config`` builds for one eeg_regressor phase."""
    return {"phases": [{"name": "fit", "trainable": "eeg_regressor", "target": "y", "epochs": epochs,
                        "batch_size": BATCH, "hparams": HPARAMS}],
            "spec": {"modality": shard_set.manifest["modality"], "spec": shard_set.manifest["spec"]},
            "seed": 0, "metric": "val/nrmse", "mode": "min", "tensorboard_dir": None, "trial_name": "bench",
            "threads": 1, "target_stats": shard_set.manifest.get("target_stats", {})}


def train_worker_loop(cfg: dict[str, Any]) -> None:
    """``torchtrainer_worker_loop`` plus the timer: neuroray's run_phases on this worker's dataset shards."""
    import ray.train
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment, prepare_trainer

    from neuroray.run.session import configure_data_context
    from neuroray.run.train import run_phases

    configure_data_context()
    timer = WaitTimer()

    def prepare(trainer: L.Trainer) -> L.Trainer:
        trainer.callbacks.append(timer)  # type: ignore[attr-defined]
        return prepare_trainer(trainer)

    def report(metrics: dict[str, Any], ckpt_dir: str | None) -> None:
        ckpt = ray.train.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None
        ray.train.report(metrics, checkpoint=ckpt)

    run_phases(cfg, get_shard=ray.train.get_dataset_shard, report=report, prepare=prepare,
               lightning_kwargs={"accelerator": "auto", "devices": "auto", "strategy": RayDDPStrategy(),
                                 "plugins": [RayLightningEnvironment()]})
    Path(cfg["out"]).write_text(json.dumps(timer.epochs))


def ray_train_epochs(shard_set: ShardSet, epochs: int, storage: Path, device: str) -> list[dict[str, float]]:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    storage.mkdir(parents=True, exist_ok=True)
    cfg = {**loop_config(shard_set, epochs), "out": str(storage / "epochs.json")}
    TorchTrainer(
        train_worker_loop, train_loop_config=cfg,
        scaling_config=ScalingConfig(num_workers=1, use_gpu=device == "cuda",
                                     resources_per_worker={"CPU": 1, **({"GPU": 1} if device == "cuda" else {})}),
        run_config=RunConfig(name=f"bench-wait-{time.time_ns()}", storage_path=str(storage)),
        datasets=ingest.load_datasets(shard_set),
    ).fit()
    return list(json.loads((storage / "epochs.json").read_text()))


def in_memory_epochs(shard_set: ShardSet, epochs: int, device: str) -> list[dict[str, float]]:
    """The same module and Trainer settings, fed from tensors already in memory."""
    torch.set_num_threads(1)  # as the Train worker (cpus_per_worker: 1)

    L.seed_everything(0, verbose=False)
    module = registry.build("eeg_regressor", shard_set.spec, HPARAMS, target="y")
    stats = shard_set.manifest.get("target_stats", {}).get("y")
    if stats:
        module.set_target_stats(stats["mean"], stats["std"])
    timer = WaitTimer()
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, devices=1, callbacks=[timer],
                        accelerator="gpu" if device == "cuda" else "cpu")
    trainer.fit(module, tensor_loader(shard_set, "train", BATCH, True), tensor_loader(shard_set, "val", BATCH, False))
    return timer.epochs


def run(quick: bool = False, repeats: int = 3, device: str = "cpu") -> dict[str, Any]:
    """``device="cuda"`` is the GPU entry (gpu_training.py): the same fit on one GPU on both sides."""
    epochs = repeats + 1
    started_here = not ray.is_initialized()
    with tempfile.TemporaryDirectory(prefix="neuroray-bench-wait-") as tmp:
        work = Path(tmp)
        subjects, per_subject = (4, 20) if quick else (20, 100)
        write_synthetic_eeg(work / "eeg", n_subjects=subjects, windows_per_subject=per_subject, n_chans=129,
                            n_times=200)
        shard_set = open_shard_set(work / "eeg", verify="none")
        plain = in_memory_epochs(shard_set, epochs, device)
        session.start()
        try:
            ray_epochs = ray_train_epochs(shard_set, epochs, work / "train", device)
        finally:
            if started_here:
                session.stop()
    f_ray, f_plain = fractions(ray_epochs), fractions(plain)
    med = summary(f_ray)["median"]
    step_ray = [(e["wait_s"] + e["compute_s"]) / e["batches"] for e in ray_epochs[1:]]
    step_plain = [(e["wait_s"] + e["compute_s"]) / e["batches"] for e in plain[1:]]
    return {
        "name": "data_wait",
        "title": "Training: share of step time waiting for data (issue 9 item 4)",
        "what": (f"eeg_regressor (shallow) on {shard_set.rows('train')} EEG windows 129×200, batch {BATCH}, "
                 f"{repeats} epochs after a warm-up epoch; 1 CPU thread, device {device}. Ray Train: TorchTrainer "
                 "with 1 worker running neuroray's run_phases (get_dataset_shard → Batches with local shuffle, "
                 "materialized split). "
                 "Baseline: the same module under plain Lightning from an in-memory TensorDataset."),
        "rows": [
            row("Ray Train worker: wait / (wait + compute)", f_ray, "", f_plain, None, f"≤ {GOAL:.0%}", med <= GOAL),
            row("Ray Train worker: the same without each epoch's first batch (start-up left out)",
                steady_fractions(ray_epochs), "", steady_fractions(plain)),
            row("Ray Train worker: seconds per step (wait + compute)", step_ray, "s", step_plain,
                summary(step_ray)["median"] / summary(step_plain)["median"]),
        ],
        "findings": [
            f"Per epoch (median over the timed epochs), Ray Train: wait {med_of(ray_epochs, 'wait_s'):.3f} s, of "
            f"which the first batch {med_of(ray_epochs, 'first_wait_s'):.3f} s, longest single wait "
            f"{med_of(ray_epochs, 'max_wait_s'):.3f} s; in memory: wait {med_of(plain, 'wait_s'):.3f} s. Every epoch "
            "of a Train dataset shard is a new streaming-split execution (the split coordinator restarts, the "
            "local-shuffle buffer refills); `Batches` (run/train.py) opens the next epoch and fetches its first "
            "batch in a background thread while validation runs, so that start-up no longer stalls the first "
            "training step (before: first batch ~0.11 s, 9.3 % wait). Here an epoch is only "
            f"{med_of(ray_epochs, 'compute_s'):.1f} s of compute ({shard_set.rows('train')} windows, 1-thread "
            "shallow encoder).",
        ],
        "epochs_ray": ray_epochs,
        "epochs_in_memory": plain,
        "quick": quick,
    }
