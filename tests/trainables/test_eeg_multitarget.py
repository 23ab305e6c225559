"""Multi-target regression (studies issue, item 3): one head per CBCL factor, nulls masked per target, each
standardized with its own train stats; per-target val/nrmse/<t> and val/r/<t>, val/nrmse their mean."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from factor_shards import FACTORS, write_factor_shards

from neuroray.datasets.shards import open_shard_set, tensor_column_to_numpy
from neuroray.datasets.spec import EEGWindowSpec
from neuroray.errors import ConfigError
from neuroray.trainables import base


@pytest.fixture(scope="module")
def factors(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_factor_shards(tmp_path_factory.mktemp("factors") / "eeg")


def _batches(shards: Path, split: str, shuffle: bool) -> torch.utils.data.DataLoader:
    table = open_shard_set(shards).read_split(split, ["x", *FACTORS])
    x = torch.from_numpy(tensor_column_to_numpy(table["x"]).copy())
    ys = {f: torch.from_numpy(table[f].to_numpy().astype(np.float32)) for f in FACTORS}
    rows = [{"x": x[i], **{f: ys[f][i] for f in FACTORS}} for i in range(len(x))]
    return torch.utils.data.DataLoader(rows, batch_size=32, shuffle=shuffle)  # type: ignore[arg-type]


def test_every_factor_is_learned_by_its_own_head(factors: Path) -> None:
    shard_set = open_shard_set(factors)
    module = base.build("eeg_regressor", shard_set.spec, {"encoder": "shallow", "n_filters": 16, "lr": 3e-3},
                        target=FACTORS)
    stats = shard_set.manifest["target_stats"]
    module.set_target_stats([stats[f]["mean"] for f in FACTORS], [stats[f]["std"] for f in FACTORS])
    torch.manual_seed(0)
    trainer = L.Trainer(max_epochs=12, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0)
    trainer.fit(module, _batches(factors, "train", True), _batches(factors, "val", False))
    got = {k: float(v) for k, v in trainer.validate(module, _batches(factors, "val", False), verbose=False)[0].items()}
    for f in FACTORS:
        assert got[f"val/r/{f}"] >= 0.5, got  # each factor drives its own channels: each head finds them
        assert got[f"val/nrmse/{f}"] < 0.9, got
    assert got["val/nrmse"] == pytest.approx(np.mean([got[f"val/nrmse/{f}"] for f in FACTORS]), rel=1e-5)
    with torch.no_grad():  # one column per target, in raw units (attention sits near 50, internalizing near -2)
        out = module.eval()(torch.from_numpy(tensor_column_to_numpy(shard_set.read_split("val", ["x"])["x"])))
    assert out.shape[1] == 4 and 40 < float(out[:, 1].mean()) < 60 and -3 < float(out[:, 2].mean()) < -1


def test_one_target_tasks_refuse_a_list() -> None:
    spec = EEGWindowSpec(n_chans=4, n_times=50, sfreq=50.0)
    with pytest.raises(ConfigError, match="targets: trainable 'eeg_classifier' takes one target.*eeg_regressor"):
        base.build("eeg_classifier", spec, {}, target=["a", "b"])
    assert base.logged_metrics("eeg_regressor", ["a", "b"])[-4:] == ["val/nrmse/a", "val/nrmse/b", "val/r/a",
                                                                     "val/r/b"]
