"""LFP Parquet input (real ECoG trace through Parquet; several sessions per file; bad columns) and train-only
statistics of spectrogram shard sets (val/test rows never enter them)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from shard_rows import read_rows

from neuroray.cli import main
from neuroray.datasets.spectrograms.common import InputError
from neuroray.datasets.spectrograms.iq import IQConfig, prepare_iq
from neuroray.datasets.spectrograms.lfp import LFPConfig, prepare_lfp
from neuroray.datasets.spectrograms.lfp_parquet import read_parquet_sessions
from neuroray.datasets.spectrograms.synthetic import write_synthetic_iq
from neuroray.datasets.splits import SPLITS

REAL = Path(__file__).resolve().parents[2] / "data" / "lfp"


def _write_trials(path: Path, trials: np.ndarray, order: np.ndarray, fixed: bool = False,
                  **constant: object) -> None:
    """One row per trial, rows in ``order`` (with a ``trial`` column saying where each belongs)."""
    n, length = trials.shape
    rows = trials[order]
    if fixed:
        signal = pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), length)
    else:
        signal = pa.array(list(rows), type=pa.list_(pa.float64()))
    cols: dict[str, object] = {"signal": signal, "trial": pa.array(order, type=pa.int32())}
    for name, value in constant.items():
        cols[name] = pa.array(value if isinstance(value, list) else [value] * n)
    pq.write_table(pa.table(cols), path)


def test_real_ecog_trace_through_parquet_equals_the_npy_route(tmp_path: Path) -> None:
    meta = json.loads((REAL / "sample_data_1.json").read_text())
    trace = np.load(REAL / "sample_data_1.npy")
    n = int(meta["trial_s"] * meta["sfreq"])
    trials = trace[: len(trace) // n * n].reshape(-1, n)  # the sidecar's cut: ten 1 s trials
    src = tmp_path / "pq"
    src.mkdir()
    order = np.random.default_rng(0).permutation(len(trials))  # rows shuffled; `trial` restores the order
    _write_trials(src / "sample_data_1.parquet", trials, order, sfreq=meta["sfreq"], label=meta["label"],
                  animal=meta["animal"])
    opts = ["--n-trials", "2", "--nperseg", "250", "--fmax", "120"]
    assert main(["prepare", "spectrograms", "--lfp", str(REAL), "--out", str(tmp_path / "npy"), *opts]) == 0
    assert main(["prepare", "spectrograms", "--lfp", str(src), "--out", str(tmp_path / "parquet"), *opts]) == 0
    a, b = read_rows(tmp_path / "npy")["train"], read_rows(tmp_path / "parquet")["train"]
    np.testing.assert_array_equal(a["x"], b["x"])
    for col in ("session", "animal", "label", "first_trial"):
        assert list(a[col]) == list(b[col]), col
    m = json.loads((tmp_path / "parquet" / "manifest.json").read_text())
    assert [s["path"].rsplit("/", 1)[-1] for s in m["sources"]] == ["sample_data_1.parquet"]


def test_parquet_file_with_several_sessions_and_fixed_size_lists(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    npz, pqt = tmp_path / "npz", tmp_path / "pq"
    npz.mkdir()
    pqt.mkdir()
    sessions = {f"a{a}_s0": (rng.standard_normal((6, 128)), a % 2, f"a{a}") for a in range(4)}
    for name, (trials, label, animal) in sessions.items():
        np.savez(npz / f"{name}.npz", trials=trials, sfreq=128.0, label=label, animal=animal)
    # a0, a1 in one file (list<double>, rows interleaved), a2, a3 in another (fixed_size_list<double>)
    for file, names, fixed in (("first", ["a0_s0", "a1_s0"], False), ("second", ["a2_s0", "a3_s0"], True)):
        tables = []
        for name in names:
            trials, label, animal = sessions[name]
            order = rng.permutation(6)
            _write_trials(tmp_path / "one.parquet", trials, order, fixed=fixed, sfreq=128.0, label=label,
                          animal=animal, session=name)
            tables.append(pq.read_table(tmp_path / "one.parquet"))
        pq.write_table(pa.concat_tables(tables).take(pa.array(rng.permutation(12))), pqt / f"{file}.parquet")
    cfg = LFPConfig(n_trials=3, nperseg=64, fmax=60, split_by="session")
    prepare_lfp(npz, tmp_path / "out-npz", cfg)
    m = prepare_lfp(pqt, tmp_path / "out-pq", cfg)
    assert m["rows"] == {"train": 4, "val": 2, "test": 2} and len(m["sources"]) == 2
    a, b = read_rows(tmp_path / "out-npz"), read_rows(tmp_path / "out-pq")
    for split in SPLITS:  # same rows; the order of sessions inside a split may differ
        ka = sorted(zip(a[split]["session"], a[split]["first_trial"], range(99), strict=False))
        kb = sorted(zip(b[split]["session"], b[split]["first_trial"], range(99), strict=False))
        assert [k[:2] for k in ka] == [k[:2] for k in kb]
        np.testing.assert_array_equal(a[split]["x"][[k[2] for k in ka]], b[split]["x"][[k[2] for k in kb]])


@pytest.mark.parametrize(("drop", "needle"), [
    ("animal", "missing column(s) animal"),
    ("signal", "missing column(s) signal"),
])
def test_parquet_missing_column_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  drop: str, needle: str) -> None:
    src = tmp_path / "in"
    src.mkdir()
    _write_trials(src / "rec.parquet", np.zeros((4, 100)), np.arange(4), sfreq=100.0, label=1, animal="m1")
    pq.write_table(pq.read_table(src / "rec.parquet").drop_columns([drop]), src / "rec.parquet")
    assert main(["prepare", "spectrograms", "--lfp", str(src), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err
    assert str(src / "rec.parquet") in err[0] and "signal (list of float), sfreq, label, animal" in err[0]
    assert not (tmp_path / "out").exists()


def test_parquet_session_values_must_be_constant(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    _write_trials(src / "rec.parquet", np.zeros((4, 100)), np.arange(4), sfreq=100.0, label=[0, 0, 1, 1],
                  animal="m1")
    _write_trials(src / "ok.parquet", np.random.default_rng(0).standard_normal((4, 100)), np.arange(4),
                  sfreq=100.0, label=0, animal="m2")
    m = prepare_lfp(src, tmp_path / "out", LFPConfig(n_trials=2, nperseg=50, fmax=40))
    assert len(m["skipped"]) == 1 and "column label must hold one value per session" in m["skipped"][0]["reason"]


# --- train-only statistics -------------------------------------------------------------------------------------


def _lfp_inputs(folder: Path, boost: dict[str, float]) -> None:
    """Six animals; the sessions named in ``boost`` get scaled trials (only they change between two calls)."""
    folder.mkdir()
    rng = np.random.default_rng(7)
    for a in range(6):
        trials = rng.standard_normal((6, 128)) * boost.get(f"a{a}", 1.0)
        np.savez(folder / f"a{a}.npz", trials=trials, sfreq=128.0, label=a % 2, animal=f"a{a}")


def test_lfp_stats_come_from_train_animals_only(tmp_path: Path) -> None:
    cfg = LFPConfig(n_trials=2, nperseg=64, fmax=60, baseline="none")
    _lfp_inputs(tmp_path / "in1", {})
    m1 = prepare_lfp(tmp_path / "in1", tmp_path / "out1", cfg)
    rows = read_rows(tmp_path / "out1")
    held_out = {str(g) for s in ("val", "test") for g in rows[s]["animal"]}
    _lfp_inputs(tmp_path / "in2", dict.fromkeys(held_out, 100.0))  # val/test animals 100x louder
    m2 = prepare_lfp(tmp_path / "in2", tmp_path / "out2", cfg)
    n1, n2 = m1["normalization"], m2["normalization"]
    assert m1["split"]["groups"] == m2["split"]["groups"]
    assert n1 == n2  # identical: nothing of val/test entered
    # and they are the train rows' statistics, per frequency over rows, trials and frames
    train = rows["train"]["x"].astype(np.float64)
    np.testing.assert_allclose(n1["freq_mean"], train.mean(axis=(0, 1, 3)), rtol=1e-6)
    np.testing.assert_allclose(n1["freq_std"], train.std(axis=(0, 1, 3)), rtol=1e-6)
    assert n1["from"] == "train" and n1["applied"] is False and len(n1["freq_mean"]) == m1["spec"]["n_freqs"]
    everything = np.concatenate([r["x"] for r in rows.values()]).astype(np.float64)
    assert not np.allclose(n1["freq_mean"], everything.mean(axis=(0, 1, 3)), rtol=1e-6)
    assert read_rows(tmp_path / "out2")["val"]["x"].mean() > rows["val"]["x"].mean() + 3  # 100x = +4 Bels
    assert m1["target_stats"] == {}  # integer labels are classes, not standardized


def test_iq_position_target_stats_from_train_only(tmp_path: Path) -> None:
    src = tmp_path / "iq"
    write_synthetic_iq(src, n_recordings=9)
    cfg = IQConfig(n_mels=8)
    m1 = prepare_iq(src, tmp_path / "out1", cfg)
    rows = read_rows(tmp_path / "out1")
    train_pos = rows["train"]["pos_x"].astype(np.float64)
    assert m1["target_stats"]["pos_x"] == {"mean": pytest.approx(train_pos.mean()),
                                           "std": pytest.approx(train_pos.std()), "count": len(train_pos)}
    # move every val/test source and make it louder: the stats do not change
    for split in ("val", "test"):
        for rec in rows[split]["recording"]:
            with np.load(src / f"{rec}.npz") as z:
                d = dict(z)
            np.savez(src / f"{rec}.npz", **{**d, "iq": d["iq"] * 50, "pos_x": d["pos_x"] + 10.0,
                                             "pos_y": d["pos_y"] - 10.0})
    m2 = prepare_iq(src, tmp_path / "out2", cfg)
    assert m2["target_stats"] == m1["target_stats"] and m2["normalization"] == m1["normalization"]
    assert set(m1["target_stats"]) == {"pos_x", "pos_y"}
    moved = read_rows(tmp_path / "out2")
    assert moved["val"]["pos_x"][0] == pytest.approx(rows["val"]["pos_x"][0] + 10.0)


def test_parquet_corrupt_page_and_uncastable_session_are_input_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in"
    src.mkdir()
    trials = np.random.default_rng(4).standard_normal((20, 500))
    _write_trials(src / "rec.parquet", trials, np.arange(20), sfreq=100.0, label=1, animal="m1")
    data = bytearray((src / "rec.parquet").read_bytes())
    start = pq.ParquetFile(src / "rec.parquet").metadata.row_group(0).column(0).data_page_offset
    data[start:start + 64] = b"\xab" * 64  # a page header: the footer, hence read_schema, stays intact
    (src / "rec.parquet").write_bytes(bytes(data))
    assert pq.read_schema(src / "rec.parquet").names[0] == "signal"
    assert main(["prepare", "spectrograms", "--lfp", str(src), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    assert f"first: {src / 'rec.parquet'}: unreadable as Parquet (OSError" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    lists = tmp_path / "lists.parquet"
    _write_trials(lists, trials[:4], np.arange(4), sfreq=100.0, label=1, animal="m1", session=[[1, 2]] * 4)
    with pytest.raises(InputError) as info:
        read_parquet_sessions(lists)
    message = str(info.value)  # the list's field name (item/element) depends on the Parquet round trip
    assert message.startswith(f"{lists}: column session is list<") and "\n" not in message
    assert message.endswith("int64>; it must hold one str (or int) session id per row")
