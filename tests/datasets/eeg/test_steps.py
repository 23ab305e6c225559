"""Preprocessing steps as data, on real recordings: filter, notch, resample, reference, channel layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neuroray.datasets.eeg.prepare import default_steps, make_config
from neuroray.datasets.eeg.readers import RecordingError, read_raw
from neuroray.datasets.eeg.steps import LAYOUTS, apply_steps, check_steps, resolve_layout
from neuroray.errors import ConfigError, NeurorayError

DATA = Path(__file__).resolve().parents[2] / "data" / "eeg"
EDF = DATA / "edf/chtypes_edf.edf"


def test_default_chain_on_a_clinical_edf() -> None:
    raw = apply_steps(read_raw(EDF), default_steps(sfreq=100.0, l_freq=1.0, h_freq=30.0, notch=50.0,
                                                   reference="average"))
    assert raw.info["sfreq"] == 100.0 and raw.n_times == 500
    assert set(raw.get_channel_types()) == {"eeg"} and len(raw.ch_names) == 27  # ECG/misc picked out
    assert raw.info["highpass"] == pytest.approx(1.0) and raw.info["lowpass"] == pytest.approx(30.0)
    np.testing.assert_allclose(raw.get_data().mean(axis=0), 0.0, atol=1e-12)  # average reference


def test_band_pass_removes_out_of_band_power() -> None:
    raw = read_raw(DATA / "eeglab/test_raw.set")
    raw.crop(0, 60)
    before = raw.compute_psd(fmin=45, fmax=60, verbose="error").get_data().mean()
    after = apply_steps(raw.copy(), [{"step": "filter", "l_freq": 1.0, "h_freq": 20.0}])
    assert after.compute_psd(fmin=45, fmax=60, verbose="error").get_data().mean() < 0.01 * before


def test_channel_layouts_select_zeropad_interpolate() -> None:
    target = LAYOUTS["1020"]()
    raw = read_raw(EDF)
    full = apply_steps(raw.copy(), [{"step": "pick", "types": ["eeg"]},
                                    {"step": "channels", "target": target, "mode": "select"}])
    assert full.ch_names == target  # the target order, not the file's

    no_cz = raw.copy().drop_channels(["Cz"])
    with pytest.raises(RecordingError, match="missing target channel"):
        apply_steps(no_cz.copy(), [{"step": "channels", "target": target, "mode": "select"}])
    padded = apply_steps(no_cz.copy(), [{"step": "channels", "target": target, "mode": "zeropad"}])
    assert padded.ch_names == target and not padded.get_data(picks=["Cz"]).any()


def test_interpolation_recovers_a_smooth_scalp_field() -> None:
    """A missing channel is rebuilt through the montage: on a spatially smooth field, it matches the truth."""
    import mne

    from neuroray.datasets.eeg.readers import standard_montage

    target = LAYOUTS["1020"]()
    pos = standard_montage("1005").get_positions()["ch_pos"]
    xyz = np.array([pos[c] for c in target])
    t = np.arange(500) / 100.0
    field = xyz[:, :1] * np.sin(2 * np.pi * 3 * t) + xyz[:, 1:2] * np.cos(2 * np.pi * 5 * t) + 0.1 * xyz[:, 2:3]
    raw = mne.io.RawArray(field, mne.create_info(target, 100.0, "eeg"), verbose="error")
    est = apply_steps(raw.copy().drop_channels(["Cz", "P3"]),
                      [{"step": "channels", "target": target, "mode": "interpolate"}])
    assert est.ch_names == target
    for ch in ("Cz", "P3"):
        truth, got = field[target.index(ch)], est.get_data(picks=[ch])[0]
        assert np.corrcoef(truth, got)[0, 1] > 0.95


def test_bad_steps_and_layouts_fail_with_one_line() -> None:
    with pytest.raises(ConfigError, match=r"steps\[0\]: unknown step 'smooth'; allowed: pick, filter"):
        check_steps([{"step": "smooth"}])
    with pytest.raises(ConfigError, match=r"steps\[0\] \(filter\): unknown parameter\(s\) hi; allowed: h_freq, l_freq"):
        check_steps([{"step": "filter", "hi": 3}])
    with pytest.raises(ConfigError, match="duplicate channel names"):
        resolve_layout("Fp1,Fp1")
    with pytest.raises(NeurorayError, match="target 'c3'; allowed: challenge1, challenge2, pretrain"):
        make_config(target="c3")
    assert resolve_layout("hbn129")[-1] == "Cz" and len(resolve_layout("hbn129") or []) == 129


def test_resampling_up_and_nyquist_are_refused() -> None:
    raw = read_raw(EDF)  # 200 Hz
    with pytest.raises(RecordingError, match=r"sampling rate 200.0 Hz is below the requested 250.0 Hz"):
        apply_steps(raw.copy(), default_steps(sfreq=250.0))
    with pytest.raises(RecordingError, match=r"h_freq=120.0 Hz is not below the Nyquist frequency \(100.0 Hz\)"):
        apply_steps(raw.copy(), [{"step": "filter", "l_freq": None, "h_freq": 120.0}])


def test_a_1020_recording_reaches_the_hbn129_layout_through_its_own_electrodes() -> None:
    """TUH-style 19 electrodes → HBN's 129 HydroCel sensors: each interpolated sensor follows the smooth
    scalp field at its own position (not zeros, not one electrode copied)."""
    import mne

    from neuroray.datasets.eeg.readers import standard_montage
    from neuroray.datasets.eeg.steps import _head_positions

    source = LAYOUTS["1020"]()
    hbn = LAYOUTS["hbn129"]()
    src_pos = _head_positions(source, standard_montage("1005"))
    hbn_pos = _head_positions(hbn, mne.channels.make_standard_montage("GSN-HydroCel-129"))
    t = np.arange(400) / 100.0

    def field(xyz: np.ndarray) -> np.ndarray:  # smooth over the scalp: a front-back and a left-right gradient
        return xyz[:, :1] * np.sin(2 * np.pi * 3 * t) + xyz[:, 1:2] * np.cos(2 * np.pi * 5 * t)

    raw = mne.io.RawArray(field(np.array([src_pos[c] for c in source])), mne.create_info(source, 100.0, "eeg"),
                          verbose="error")
    out = apply_steps(raw, [{"step": "channels", "target": hbn, "mode": "interpolate"}])
    assert out.ch_names == hbn
    truth, got = field(np.array([hbn_pos[c] for c in hbn])), out.get_data()
    r = [np.corrcoef(a, b)[0, 1] for a, b in zip(truth, got, strict=True)]
    assert np.median(r) > 0.9 and np.abs(got).max() > 0, np.percentile(r, [5, 50])
