"""``neuroray export --challenge eeg2025``: two trained regressors → an EEG Foundation Challenge 2025 zip.

The challenge's scorer (start kit ``submission.py`` contract) imports ``submission.py`` from the zip's root,
calls ``Submission(SFREQ, DEVICE)`` and then ``get_model_challenge_1()`` / ``get_model_challenge_2()``; each
must return a torch module mapping raw windows (batch, 129, 200) at 100 Hz to (batch, 1) predictions. The
scorer has torch and braindecode but not neuroray, so the zip carries plain code: the encoder classes of
neuroray (source copied) or braindecode's model by name, a linear head, the shard set's per-channel z-score
(the scorer feeds un-normalized windows) and the regressor's target de-standardization, with the weights as
``weights_challenge_{1,2}.pt`` state dicts and the architecture as ``model_challenge_{1,2}.json``, both read
relative to ``submission.py``. The zip is checked before it is published: it is unpacked, imported the way
the scorer does, and its predictions on the validation windows must match the neuroray model's.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import numpy as np
import torch

from neuroray import __version__
from neuroray.datasets.shards import ShardSet, open_shard_set
from neuroray.datasets.spec import EEGWindowSpec
from neuroray.errors import NeurorayError
from neuroray.export.inference import iter_split
from neuroray.export.to_onnx import checkpoint_of, select_trial
from neuroray.outputs import atomic_write
from neuroray.run_folder.checkpoints import load_checkpoint
from neuroray.trainables.base import Task
from neuroray.trainables.metrics import nrmse
from neuroray.trainables.models import braindecode_encoders, eeg_encoders
from neuroray.trainables.tasks.eeg import EEGEncoderHparams

N_CHANS, N_TIMES, SFREQ = 129, 200, 100.0  # what the scorer feeds: 2 s windows of HBN's 129 channels at 100 Hz
SELF_CHECK_TOL = 1e-4  # relative to the prediction scale

HEADER = '''"""EEG Foundation Challenge 2025 submission, by neuroray {version} (`neuroray export --challenge eeg2025`).

The scorer calls ``Submission(SFREQ, DEVICE)``, then ``get_model_challenge_1()`` and ``get_model_challenge_2()``;
each returns a torch module mapping raw windows (batch, 129, 200) at 100 Hz to (batch, 1) predictions.
Weights (``weights_challenge_N.pt``) and architectures (``model_challenge_N.json``) are read next to this file.
Challenge 1: {c1}. Challenge 2: {c2}.
"""

import json
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent


# neuroray's own encoders, source copied from neuroray.trainables.models.eeg_encoders
'''

BODY = '''

ENCODERS = {"shallow": ShallowEncoder, "conv": ConvEncoder}


def resolve_path(name):
    """This file's folder first, then the scorer's input folders and the working directory."""
    for folder in (HERE, Path("/app/input/res"), Path("/app/input"), Path.cwd()):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{name} not found next to {__file__}, in /app/input/res, /app/input or {Path.cwd()}")


def build_encoder(cfg):
    if cfg["encoder"] in ENCODERS:
        return ENCODERS[cfg["encoder"]](cfg["n_chans"], cfg["n_times"], cfg["n_filters"], cfg["dropout"])
    import braindecode.models  # in the challenge's image

    return getattr(braindecode.models, cfg["braindecode_class"])(**cfg["braindecode_kwargs"])


class ChallengeModel(nn.Module):
    """Per-channel z-score (train statistics) -> encoder -> linear head -> target in raw units, (batch, 1)."""

    def __init__(self, cfg):
        super().__init__()
        self.encoder = build_encoder(cfg)
        self.head = nn.Linear(cfg["n_filters"], 1)
        self.register_buffer("input_mean", torch.zeros(cfg["n_chans"], 1))
        self.register_buffer("input_std", torch.ones(cfg["n_chans"], 1))
        self.register_buffer("target_mean", torch.tensor(0.0))
        self.register_buffer("target_std", torch.tensor(1.0))

    def forward(self, x):
        x = (x.float() - self.input_mean) / self.input_std
        return self.head(self.encoder(x)) * self.target_std + self.target_mean


class Submission:
    def __init__(self, SFREQ, DEVICE):
        self.sfreq = SFREQ
        self.device = torch.device(DEVICE)

    def _load(self, challenge):
        cfg = json.loads(resolve_path(f"model_challenge_{challenge}.json").read_text())
        if float(self.sfreq) != float(cfg["sfreq"]):
            raise ValueError(f"challenge {challenge} model was trained at {cfg['sfreq']} Hz, not {self.sfreq} Hz")
        model = ChallengeModel(cfg)
        state = torch.load(resolve_path(f"weights_challenge_{challenge}.pt"), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        return model.to(self.device).eval()

    def get_model_challenge_1(self):
        return self._load(1)

    def get_model_challenge_2(self):
        return self._load(2)
'''


def submission_source(c1: str, c2: str) -> str:
    """The text of the zip's ``submission.py``: header naming ``c1``/``c2``, neuroray's encoder source, the loader."""
    encoders = "\n\n".join(inspect.getsource(cls) for cls in (eeg_encoders.ShallowEncoder, eeg_encoders.ConvEncoder))
    return HEADER.format(version=__version__, c1=c1, c2=c2) + encoders + BODY


@dataclass(frozen=True)
class PackagedModel:
    """One challenge's trained regressor ready to package: source run/trial, module, shard set, JSON config, state."""

    challenge: int
    run_dir: Path
    trial_id: str
    module: Task
    shard_set: ShardSet
    config: dict[str, Any]
    state: dict[str, torch.Tensor]


def _config_and_state(challenge: int, module: Task, shard_set: ShardSet) -> tuple[dict[str, Any], dict[str, Any]]:
    # the network's own input: a model trained on crops (crop_s) takes the crop, as the scorer feeds it
    spec, hp = cast(EEGWindowSpec, module.input_spec), cast(EEGEncoderHparams, module.hp)
    cfg: dict[str, Any] = {"encoder": hp.encoder, "n_chans": spec.n_chans, "n_times": spec.n_times,
                           "sfreq": spec.sfreq, "n_filters": hp.n_filters, "dropout": hp.dropout}
    if hp.encoder not in eeg_encoders.ENCODERS:
        # the same keyword arguments neuroray builds the braindecode model with (braindecode_encoders.build)
        extra = braindecode_encoders._EXTRA.get(hp.encoder)
        kwargs = {"n_chans": spec.n_chans, "n_times": spec.n_times, "sfreq": spec.sfreq, "n_outputs": hp.n_filters,
                  "drop_prob": hp.dropout, **(extra(spec) if extra else {})}
        try:
            json.dumps(kwargs)
        except TypeError:
            raise NeurorayError(f"--challenge{challenge}: encoder {hp.encoder!r} needs channel positions that a "
                                "submission cannot carry as JSON; choose another encoder") from None
        cfg.update(braindecode_class=braindecode_encoders.MODELS[hp.encoder], braindecode_kwargs=kwargs)
    norm = shard_set.manifest.get("normalization") or {}
    mean, std = np.zeros(spec.n_chans, np.float32), np.ones(spec.n_chans, np.float32)
    if norm.get("per") == "channel" and norm.get("applied", True):
        mean, std = np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32)
    own = module.state_dict()
    state = {k: v.detach().cpu().clone() for k, v in own.items() if k.startswith(("encoder.", "head."))}
    state.update(target_mean=own["target_mean"].clone(), target_std=own["target_std"].clone(),
                 input_mean=torch.from_numpy(mean).reshape(-1, 1), input_std=torch.from_numpy(std).reshape(-1, 1))
    return cfg, state


def load_challenge_model(challenge: int, ref: str) -> PackagedModel:
    """``RUN_DIR`` or ``RUN_DIR@TRIAL`` → the trained regressor, checked against what the scorer feeds."""
    run_dir, trial = ref, "best"
    if "@" in ref and not Path(ref).is_dir():
        run_dir, trial = ref.rsplit("@", 1)
    info, row = select_trial(Path(run_dir), trial)
    module = load_checkpoint(checkpoint_of(row, Path(run_dir)))
    where = f"--challenge{challenge} {ref}: trial {row['trial_id']}"
    if module.name != "eeg_regressor":
        raise NeurorayError(f"{where} is a {module.name!r}; EEG2025 submissions take eeg_regressor models")
    if len(targets := module.target_names()) != 1:
        raise NeurorayError(f"{where} regresses {len(targets)} targets ({', '.join(targets)}); each EEG2025 "
                            "challenge scores one: export a single-target regressor")
    spec = cast(EEGWindowSpec, module.input_spec)
    if (spec.n_chans, spec.n_times, spec.sfreq) != (N_CHANS, N_TIMES, SFREQ):
        raise NeurorayError(f"{where} takes {spec.n_chans} ch x {spec.n_times} samples at {spec.sfreq:g} Hz; "
                            f"the scorer feeds {N_CHANS} x {N_TIMES} at {SFREQ:g} Hz (prepare with --channels "
                            "hbn129 --sfreq 100 and 2 s windows, or train on 2 s crops: hparams.crop_s: 2)")
    if not info.shards:
        raise NeurorayError(f"{where}: {run_dir}/run.json names no shard set (its normalization goes into the zip)")
    shard_set = open_shard_set(info.shards)
    cfg, state = _config_and_state(challenge, module, shard_set)
    cfg["source"] = {"run_dir": str(Path(run_dir).resolve()), "trial_id": str(row["trial_id"]),
                     "target": module.target, "shards": str(shard_set.root), "neuroray": __version__}
    return PackagedModel(challenge, Path(run_dir), str(row["trial_id"]), module, shard_set, cfg, state)


def import_submission(path: Path) -> ModuleType:
    """Import ``submission.py`` from a file, as the challenge's scorer does (not via sys.path)."""
    spec = importlib.util.spec_from_file_location("submission", path)
    if spec is None or spec.loader is None:
        raise NeurorayError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class SubmissionReport:
    """What ``build_submission`` wrote: the zip, its models and, per challenge, the self-check's max relative |Δ|,
    validation NRMSE and window count."""

    out: Path
    models: list[PackagedModel]
    max_rel_diff: dict[int, float]
    val_nrmse: dict[int, float]
    n_val: dict[int, int]


def _self_check(folder: Path, models: list[PackagedModel]) -> tuple[dict[int, float], dict[int, float],
                                                                        dict[int, int]]:
    """Unpacked zip vs the neuroray modules on each model's validation windows (fed un-normalized)."""
    sub = import_submission(folder / "submission.py").Submission(SFREQ, "cpu")
    diffs, scores, counts = {}, {}, {}
    for m in models:
        scored = getattr(sub, f"get_model_challenge_{m.challenge}")()
        mean, std = m.state["input_mean"].numpy(), m.state["input_std"].numpy()
        preds, ys, worst, scale = [], [], 0.0, 1.0
        target = str(m.module.target)
        with torch.no_grad():
            for x, batch in iter_split(m.shard_set, "val", [target], 256):
                raw = (x.astype(np.float64) * std + mean).astype(np.float32)
                start = (raw.shape[-1] - N_TIMES) // 2  # longer windows (crop_s): the centred crop, as in training
                fed = np.ascontiguousarray(raw[..., start:start + N_TIMES])
                got = scored(torch.from_numpy(fed)).numpy().reshape(-1)
                ref = m.module(torch.from_numpy(np.require(x, requirements="W"))).numpy().reshape(-1)
                worst, scale = max(worst, float(np.abs(got - ref).max())), max(scale, float(np.abs(ref).max()))
                preds.append(got)
                ys.append(batch.column(target).to_numpy(zero_copy_only=False).astype(np.float64))
        if not preds:
            raise NeurorayError(f"{m.shard_set.root}: the validation split is empty; the submission cannot be checked")
        diffs[m.challenge] = worst / scale
        scores[m.challenge] = nrmse(torch.from_numpy(np.concatenate(preds)), torch.from_numpy(np.concatenate(ys)))
        counts[m.challenge] = sum(len(p) for p in preds)
        if diffs[m.challenge] > SELF_CHECK_TOL:
            raise NeurorayError(f"challenge {m.challenge}: the packaged model differs from the neuroray model by "
                                f"{diffs[m.challenge]:.2e} (relative) on validation windows; nothing written")
    return diffs, scores, counts


def build_submission(c1: str, c2: str, out: Path) -> SubmissionReport:
    """Write ``out`` (a zip with submission.py, weights_challenge_{1,2}.pt, model_challenge_{1,2}.json)."""
    models = [load_challenge_model(1, c1), load_challenge_model(2, c2)]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> tuple[dict[int, float], dict[int, float], dict[int, int]]:
        with tempfile.TemporaryDirectory(prefix="neuroray-eeg2025-") as work:
            stage = Path(work) / "stage"
            stage.mkdir()
            describe = [f"{m.config['encoder']} regressor of {m.config['source']['target']!r} "
                        f"(run {m.run_dir.name}, trial {m.trial_id})" for m in models]
            (stage / "submission.py").write_text(submission_source(*describe))
            for m in models:
                torch.save(m.state, stage / f"weights_challenge_{m.challenge}.pt")
                (stage / f"model_challenge_{m.challenge}.json").write_text(json.dumps(m.config, indent=2))
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for path in sorted(stage.iterdir()):
                    zf.write(path, arcname=path.name)  # flat: the scorer expects the files at the zip's root
            unpacked = Path(work) / "unpacked"
            with zipfile.ZipFile(tmp) as zf:
                zf.extractall(unpacked)
            return _self_check(unpacked, models)

    diffs, scores, counts = atomic_write(out, write)
    return SubmissionReport(out=out, models=models, max_rel_diff=diffs, val_nrmse=scores, n_val=counts)


def format_submission(r: SubmissionReport) -> str:
    """Human-readable summary of ``r``: the zip's files, then one line per challenge with its source and self-check."""
    lines = [f"EEG2025 submission → {r.out} (submission.py, weights_challenge_1.pt, weights_challenge_2.pt, "
             "model_challenge_1.json, model_challenge_2.json)"]
    for m in r.models:
        c = m.challenge
        lines.append(f"challenge {c}: {m.config['encoder']} regressor of {m.config['source']['target']!r} from "
                     f"{m.run_dir} trial {m.trial_id}; re-imported like the scorer: NRMSE {r.val_nrmse[c]:.4f} on "
                     f"{r.n_val[c]} validation windows, max relative |Δ| vs neuroray {r.max_rel_diff[c]:.1e}")
    return "\n".join(lines)
