"""`neuroray prepare eeg` on a synthetic HBN tree (real R1 events): targets, splits, manifest, skips, resume."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from prepare_runs import assert_same_shard_sets, finished, start_prepare, wait_until_finished

from neuroray.cli import main
from neuroray.datasets.shards import open_shard_set, sha256_file, tensor_column_to_numpy

DATA = Path(__file__).resolve().parents[2] / "data" / "eeg"


def _all_rows(root: Path) -> pd.DataFrame:
    s = open_shard_set(root)
    frames = []
    for split in ("train", "val", "test"):
        df = s.read_split(split).drop_columns(["x"]).to_pandas()
        df["split"] = split
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _independent_rts(bids: Path) -> pd.DataFrame:
    """Response times computed from the events files without neuroray, by the challenge's reference: a trial
    is [its contrastTrial_start, the next one); for its first target, the first button press at or after it
    and before the trial's end."""
    out = []
    for path in sorted(bids.glob("sub-*/eeg/*_task-contrastChangeDetection_*_events.tsv")):
        ev = pd.read_csv(path, sep="\t")
        subject = path.name.split("_")[0][4:]
        onset, value = ev["onset"].to_numpy(float), ev["value"].astype(str).to_numpy()
        is_target = np.isin(value, ["left_target", "right_target"])
        is_press = np.char.endswith(value.astype(str), "_buttonPress")
        starts = onset[value == "contrastTrial_start"]
        for i in np.flatnonzero(is_target):
            if not (starts <= onset[i]).any():
                continue  # before every trial
            t0 = starts[starts <= onset[i]].max()
            later = starts[starts > onset[i]]
            end = later.min() if len(later) else np.inf
            if (is_target[:i] & (onset[:i] >= t0)).any():
                continue  # not the trial's first target
            presses = onset[is_press & (onset >= onset[i]) & (onset < end)]
            if len(presses):
                out.append((subject, round(onset[i], 3), presses.min() - onset[i]))
    return pd.DataFrame(out, columns=["subject", "target_onset_s", "rt"])


def test_challenge1_rt_equals_an_independent_computation(c1_shards: Path, hbn_tree: Path, n_subjects: int) -> None:
    rows = _all_rows(c1_shards)
    mine = rows.assign(target_onset_s=rows["target_onset_s"].astype(float).round(3))
    expected = _independent_rts(hbn_tree)
    assert len(expected) > 20 * n_subjects
    merged = expected.merge(mine, on=["subject", "target_onset_s"], how="outer", indicator=True,
                            suffixes=("_expected", "_shards"))
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"].head()
    np.testing.assert_allclose(merged["rt_shards"], merged["rt_expected"], atol=1e-5)
    # correct comes from the press's feedback; the window starts 0.5 s after the target
    assert set(rows["correct"].dropna().unique()) <= {True, False}
    np.testing.assert_allclose(rows["onset_s"], rows["target_onset_s"] + 0.5, atol=0.011)


def test_splits_are_subject_disjoint_and_manifest_is_complete(c1_shards: Path, hbn_tree: Path,
                                                              n_subjects: int) -> None:
    s = open_shard_set(c1_shards)
    m = s.manifest
    rows = _all_rows(c1_shards)
    by_split = {sp: set(rows.loc[rows["split"] == sp, "subject"]) for sp in ("train", "val", "test")}
    assert all(by_split.values())
    assert not (by_split["train"] & by_split["val"] or by_split["train"] & by_split["test"]
                or by_split["val"] & by_split["test"])
    assert set().union(*by_split.values()) == {p.name[4:] for p in hbn_tree.glob("sub-*")}
    assert {k: set(v) for k, v in m["splits"]["subjects"].items()} == by_split
    assert s.spec.n_chans == 129 and s.spec.n_times == 200 and s.spec.sfreq == 100.0
    assert s.spec.ch_names[-1] == "Cz"
    assert [st["step"] for st in m["preprocessing"]] == ["pick", "filter", "resample", "window", "zscore"]
    assert m["preprocessing"][1] == {"step": "filter", "l_freq": 0.5, "h_freq": 40.0}
    assert m["preprocessing"][3] == {"step": "window", "window_s": 2.0, "stride_s": None, "shift_s": 0.5}
    assert m["normalization"]["from"] == "train" and len(m["normalization"]["mean"]) == 129
    # Stats are the train split's own: train is exactly standardized, val/test only roughly.
    x_train = tensor_column_to_numpy(s.read_split("train", ["x"]).column("x"))
    live = np.arange(128)  # Cz is the flat reference
    np.testing.assert_allclose(x_train[:, live].mean(axis=(0, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(x_train[:, live].std(axis=(0, 2)), 1.0, atol=1e-3)
    x_val = tensor_column_to_numpy(s.read_split("val", ["x"]).column("x"))
    assert np.abs(x_val[:, live].std(axis=(0, 2)) - 1.0).max() > 1e-3
    assert len(m["sources"]) == 2 * n_subjects  # each .set and its events.tsv
    for src in m["sources"][:4]:
        assert sha256_file(Path(src["path"])) == src["sha256"]
    assert m["skipped"] == [] and m["target"] == {"kind": "challenge1", "column": "rt"}


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 subjects with a CCD run and a movie; one subject's externalizing set to n/a."""
    out = tmp_path_factory.mktemp("bids") / "small"
    assert main(["prepare", "eeg", "--synthetic-hbn", "4", "--synthetic-sfreq", "100", "--synthetic-runs", "1",
                 "--synthetic-movie", "--out", str(out)]) == 0
    parts = pd.read_csv(out / "participants.tsv", sep="\t", dtype=str, keep_default_na=False)
    parts.loc[0, "externalizing"] = "n/a"
    parts.to_csv(out / "participants.tsv", sep="\t", index=False)
    # One recording's channels.tsv marks E5 bad (a BIDS sidecar the prepare must honour)
    ccd = sorted(out.glob("sub-*/eeg/*_task-contrastChangeDetection_*eeg.set"))[0]
    (ccd.parent / (ccd.name.rsplit("_", 1)[0] + "_channels.tsv")).write_text(
        "name\ttype\tunits\tstatus\nE4\tEEG\tuV\tgood\nE5\tEEG\tuV\tbad\n")
    return out


def test_challenge2_targets_from_participants_with_nulls(small_tree: Path, ray_session: None, tmp_path: Path) -> None:
    out = tmp_path / "c2"
    assert main(["prepare", "eeg", "--bids", str(small_tree), "--out", str(out), "--target", "challenge2",
                 "--quiet"]) == 0
    s = open_shard_set(out)
    assert s.spec.n_times == 400  # 4 s at 100 Hz
    bad = s.manifest["bad_channels"]
    assert len(bad) == 1 and next(iter(bad.values()))["channels"] == ["E5"]
    assert next(iter(bad.values()))["how"].startswith("interpolated")  # the synthetic tree has GSN positions
    assert any(src["path"].endswith("_channels.tsv") for src in s.manifest["sources"])
    rows = _all_rows(out)
    parts = pd.read_csv(small_tree / "participants.tsv", sep="\t", na_values=["n/a"], keep_default_na=False)
    parts["subject"] = parts["participant_id"].str[4:]
    merged = rows.merge(parts, on="subject", suffixes=("", "_tsv"))
    for col in ("externalizing", "p_factor", "attention", "internalizing", "age"):
        np.testing.assert_allclose(merged[col].astype(float), merged[f"{col}_tsv"].astype(float), rtol=1e-6)
    assert (merged["sex"] == merged["sex_tsv"]).all()
    na_subject = parts.loc[0, "subject"]
    assert rows.loc[rows["subject"] == na_subject, "externalizing"].isna().all()
    table = pq.read_table(s.files(next(sp for sp in ("train", "val", "test")
                                       if na_subject in s.manifest["splits"]["subjects"][sp]))[0])
    assert table.column("externalizing").null_count > 0  # stored as null, not a number
    assert set(rows["task"]) == {"contrastChangeDetection", "DespicableMe"}
    onsets = rows.groupby(["subject", "task"])["onset_s"].apply(lambda o: np.diff(np.sort(o)))
    assert all(np.allclose(d, 2.0) for d in onsets)  # 2 s stride


def test_pretrain_movie_windows_carry_stimulus_time(small_tree: Path, ray_session: None, tmp_path: Path) -> None:
    out = tmp_path / "pre"
    assert main(["prepare", "eeg", "--bids", str(small_tree), "--out", str(out), "--target", "pretrain",
                 "--quiet"]) == 0
    rows = _all_rows(out)
    movie = rows[rows["task"] == "DespicableMe"]
    ccd = rows[rows["task"] == "contrastChangeDetection"]
    assert (movie["stimulus"] == "DespicableMe").all() and ccd["stimulus"].isna().all()
    np.testing.assert_allclose(movie["stimulus_time_s"], movie["onset_s"] - 4.0, atol=1e-5)  # video_start at 4 s
    assert movie.groupby("stimulus_time_s")["subject"].nunique().max() == 4  # same moment, every subject


def _bad_tree(small_tree: Path, root: Path) -> Path:
    """3 readable subjects plus a truncated EDF and a .set whose .fdt is missing."""
    for i, src in enumerate(sorted(small_tree.glob("sub-*/eeg/*_task-DespicableMe_eeg.set"))[:3]):
        d = root / f"sub-ok{i}" / "eeg"
        d.mkdir(parents=True)
        shutil.copyfile(src, d / f"sub-ok{i}_task-rest_eeg.set")
    edf = (DATA / "edf/chtypes_edf.edf").read_bytes()
    (root / "sub-bad1" / "eeg").mkdir(parents=True)
    (root / "sub-bad1/eeg/sub-bad1_task-rest_eeg.edf").write_bytes(edf[: len(edf) // 2])
    (root / "sub-bad2" / "eeg").mkdir(parents=True)
    shutil.copyfile(DATA / "eeglab/test_raw.set", root / "sub-bad2/eeg/sub-bad2_task-rest_eeg.set")
    return root


def test_bad_recordings_are_skipped_or_strict_exits_2(small_tree: Path, ray_session: None, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    bids = _bad_tree(small_tree, tmp_path / "bids")
    out = tmp_path / "pre"
    assert main(["prepare", "eeg", "--bids", str(bids), "--out", str(out), "--target", "pretrain", "--quiet"]) == 0
    skipped = {Path(s["path"]).name: s["reason"] for s in open_shard_set(out).manifest["skipped"]}
    assert set(skipped) == {"sub-bad1_task-rest_eeg.edf", "sub-bad2_task-rest_eeg.set"}
    assert "truncated" in skipped["sub-bad1_task-rest_eeg.edf"]
    assert "test_raw.fdt or sub-bad2_task-rest_eeg.fdt is missing" in skipped["sub-bad2_task-rest_eeg.set"]
    assert set(_all_rows(out)["subject"]) == {"ok0", "ok1", "ok2"}
    capsys.readouterr()

    strict_out = tmp_path / "strict"
    assert main(["prepare", "eeg", "--bids", str(bids), "--out", str(strict_out), "--target", "pretrain",
                 "--quiet", "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --strict: ") and "sub-bad1_task-rest_eeg.edf: truncated" in err[0]
    assert not strict_out.exists()  # nothing half-written


def test_killed_prepare_resumes_to_the_same_rows(hbn_tree: Path, c1_shards: Path, ray_session: None, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str], c1_args: list[str],
                                                 n_subjects: int) -> None:
    out = tmp_path / "c1"
    work = tmp_path / ".c1.work"
    proc = start_prepare(hbn_tree, out, c1_args)
    wait_until_finished(proc, work, 3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    n_done = finished(work)
    assert 3 <= n_done < n_subjects and not out.exists()

    assert main(["prepare", "eeg", "--bids", str(hbn_tree), "--out", str(out), *c1_args]) == 2
    assert "pass --resume to continue it" in capsys.readouterr().err
    assert main(["prepare", "eeg", "--bids", str(hbn_tree), "--out", str(out), *c1_args, "--resume"]) == 0
    assert f"{n_done} resumed" in capsys.readouterr().out.replace(f"{n_subjects - n_done} processed now, ", "")
    assert not work.exists()
    assert_same_shard_sets(out, c1_shards)
