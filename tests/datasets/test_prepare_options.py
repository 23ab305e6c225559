"""Each prepare kind's options exist once: the CLI's flags and an experiment's data.prepare keys are the
options model's fields, with its defaults."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from neuroray.cli import _parser
from neuroray.datasets.eeg.options import EEGPrepareOptions
from neuroray.datasets.options import PrepareOptions, flag, from_argv
from neuroray.datasets.spectrograms.options import SpectrogramPrepareOptions
from neuroray.datasets.volumes.options import VolumePrepareOptions
from neuroray.search_spaces.schema import PrepareEEG, PrepareSpectrograms, PrepareVolumes

KINDS: dict[str, tuple[type[PrepareOptions], type[PrepareOptions]]] = {
    "eeg": (EEGPrepareOptions, PrepareEEG),
    "volumes": (VolumePrepareOptions, PrepareVolumes),
    "spectrograms": (SpectrogramPrepareOptions, PrepareSpectrograms),
}
# How a run is carried out, not what data it makes: CLI-only.
RUN_CONTROL = {"--out", "--overwrite", "--resume", "--strict", "--address", "--quiet", "-h", "--help"}


def _prepare_parser(kind: str) -> argparse.ArgumentParser:
    top = _parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    prepare = sub.choices["prepare"]
    kinds = next(a for a in prepare._actions if isinstance(a, argparse._SubParsersAction))
    return kinds.choices[kind]


@pytest.mark.parametrize("kind", list(KINDS))
def test_cli_flags_are_the_options_fields(kind: str) -> None:
    model, schema = KINDS[kind]
    parser = _prepare_parser(kind)
    flags = {s for a in parser._actions for s in a.option_strings} - RUN_CONTROL
    assert flags == {flag(f) for f in model.model_fields}
    ns = parser.parse_args(["--out", "o", flag(model.sources[0]), "x" if kind != "spectrograms" else "d"]
                           if model.sources[0] not in ("synthetic_hbn", "synthetic") else ["--out", "o"])
    for name, info in model.model_fields.items():  # every default is the model's own
        if name not in model.sources:
            assert getattr(ns, name) == info.get_default(call_default_factory=True), name
    assert set(schema.model_fields) - {"kind"} == set(model.model_fields)  # data.prepare's keys, the same


def test_an_old_args_list_reads_as_the_keys() -> None:
    old: dict[str, Any] = {"kind": "volumes", "args": ["--synthetic", "12", "--voxel-mm", "4", "--term-names",
                                                       "a, b"]}
    new = {"kind": "volumes", "synthetic": 12, "voxel_mm": 4, "term_names": ["a", "b"]}
    assert PrepareVolumes.model_validate(old) == PrepareVolumes.model_validate(new)
    assert from_argv(SpectrogramPrepareOptions, ["--synthetic-lfp"], "w") == {"synthetic_lfp": True}


@pytest.mark.parametrize(("argv", "message"), [
    (["--synthetic", "12", "--nifti", "d"], "argument --nifti: not allowed with argument --synthetic"),
    (["--synthetic", "12", "--rows-per-file", "0"], "--rows-per-file 0: must be >= 1"),
])
def test_volume_flags_checked_by_the_model(argv: list[str], message: str, capsys: pytest.CaptureFixture[str],
                                           tmp_path: Any) -> None:
    from neuroray.cli import main

    try:
        code = main(["prepare", "volumes", *argv, "--out", str(tmp_path / "v")])
    except SystemExit as e:  # argparse's own usage errors
        code = int(e.code or 0)
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "v").exists()


def test_experiment_keys_checked_by_the_model() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="give exactly one of lfp, iq, synthetic_lfp, synthetic_iq"):
        PrepareSpectrograms.model_validate({"kind": "spectrograms", "n_trials": 4})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        PrepareSpectrograms.model_validate({"kind": "spectrograms", "synthetic_lfp": True, "n_trial": 4})
