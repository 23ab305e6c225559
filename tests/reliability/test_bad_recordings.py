"""Bad raw data given to `neuroray prepare eeg`: each case exits 2 with one line naming the file and the
problem, and leaves neither the shard set nor its work folder behind.

Corrupt variants are made in tmp_path from the real recordings in tests/data/eeg (EEGLAB, EDF, BrainVision)
and from a 3-subject synthetic HBN tree (real R1 sidecars).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neuroray.cli import main
from neuroray.datasets.eeg.synthetic_hbn import write_synthetic_hbn
from neuroray.datasets.shards import open_shard_set

DATA = Path(__file__).resolve().parents[1] / "data" / "eeg"
REC = "sub-bad_task-rest_eeg"  # the one recording of each broken tree


@pytest.fixture(scope="module")
def hbn3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bids") / "hbn3"
    write_synthetic_hbn(out, n_subjects=3, sfreq=100, runs=1)
    return out


def _outputs(tmp_path: Path) -> tuple[Path, Path]:
    out = tmp_path / "shards"
    return out, tmp_path / f".{out.name}.work"


def _one_recording(root: Path, files: dict[str, bytes]) -> Path:
    """A BIDS tree whose only recording is sub-bad's ``files`` (suffix → content)."""
    eeg = root / "sub-bad" / "eeg"
    eeg.mkdir(parents=True)
    for suffix, content in files.items():
        (eeg / f"{REC}{suffix}").write_bytes(content)
    return root


def _eeglab(fdt: Callable[[bytes], bytes] | None) -> dict[str, bytes]:
    """The real EEGLAB tutorial recording (32 ch, 128 Hz); ``fdt`` rewrites its sample file, None drops it."""
    files = {".set": (DATA / "eeglab/test_raw.set").read_bytes()}
    if fdt is not None:
        files[".fdt"] = fdt((DATA / "eeglab/test_raw.fdt").read_bytes())
    return files


def _with_nans(fdt: bytes) -> bytes:
    nans = np.full(640, np.nan, dtype="<f4").tobytes()  # float32 samples, like the file's own
    mid = len(fdt) // 2 // 4 * 4
    return fdt[:mid] + nans + fdt[mid + len(nans):]


def _truncated_edf() -> dict[str, bytes]:
    edf = (DATA / "edf/chtypes_edf.edf").read_bytes()
    return {".edf": edf[: len(edf) // 2]}


def _brainvision_without_eeg() -> dict[str, bytes]:
    return {".vhdr": (DATA / "brainvision/test_NO.vhdr").read_bytes(),
            ".vmrk": (DATA / "brainvision/test_NO.vmrk").read_bytes()}


# (id, recording files, extra CLI options, fragments the error line must contain)
RECORDINGS = [
    ("truncated-edf", _truncated_edf, [], [f"{REC}.edf: truncated: ", "the header promises"]),
    ("set-without-fdt", lambda: _eeglab(None), [], [f"{REC}.set: its data file test_raw.fdt or {REC}.fdt is missing"]),
    ("nan-samples", lambda: _eeglab(_with_nans), [], [f"{REC}.set: ", "NaN/inf samples (channels "]),
    ("flat-channels", lambda: _eeglab(lambda fdt: bytes(len(fdt))), [], [f"{REC}.set: every EEG channel is flat"]),
    ("sfreq-below-requested", lambda: _eeglab(lambda fdt: fdt), ["--sfreq", "256"],
     [f"{REC}.set: sampling rate 128.0 Hz is below the requested 256.0 Hz", "lower --sfreq"]),
    ("brainvision-without-eeg", _brainvision_without_eeg, [], [f"{REC}.vhdr: its data file {REC}.eeg is missing"]),
]


@pytest.mark.parametrize(("make", "options", "fragments"), [r[1:] for r in RECORDINGS], ids=[r[0] for r in RECORDINGS])
def test_unusable_recording(make: Callable[[], dict[str, bytes]], options: list[str], fragments: list[str],
                            ray_session: None, tmp_path: Path, expect_exit2: Callable[..., str]) -> None:
    bids = _one_recording(tmp_path / "bids", make())
    out, work = _outputs(tmp_path)
    expect_exit2(["prepare", "eeg", "--bids", str(bids), "--out", str(out), "--target", "pretrain", "--quiet",
                  *options], "no recording produced windows (1 skipped; first: ", *fragments,
                 untouched=[out, work])


def _link_subjects(src: Path, root: Path, n: int | None = None) -> list[Path]:
    """A new BIDS root sharing ``src``'s recordings (symlinked); returns the subject folders."""
    root.mkdir(parents=True)
    subjects = sorted(src.glob("sub-*"))[:n]
    for sub in subjects:
        (root / sub.name).symlink_to(sub, target_is_directory=True)
    return subjects


def test_events_tsv_missing_columns(hbn3: Path, ray_session: None, tmp_path: Path,
                                    expect_exit2: Callable[..., str]) -> None:
    sub = sorted(hbn3.glob("sub-*"))[0]
    eeg = tmp_path / "bids" / sub.name / "eeg"
    eeg.mkdir(parents=True)
    for f in sub.glob("eeg/*"):
        (eeg / f.name).symlink_to(f)
    events = next(eeg.glob("*_events.tsv"))
    events.unlink()
    pd.read_csv(next(sub.glob("eeg/*_events.tsv")), sep="\t").drop(columns=["value"]).to_csv(
        events, sep="\t", index=False)
    out, work = _outputs(tmp_path)
    expect_exit2(["prepare", "eeg", "--bids", str(tmp_path / "bids"), "--out", str(out), "--quiet"],
                 f"{events}: missing column(s) value; columns: onset, duration, sample, event_code, feedback",
                 untouched=[out, work])


def test_empty_bids_folder(tmp_path: Path, expect_exit2: Callable[..., str]) -> None:
    (tmp_path / "bids").mkdir()
    out, work = _outputs(tmp_path)
    expect_exit2(["prepare", "eeg", "--bids", str(tmp_path / "bids"), "--out", str(out), "--quiet"],
                 "no EEG recordings for task(s) contrastChangeDetection (expected sub-*/[ses-*/]eeg/",
                 untouched=[out, work])


def test_participants_without_the_target_column(hbn3: Path, tmp_path: Path,
                                                expect_exit2: Callable[..., str]) -> None:
    bids = tmp_path / "bids"
    _link_subjects(hbn3, bids)
    pd.read_csv(hbn3 / "participants.tsv", sep="\t", dtype=str).drop(columns=["externalizing"]).to_csv(
        bids / "participants.tsv", sep="\t", index=False)
    out, work = _outputs(tmp_path)
    expect_exit2(["prepare", "eeg", "--bids", str(bids), "--out", str(out), "--target", "challenge2", "--quiet"],
                 f"{bids / 'participants.tsv'}: missing column(s) externalizing the target needs; columns: "
                 "participant_id", untouched=[out, work])


def test_out_not_writable(hbn3: Path, tmp_path: Path, expect_exit2: Callable[..., str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    expect_exit2(["prepare", "eeg", "--bids", str(hbn3), "--out", str(blocker / "shards"), "--quiet"],
                 f"--out {blocker / 'shards'}: cannot write its work folder", untouched=[blocker])


def test_strict_stops_at_a_bad_recording_and_keeps_finished_ones(hbn3: Path, ray_session: None, tmp_path: Path,
                                                                  expect_exit2: Callable[..., str],
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """--strict: exit 2 naming the file; finished recordings stay resumable, the bad one is read again."""
    bids = tmp_path / "bids"
    good = _link_subjects(hbn3, bids)  # a split needs 3 subjects
    _one_recording(bids, _truncated_edf())
    out, work = _outputs(tmp_path)
    args = ["prepare", "eeg", "--bids", str(bids), "--out", str(out), "--target", "pretrain", "--quiet"]
    expect_exit2([*args, "--strict"], f"error: --strict: {bids}/sub-bad/eeg/{REC}.edf: truncated: ")
    assert not out.exists()
    kept = sorted(p.name for p in work.iterdir())
    assert not [n for n in kept if n.startswith(".")], kept  # no temp file of a half-written result
    assert not [n for n in kept if n.startswith("sub-bad")], kept  # the failure is not remembered
    finished = [n.removesuffix(".json") for n in kept if n.endswith(".json") and n != "config.json"]
    assert finished and all(f"{key}.parquet" in kept for key in finished)

    shutil.rmtree(bids / "sub-bad")  # the user removes (or fixes) the file, then continues
    assert main([*args, "--strict", "--resume"]) == 0
    assert f"{len(finished)} resumed" in capsys.readouterr().out
    manifest = open_shard_set(out).manifest
    assert manifest["skipped"] == [] and len(manifest["sources"]) == 2 * len(good)  # each .set and its events
    assert not work.exists()
