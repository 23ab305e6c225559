"""Every real recording in tests/data/eeg reads through MNE with the right counts, types and rates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neuroray.datasets.eeg.readers import RecordingError, check_signal, normalize_channel_name, read_raw

DATA = Path(__file__).resolve().parents[2] / "data" / "eeg"

# (file, channels, sfreq, samples, {type: count}) — from each file's own header (see tests/data/README.md).
REAL = [
    ("eeglab/test_raw.set", 32, 128.0, 30504, {"eeg": 32}),
    ("eeglab/test_raw_chanloc.set", 61, 128.0, 385, {"eeg": 61}),
    # 43 EDF+ signals = 42 data channels + the annotations signal. ECG1/2 are ECG; SaO2 and POL inputs misc.
    ("edf/chtypes_edf.edf", 42, 200.0, 1000, {"eeg": 27, "ecg": 2, "misc": 13}),
    ("brainvision/test_NO.vhdr", 65, 5000.0, 2238, {"eeg": 63, "emg": 2}),
]


@pytest.mark.parametrize(("rel", "n_chans", "sfreq", "n_times", "types"), REAL, ids=[r[0] for r in REAL])
def test_real_recordings(rel: str, n_chans: int, sfreq: float, n_times: int, types: dict[str, int]) -> None:
    raw = read_raw(DATA / rel)
    assert len(raw.ch_names) == n_chans
    assert raw.info["sfreq"] == sfreq
    assert raw.n_times == n_times
    found = raw.get_channel_types()
    assert {t: found.count(t) for t in set(found)} == types


def test_edf_labels_become_standard_names() -> None:
    raw = read_raw(DATA / "edf/chtypes_edf.edf")
    eeg = [ch for ch, t in zip(raw.ch_names, raw.get_channel_types(), strict=True) if t == "eeg"]
    assert eeg[:8] == ["Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4"]
    assert "ECG1" in raw.ch_names and raw.get_channel_types(["ECG1"]) == ["ecg"]
    assert raw.get_channel_types(["POL E"]) == ["misc"]


def test_chanloc_names_are_kept() -> None:
    raw = read_raw(DATA / "eeglab/test_raw_chanloc.set")
    assert raw.ch_names[:3] == ["Fp1", "Fp2", "F7"]


@pytest.mark.parametrize(("label", "name", "ch_type"), [
    ("EEG FP1-REF", "Fp1", "eeg"), ("EEG Fp1-LE", "Fp1", "eeg"), ("EEG CZ-REF", "Cz", "eeg"),
    ("ECG ECG1", "ECG1", "ecg"), ("EOG LOC", "LOC", "eog"), ("POL E", "POL E", "misc"),
    ("EMGright", "EMGright", "emg"), ("fz", "Fz", "eeg"), ("E12", "E12", None),
])
def test_channel_name_normalization(label: str, name: str, ch_type: str | None) -> None:
    assert normalize_channel_name(label) == (name, ch_type)


def test_set_without_fdt_names_the_missing_file(tmp_path: Path) -> None:
    (tmp_path / "rec.set").write_bytes((DATA / "eeglab/test_raw.set").read_bytes())
    with pytest.raises(RecordingError, match=r"rec\.set: its data file test_raw\.fdt or rec\.fdt is missing"):
        read_raw(tmp_path / "rec.set")


def test_truncated_edf_is_refused(tmp_path: Path) -> None:
    data = (DATA / "edf/chtypes_edf.edf").read_bytes()
    (tmp_path / "cut.edf").write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(RecordingError, match=r"cut\.edf: truncated: \d+ bytes, the header promises \d+"):
        read_raw(tmp_path / "cut.edf")


def test_unsupported_format(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("1 2 3")
    with pytest.raises(RecordingError, match=r"x\.txt: unsupported format '\.txt'; allowed: \.bdf, \.edf"):
        read_raw(tmp_path / "x.txt")


def test_fif_round_trip(tmp_path: Path) -> None:
    raw = read_raw(DATA / "eeglab/test_raw_chanloc.set")
    raw.save(tmp_path / "rec_raw.fif", verbose="error")
    back = read_raw(tmp_path / "rec_raw.fif")
    assert back.ch_names == raw.ch_names and back.info["sfreq"] == 128.0
    np.testing.assert_allclose(back.get_data(), raw.get_data(), rtol=1e-6)


@pytest.mark.parametrize(("fill", "message"), [(np.nan, "NaN/inf samples"), (0.0, "every EEG channel is flat")])
def test_unusable_signals_are_refused(tmp_path: Path, fill: float, message: str) -> None:
    import mne

    data = np.random.default_rng(0).standard_normal((4, 256)) * 1e-5
    data[:, 10:20] = fill
    if fill == 0.0:
        data[:] = 1e-6
    mne.io.RawArray(data, mne.create_info(["Fz", "Cz", "Pz", "Oz"], 128.0, "eeg"), verbose="error").save(
        tmp_path / "bad_raw.fif", verbose="error")
    with pytest.raises(RecordingError, match=message):
        check_signal(read_raw(tmp_path / "bad_raw.fif"), tmp_path / "bad_raw.fif")
