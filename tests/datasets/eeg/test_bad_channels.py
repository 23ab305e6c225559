"""Bad channels from BIDS channels.tsv on the real EEGLAB sample files (tests/data/eeg/eeglab): interpolated
where the file has channel positions, zeroed where it has none."""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np
import pytest

from neuroray.datasets.eeg.bad_channels import read_bad_channels, repair_bad_channels
from neuroray.datasets.eeg.readers import RecordingError, read_raw

DATA = Path(__file__).resolve().parents[2] / "data" / "eeg" / "eeglab"


def _tsv(path: Path, names: list[str], bad: set[str]) -> Path:
    rows = ["name\ttype\tunits\tstatus\tstatus_description"]
    rows += [f"{n}\tEEG\tuV\t{'bad' if n in bad else 'good'}\t{'flat' if n in bad else 'n/a'}" for n in names]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_status_bad_is_read_and_malformed_files_are_named(tmp_path: Path) -> None:
    tsv = _tsv(tmp_path / "sub-01_task-rest_channels.tsv", ["Fp1", "Fz", "Cz"], {"Fz"})
    assert read_bad_channels(tsv) == ["Fz"] and read_bad_channels(None) == []
    (tmp_path / "nostatus.tsv").write_text("name\ttype\nFz\tEEG\n")
    assert read_bad_channels(tmp_path / "nostatus.tsv") == []
    (tmp_path / "broken.tsv").write_text("kind\tunits\nEEG\tuV\n")
    with pytest.raises(RecordingError, match=r"broken.tsv: no 'name' column"):
        read_bad_channels(tmp_path / "broken.tsv")


def test_interpolated_with_positions_recovers_a_planted_scalp_field(tmp_path: Path) -> None:
    """The real file's 61 electrode positions carry a planted smooth field (a front-back gradient times a
    10 Hz rhythm); the bad electrode, set flat, is rebuilt from its neighbours close to the field's value."""
    raw = read_raw(DATA / "test_raw_chanloc.set")
    locs = np.array([c["loc"][:3] for c in raw.info["chs"]])
    t = np.arange(raw.n_times) / raw.info["sfreq"]
    field = (locs[:, 1:2] / np.abs(locs[:, 1]).max()) * np.sin(2 * np.pi * 10 * t)[None, :] * 1e-5
    raw = mne.io.RawArray(field, raw.info, verbose="error")  # the real positions, the planted samples
    target = raw.ch_names[10]
    raw.apply_function(lambda x: x * 0 + 1e-3, picks=[target])  # the electrode went bad: a flat offset
    done = repair_bad_channels(raw, read_bad_channels(_tsv(tmp_path / "c.tsv", raw.ch_names, {target, "nope"})))
    assert done is not None and done["channels"] == [target] and done["how"].startswith("interpolated")
    fixed = raw.get_data(picks=[target])[0]
    assert np.corrcoef(fixed, field[10])[0, 1] > 0.95 and raw.info["bads"] == []


def test_zeroed_without_positions(tmp_path: Path) -> None:
    raw = read_raw(DATA / "test_raw.set")
    target = raw.ch_names[3]
    done = repair_bad_channels(raw, [target])
    assert done is not None and done["how"].startswith("zeroed")
    assert not raw.get_data(picks=[target]).any() and raw.get_data(picks=[raw.ch_names[4]]).any()
    assert repair_bad_channels(raw, ["not-a-channel"]) is None
