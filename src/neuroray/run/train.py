"""ONE train loop, two engines.

``run_phases`` fits an experiment's phases with Lightning on batches streamed from Ray Data. It is
called either inside the (reused) Tune trial actor for single-worker trials (the cheaper engine per tiny
trial: benchmarks/RESULTS.md, "Trial overhead") or as ``train_loop_per_worker`` of a Train V2
``TorchTrainer`` when a phase spans several workers or GPUs. The two engines differ only in how the
loop gets its dataset shards and reports.
"""

from __future__ import annotations

import itertools
import logging
import math
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from neuroray.errors import NeurorayError
from neuroray.run.loop_config import LoopConfig
from neuroray.run_folder.checkpoints import (
    CKPT_LIGHTNING,
    load_phase_state,
    save_checkpoint,
    save_phase,
)
from neuroray.run_folder.storage import copy_tensorboard
from neuroray.trainables import base as registry
from neuroray.trainables.evaluate import score_split

ReportFn = Callable[[dict[str, Any], str | None], None]
TRAIN_ROWS = "data/train_rows"  # a phase's train rows in its last epoch, in its reports and phase records
LOG_STORAGE = "_log_storage"  # the TorchTrainer loop config's (filesystem, run path) for rank 0's logs
ShardFn = Callable[[str], Any]  # split name -> ray.data.DataIterator



class Batches:
    """Re-iterable torch batches from a Ray DataIterator; a new local-shuffle seed every epoch.

    Each epoch of a Ray dataset shard is a new streaming execution, and its first batch waits for that
    start-up (plus the local-shuffle buffer). With ``epochs`` known, the next epoch is opened, and its first
    batch fetched, in a background thread as soon as this epoch's batches run out, so the start-up overlaps
    validation instead of stalling the next training step (benchmarks/data_wait.py).
    """

    def __init__(self, get_shard: ShardFn, split: str, batch_size: int, shuffle: bool, seed: int,
                 epochs: int | None = None) -> None:
        self.get_shard, self.split, self.batch_size = get_shard, split, batch_size
        self.shuffle, self.seed, self.epoch, self.epochs = shuffle, seed, 0, epochs
        self._ahead: _Ahead | None = None
        self.rows = 0  # rows this epoch so far (the whole epoch's once it has run out)

    def _open(self) -> tuple[Any, Iterator[dict[str, torch.Tensor]]]:
        kwargs: dict[str, Any] = {}
        if self.shuffle:
            kwargs = {"local_shuffle_buffer_size": 4 * self.batch_size,
                      "local_shuffle_seed": self.seed * 10_007 + self.epoch}
        self.epoch += 1
        batches = iter(self.get_shard(self.split).iter_torch_batches(batch_size=self.batch_size, drop_last=False,
                                                                     **kwargs))
        return next(batches, _END), batches

    def _finite(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A NaN in ``x`` turns every metric into NaN and the trial into a silent "OK" without a score."""
        x = batch.get("x")
        if isinstance(x, torch.Tensor) and x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise NeurorayError(f"split {self.split!r}: x holds NaN or inf values (batch of epoch {self.epoch}); "
                                "the shard set was written or edited outside neuroray's prepare. Prepare it again")
        return batch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        ahead, self._ahead = self._ahead, None
        first, batches = ahead.result() if ahead is not None else self._open()
        self.rows = 0
        if first is _END:
            return
        for batch in itertools.chain([first], batches):
            self.rows += len(next(iter(batch.values()))) if batch else 0
            yield self._finite(batch)
        if self.epochs is not None and self.epoch < self.epochs:
            self._ahead = _Ahead(self._open)


_END = object()


class _Ahead:
    """``fn()`` in a daemon thread (a trial stopped mid-epoch must not wait for it); ``result()`` joins it and
    re-raises what it raised."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._out: list[Any] = []
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True, name="neuroray-next-epoch")
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._out.append((True, fn()))
        except BaseException as e:  # handed to the consumer, raised there
            self._out.append((False, e))

    def result(self) -> Any:
        """Wait for the background call and return its value (or raise its error)."""
        self._thread.join()
        ok, value = self._out[0]
        if not ok:
            raise value
        return value


class EpochProgress(L.Callback):
    """A line every ``every_s`` seconds inside a training epoch: batches done / total and windows/s.

    A long epoch (a full-size volume set streams for many minutes) otherwise prints nothing between the
    trial's start and its first report. The total comes from the split's rows for the first epoch (when
    known) and from the batches the previous epoch took after that."""

    def __init__(self, label: str, every_s: float, train_rows: int | None, batch_size: int) -> None:
        self.label, self.every_s = label, every_s
        self.total: int | None = None
        self.rows, self.batch_size = train_rows, batch_size
        self.start = self.last = 0.0
        self.batches = self.windows = 0

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.total is None and self.rows:
            self.total = -(-self.rows // (self.batch_size * max(1, trainer.world_size)))
        self.start = self.last = time.monotonic()
        self.batches = self.windows = 0

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.batches += 1
        x = batch.get("x") if isinstance(batch, dict) else None
        self.windows += len(x) if x is not None else 0
        now = time.monotonic()
        if now - self.last < self.every_s:
            return
        self.last = now
        total = f"/{self.total}" if self.total else ""
        share = f" ({100 * self.batches / self.total:.0f} %)" if self.total else ""
        print(f"{self.label}: epoch {trainer.current_epoch + 1}/{trainer.max_epochs}, batch {self.batches}{total}"
              f"{share}, {self.windows / max(now - self.start, 1e-9):.0f} windows/s", flush=True)

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.batches:
            self.total = self.batches


class EpochReporter(L.Callback):
    """After each epoch of the final phase (validation included): metrics to Ray with a checkpoint.

    Every epoch's checkpoint carries the Lightning state (optimizer, epoch), so a trial restarted after a
    lost node or an interrupted run continues where it stopped; Tune keeps the latest one and the best
    by the experiment's metric (``CheckpointConfig``), and exports use the best.

    Earlier phases report nothing to Ray: Tune's searchers and schedulers expect the experiment's metric
    in every result, and a pretraining phase has none. Their metrics go to TensorBoard; their weights pass
    to the next phase in memory.
    """

    def __init__(self, report: ReportFn, phase: dict[str, Any], spec: dict[str, Any], final: bool,
                 is_rank0: bool, train: Batches | None = None, hparams: dict[str, Any] | None = None,
                 metric: str = "", mode: str = "min") -> None:
        self.report, self.phase, self.spec, self.final = report, phase, spec, final
        self.is_rank0, self.train = is_rank0, train
        self.hparams, self.metric, self.mode = hparams or {}, metric, mode
        self.best: dict[str, float] | None = None

    def _log_best(self, trainer: L.Trainer, metrics: dict[str, Any]) -> None:
        """TensorBoard's HParams view: the trial's hparams once, then its best epoch so far (by the experiment's
        metric) as ``best/…`` scalars after every epoch, so a trial a scheduler stops still shows its best."""
        score = metrics.get(self.metric)
        if not isinstance(trainer.logger, TensorBoardLogger) or not isinstance(score, float) or math.isnan(score):
            return
        first = self.best is None
        held = math.nan if self.best is None else self.best[self.metric]
        if first or (score < held if self.mode == "min" else score > held):
            self.best = {k: v for k, v in metrics.items() if k.startswith(("val/", "train/"))}
        best = {f"best/{k}": v for k, v in (self.best or {}).items()}
        if first:
            trainer.logger.log_hyperparams(self.hparams, metrics=best, step=trainer.current_epoch + 1)
        else:
            trainer.logger.log_metrics(best, step=trainer.current_epoch + 1)

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not self.final:
            return
        metrics: dict[str, Any] = {k: float(v) for k, v in trainer.callback_metrics.items()}
        self._log_best(trainer, metrics)
        metrics.update(phase=self.phase["name"], phase_epoch=trainer.current_epoch + 1)
        if self.train is not None:  # which data this phase read: the rows of its epoch (this worker's share)
            metrics[TRAIN_ROWS] = self.train.rows
        with tempfile.TemporaryDirectory(prefix="neuroray-ckpt-") as tmp:
            trainer.save_checkpoint(Path(tmp) / CKPT_LIGHTNING, weights_only=False)  # all ranks (DDP collective)
            if not self.is_rank0:
                self.report(metrics, None)
                return
            save_checkpoint(Path(tmp), module, self.phase, self.spec, metrics)  # type: ignore[arg-type]
            self.report(metrics, tmp)


def run_phases(config: LoopConfig | dict[str, Any], get_shard: ShardFn, report: ReportFn,
               lightning_kwargs: dict[str, Any] | None = None,
               prepare: Callable[[L.Trainer], L.Trainer] | None = None, is_rank0: bool = True,
               restore: str | Path | None = None) -> None:
    """Fit every phase in order; a phase with ``from`` starts from that phase's weights.

    ``config``: a ``LoopConfig`` (or the dict Ray shipped it as). ``restore``: the trial's last checkpoint (a
    restarted trial): the final phase continues from it. Without one, phases already finished in
    ``phase_dir`` are loaded instead of trained again.
    """
    cfg = LoopConfig.parse(config)
    torch.set_num_threads(max(1, int(cfg.threads)))
    # Lightning's per-Trainer notes (GPU/TPU available, a logging-service tip) once per phase and trial drown
    # the trial's own lines; its warnings still show.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    spec = cfg.spec.build()
    states: dict[str, dict[str, torch.Tensor]] = {}
    phases = cfg.phases
    phase_dir = Path(cfg.phase_dir) if cfg.phase_dir else None
    resume = Path(restore) / CKPT_LIGHTNING if restore and (Path(restore) / CKPT_LIGHTNING).is_file() else None
    for i, phase in enumerate(phases):
        final = i == len(phases) - 1
        record = cfg.phase_dict(i)
        if not final and resume is not None:
            continue  # the final phase's checkpoint holds every weight the chain produced
        done = load_phase_state(phase_dir / phase.name) if phase_dir and not final else None
        if done is not None:
            states[phase.name] = done
            continue
        L.seed_everything(cfg.seed * 1000 + i, workers=False, verbose=False)
        own = cfg.phase_data.get(phase.name)  # a phase with its own shard set (phases[].data)
        module = registry.build(phase.trainable, own.spec.build() if own else spec, phase.hparams or {},
                                target=phase.target_arg)
        if (load := getattr(module, "encoder_load", None)) is not None and is_rank0:
            print(f"{cfg.trial_name} {phase.name}: {load.summary()}", flush=True)
        if phase.from_ and resume is None:
            registry.load_matching(module, states[phase.from_])
        stats = [(own.target_stats if own else cfg.target_stats).get(t) for t in module.target_names()]
        if stats and all(stats):  # after the carry-over: this phase's own target(s)
            means, stds = [st.mean for st in stats if st], [st.std for st in stats if st]
            module.set_target_stats(means if len(means) > 1 else means[0], stds if len(stds) > 1 else stds[0])
        prefix = f"{own.key}/" if own else ""  # the Ray dataset keys of this phase's shard set
        # A resumed phase runs fewer epochs than it names: no opening of an epoch that never comes.
        epochs = None if final and resume is not None else phase.epochs
        train = Batches(get_shard, f"{prefix}train", phase.batch_size, True, cfg.seed, epochs)
        logger: Any = False
        if cfg.tensorboard_dir and is_rank0:
            logger = TensorBoardLogger(save_dir=cfg.tensorboard_dir, name=cfg.trial_name,
                                       version=phase.name, default_hp_metric=False)
        trainer = L.Trainer(
            max_epochs=phase.epochs, logger=logger, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
            log_every_n_steps=1, deterministic=False, precision=cfg.precision,  # type: ignore[arg-type]
            callbacks=[EpochReporter(report, record, own.spec.model_dump() if own else cfg.spec_dict(), final,
                                     is_rank0, train, cfg.hparams, cfg.metric, cfg.mode),
                       *([EpochProgress(f"{cfg.trial_name} {phase.name}", cfg.progress_s,
                                        None if own else cfg.train_rows, phase.batch_size)]
                         if cfg.progress_s and is_rank0 else [])],
            **(lightning_kwargs or {"accelerator": "auto", "devices": 1}),
        )
        if prepare is not None:
            trainer = prepare(trainer)
        bs = phase.batch_size
        trainer.fit(module, train_dataloaders=train,
                    val_dataloaders=Batches(get_shard, f"{prefix}val", bs, False, cfg.seed),
                    ckpt_path=str(resume) if final and resume is not None else None,
                    weights_only=True)
        states[phase.name] = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
        # The final phase's checkpoints go to Tune (a scheduler may stop the trial at its last report).
        if phase_dir is not None and is_rank0 and not final:
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
            metrics[TRAIN_ROWS] = train.rows
            for i in range(own.sources if own and own.sources > 1 else 0):  # a mixture: each source on its own
                scores = score_split(module, Batches(get_shard, f"{prefix}val_source{i}", bs, False, cfg.seed),
                                     prefix=f"val_source{i}/")
                metrics.update(scores)
                print(f"{cfg.trial_name} {phase.name}: mix[{i}] " + ", ".join(f"{k} {v:.4g}" for k, v in
                                                                         scores.items()), flush=True)
            save_phase(phase_dir / phase.name, module, record, own.spec.model_dump() if own else cfg.spec_dict(),
                       metrics)


def torchtrainer_worker_loop(cfg: dict[str, Any]) -> None:
    """``train_loop_per_worker`` for the TorchTrainer engine (runs in each Train worker)."""
    import ray.train
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment, prepare_trainer

    from neuroray.run.session import configure_data_context

    configure_data_context()
    rank0 = ray.train.get_context().get_world_rank() == 0
    cfg = dict(cfg)
    logs = cfg.pop(LOG_STORAGE, None)  # (filesystem, run path) with URI storage, else None

    def report(metrics: dict[str, Any], ckpt_dir: str | None) -> None:
        ckpt = ray.train.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None
        ray.train.report(metrics, checkpoint=ckpt)

    kwargs: dict[str, Any] = dict(
        config=cfg, get_shard=ray.train.get_dataset_shard, report=report, is_rank0=rank0, prepare=prepare_trainer,
        lightning_kwargs={"accelerator": "auto", "devices": "auto", "strategy": RayDDPStrategy(),
                          "plugins": [RayLightningEnvironment()]},
    )
    try:
        ckpt = ray.train.get_checkpoint()  # set when Train restarts the run after a failure or a resume
        if ckpt is None:
            run_phases(**kwargs)
        else:
            with ckpt.as_directory() as restore:
                run_phases(**kwargs, restore=restore)
    finally:
        if rank0:  # rank 0 wrote the TensorBoard files, on whichever node it ran
            copy_tensorboard(cfg.get("tensorboard_dir"), str(cfg["trial_name"]), logs)
