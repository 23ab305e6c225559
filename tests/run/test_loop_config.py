"""The trial → train-loop contract survives Ray's dict shipping unchanged, fractional CPUs included."""

from __future__ import annotations

from neuroray.run.loop_config import LoopConfig, SpecRef
from neuroray.search_spaces.schema import Phase


def test_round_trip_through_a_plain_dict() -> None:
    phases = [Phase.model_validate({"name": "pre", "trainable": "eeg_masked_pretrain", "epochs": 2}),
              Phase.model_validate({"name": "fit", "trainable": "eeg_regressor", "epochs": 3, "from": "pre",
                                    "target": "rt", "hparams": {"aux_target": "p_factor"}})]
    cfg = LoopConfig(phases=phases, spec=SpecRef(modality="eeg", spec={"n_chans": 4, "n_times": 50, "sfreq": 100.0}),
                     seed=2, metric="val/nrmse", mode="min", threads=0.5,
                     target_stats={"rt": {"mean": 1.2, "std": 0.3, "n": 40}})  # type: ignore[arg-type]
    shipped = cfg.to_ray()
    assert isinstance(shipped, dict) and shipped["phases"][1]["from"] == "pre"
    back = LoopConfig.parse({**shipped, "out": "a benchmark's extra key"})
    assert back == cfg and back.phases[1].from_ == "pre" and back.target_stats["rt"].std == 0.3
    assert back.spec.build().n_chans == 4 and back.phase_dict(1)["hparams"] == {"aux_target": "p_factor"}
