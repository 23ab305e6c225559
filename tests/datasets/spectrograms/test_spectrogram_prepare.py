"""Spectrogram shard sets: the real ECoG trace, session-disjoint sequences, mel filterbank, planted signals."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from shard_rows import read_rows

from neuroray.cli import main
from neuroray.datasets.shards import open_shard_set
from neuroray.datasets.spec import SpectrogramSpec
from neuroray.datasets.spectrograms.common import InputError
from neuroray.datasets.spectrograms.iq import IQConfig, prepare_iq, read_recording
from neuroray.datasets.spectrograms.lfp import LFPConfig, prepare_lfp, read_session
from neuroray.datasets.spectrograms.mel import hz_to_mel, mel_centers, mel_filterbank, mel_to_hz, mfcc
from neuroray.datasets.spectrograms.synthetic import GAMMA_HZ, write_synthetic_iq, write_synthetic_lfp
from neuroray.datasets.splits import SPLITS

REAL = Path(__file__).resolve().parents[2] / "data" / "lfp"


def test_real_ecog_trace_frequency_axis(tmp_path: Path) -> None:
    out = tmp_path / "ecog"
    assert main(["prepare", "spectrograms", "--lfp", str(REAL), "--out", str(out), "--n-trials", "2",
                 "--nperseg", "250", "--fmax", "120"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    freqs = np.array(m["spectrogram"]["freqs_hz"])
    # 10 s at 1 kHz cut into 1 s trials → one session of 10 trials → 5 sequences of 2 consecutive trials.
    assert m["spec"] == {"n_trials": 2, "n_freqs": len(freqs), "n_frames": 7}
    assert np.allclose(np.diff(freqs), 1000.0 / 250) and freqs[0] >= 1.0 and freqs.max() <= 120.0
    assert freqs.max() > 120.0 - 1000.0 / 250
    assert m["rows"] == {"train": 5, "val": 0, "test": 0} and "note" in m["split"]
    assert [s["path"].endswith(n) for s, n in zip(m["sources"], ["sample_data_1.npy", "sample_data_1.json"],
                                                 strict=True)] == [True, True]
    steps = [s["step"] for s in m["preprocessing"]]
    assert steps == ["stft", "crop", "log10", "baseline", "sequence"]
    rows = read_rows(out)["train"]
    assert rows["x"].shape == (5, 2, len(freqs), 7) and np.isfinite(rows["x"]).all()
    assert list(rows["first_trial"]) == [0, 2, 4, 6, 8]
    assert abs(float(rows["x"].mean())) < 1e-4  # broadband baseline: the session's mean log power is 0
    # The real M1 recording has a beta peak (Cole et al. 2017): 13–30 Hz above 60–100 Hz.
    spec = rows["x"].mean(axis=(0, 1, 3))
    assert spec[(freqs >= 13) & (freqs <= 30)].mean() > spec[(freqs >= 60) & (freqs <= 100)].mean()
    assert open_shard_set(out).spec == SpectrogramSpec(2, len(freqs), 7)


def _sessions(folder: Path, n_animals: int, sessions: int, trials: list[int]) -> None:
    rng = np.random.default_rng(1)
    k = 0
    for a in range(n_animals):
        for s in range(sessions):
            n = trials[k % len(trials)]
            k += 1
            t = rng.standard_normal((n, 200))
            np.savez(folder / f"a{a}_s{s}.npz", trials=t, sfreq=200.0, label=a % 2, animal=f"a{a}")


@pytest.mark.parametrize("split_by", ["animal", "session"])
def test_sequences_never_mix_sessions_and_splits_are_group_disjoint(tmp_path: Path, split_by: str) -> None:
    src = tmp_path / "in"
    src.mkdir()
    _sessions(src, n_animals=6, sessions=2, trials=[7, 9, 4, 12])
    out = tmp_path / "out"
    m = prepare_lfp(src, out, LFPConfig(n_trials=3, nperseg=64, fmax=80, split_by=split_by))
    rows = read_rows(out)
    n_seq = {7: 2, 9: 3, 4: 1, 12: 4}
    expected = {f"a{a}_s{s}": n_seq[[7, 9, 4, 12][(2 * a + s) % 4]] for a in range(6) for s in range(2)}
    got: dict[str, list[int]] = {}
    groups: dict[str, set[str]] = {}
    for split, r in rows.items():
        for session, animal, first in zip(r["session"], r["animal"], r["first_trial"], strict=True):
            got.setdefault(session, []).append(int(first))
            assert session.startswith(f"{animal}_")
            groups.setdefault(split, set()).add(animal if split_by == "animal" else session)
    assert {s: len(v) for s, v in got.items()} == expected
    assert all(sorted(v) == list(range(0, 3 * len(v), 3)) for v in got.values())  # consecutive, in order
    assert set(rows) == set(SPLITS)
    assert not (groups["train"] & groups["val"]) and not (groups["train"] & groups["test"]) \
        and not (groups["val"] & groups["test"])
    assert m["split"]["by"] == split_by
    if split_by == "animal":  # both sessions of an animal land in one split
        sessions_split = {s: sp for sp, r in rows.items() for s in r["session"]}
        assert all(sessions_split[f"a{a}_s0"] == sessions_split[f"a{a}_s1"] for a in range(6))


def test_sequence_of_one_session_is_its_trials_in_order(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        np.savez(src / f"s{i}.npz", trials=rng.standard_normal((6, 128)), sfreq=128.0, label=0, animal=f"m{i}")
    out = tmp_path / "out"
    prepare_lfp(src, out, LFPConfig(n_trials=3, nperseg=64, fmax=60, baseline="none"))
    from neuroray.datasets.spectrograms.lfp import read_session, session_spectrograms

    for r in read_rows(out).values():
        for x, session, first in zip(r["x"], r["session"], r["first_trial"], strict=True):
            full, _, _ = session_spectrograms(read_session(src / f"{session}.npz"),
                                              LFPConfig(n_trials=3, nperseg=64, fmax=60, baseline="none"))
            assert np.allclose(x, full[first:first + 3])


def test_mel_filterbank_peaks_and_partition_of_unity() -> None:
    assert np.isclose(hz_to_mel(1000.0), 1000.0, atol=0.5)  # HTK: 1000 Hz ≈ 1000 mel
    assert np.allclose(mel_to_hz(hz_to_mel(np.array([0.0, 440.0, 3999.0]))), [0.0, 440.0, 3999.0])
    freqs = np.linspace(0, 4000, 4001)  # 1 Hz grid
    fb = mel_filterbank(freqs, n_mels=20, fmin=0.0, fmax=4000.0)
    centers = mel_centers(20, 0.0, 4000.0)
    assert fb.shape == (20, len(freqs)) and fb.min() >= 0 and fb.max() <= 1 + 1e-12
    assert np.allclose(freqs[fb.argmax(axis=1)], centers[1:-1], atol=1.0)  # each peaks at its centre
    assert np.allclose(fb.max(axis=1), 1.0, atol=0.01)
    inside = (freqs >= centers[1]) & (freqs <= centers[-2])
    assert np.allclose(fb[:, inside].sum(axis=0), 1.0)
    assert np.all(fb[:, freqs >= centers[-1]] == 0) and np.all(np.diff(centers) > 0)
    assert np.all(np.diff(np.diff(hz_to_mel(centers))) < 1e-9)  # equally spaced in mel
    logmel = np.random.default_rng(0).standard_normal((3, 20, 5))
    c = mfcc(logmel, 13, axis=1)
    assert c.shape == (3, 13, 5)
    assert np.allclose(c[:, 0], logmel.sum(axis=1) / np.sqrt(20), atol=1e-5)  # DC term of the ortho DCT-II


def test_synthetic_lfp_knockouts_have_more_gamma(tmp_path: Path) -> None:
    out = tmp_path / "lfp"
    assert main(["prepare", "spectrograms", "--synthetic-lfp", "--out", str(out)]) == 0
    m = json.loads((out / "manifest.json").read_text())
    freqs = np.array(m["spectrogram"]["freqs_hz"])
    gamma = (freqs >= GAMMA_HZ[0]) & (freqs <= GAMMA_HZ[1])
    rows = read_rows(out)
    x = np.concatenate([r["x"] for r in rows.values()])
    label = np.concatenate([r["label"] for r in rows.values()])
    g = x[:, :, gamma, :].mean(axis=(1, 2, 3))
    assert set(label) == {0, 1}
    assert g[label == 1].min() > g[label == 0].max()  # planted: every knock-out sequence above every wild type
    assert (tmp_path / "lfp-inputs").is_dir() and len(m["sources"]) == 12


def test_synthetic_iq_position_in_receiver_power(tmp_path: Path) -> None:
    src = tmp_path / "iq-in"
    write_synthetic_iq(src, n_recordings=24)
    out = tmp_path / "iq"
    m = prepare_iq(src, out, IQConfig(n_mels=16))
    assert m["spec"] == {"n_trials": 4, "n_freqs": 16, "n_frames": 31}
    assert m["columns"]["x"]["shape"] == [4, 16, 31]
    rows = read_rows(out)
    x = np.concatenate([r["x"] for r in rows.values()])
    px = np.concatenate([r["pos_x"] for r in rows.values()])
    # Receivers 1 and 3 sit at x = 1: their extra power over receivers 0 and 2 grows with pos_x.
    power = x.max(axis=(2, 3))
    diff = power[:, [1, 3]].mean(axis=1) - power[:, [0, 2]].mean(axis=1)
    assert np.corrcoef(diff, px)[0, 1] > 0.8
    m2 = prepare_iq(src, tmp_path / "mfcc", IQConfig(n_mels=16, n_mfcc=8))
    assert m2["spec"]["n_freqs"] == 8 and m2["preprocessing"][-1]["step"] == "mfcc"


def _bad_npz(folder: Path) -> None:
    folder.mkdir()
    np.savez(folder / "x.npz", trials=np.zeros((4, 100)))  # no sfreq/label/animal


@pytest.mark.parametrize("make, extra, needle", [
    (lambda d: None, [], "not a folder"),
    (lambda d: d.mkdir(), [], "no .npz, .npy or .parquet files"),
    (_bad_npz, [], "no usable session"),
    (lambda d: shutil.copytree(REAL, d), ["--nperseg", "4096"], "shorter than --nperseg"),
    (lambda d: shutil.copytree(REAL, d), ["--fmin", "50", "--fmax", "10"], "--fmin"),
    (lambda d: shutil.copytree(REAL, d), ["--n-trials", "0"], "--n-trials"),
])
def test_bad_lfp_input_exits_2_writing_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               make: Callable[[Path], object], extra: list[str],
                                               needle: str) -> None:
    src = tmp_path / "in"
    make(src)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["prepare", "spectrograms", "--lfp", str(src), "--out", str(tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_bad_iq_input_is_skipped_with_reason(tmp_path: Path) -> None:
    src = tmp_path / "iq-in"
    write_synthetic_iq(src, n_recordings=6)
    np.savez(src / "zz_real.npz", iq=np.zeros((4, 2048)), sfreq=8000.0, pos_x=0.5, pos_y=0.5)
    m = prepare_iq(src, tmp_path / "out", IQConfig(n_mels=8))
    assert [s["path"].endswith("zz_real.npz") and "complex" in s["reason"] for s in m["skipped"]] == [True]
    assert sum(m["rows"].values()) == 6


def test_synthetic_lfp_generator_layout(tmp_path: Path) -> None:
    info = write_synthetic_lfp(tmp_path / "s", n_animals=4, trials_per_session=3)
    assert info["sessions"] == 4
    with np.load(tmp_path / "s" / "animal01_s0.npz") as z:
        assert z["trials"].shape == (3, 1000) and int(z["label"]) == 1 and str(z["animal"]) == "animal01"


def test_session_array_is_an_input_error_naming_the_file(tmp_path: Path) -> None:
    two = np.array(["s0", "s1"])  # a session field must be ONE id
    np.savez(tmp_path / "lfp.npz", trials=np.zeros((4, 100)), sfreq=100.0, label=1, animal="m1", session=two)
    np.savez(tmp_path / "iq.npz", iq=np.zeros((2, 256), dtype=complex), sfreq=1000.0, pos_x=0.1, pos_y=0.2,
             session=two)
    for path, read in ((tmp_path / "lfp.npz", read_session), (tmp_path / "iq.npz", read_recording)):
        with pytest.raises(InputError) as info:
            read(path)
        assert str(info.value) == f"{path}: session must be one str; got array(['s0', 's1'], dtype='<U2')"
