"""Unclear prepare messages (reliability issue D13): every flag checked up front, skipped files named, nothing
left behind on a refusal."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path


def test_unknown_subjects_are_named_with_those_present(hbn_tree: Path, tmp_path: Path,
                                                        expect_exit2: Callable[..., str]) -> None:
    line = expect_exit2(["prepare", "eeg", "--bids", str(hbn_tree), "--out", str(tmp_path / "c1"), "--subjects",
                         "NDARXXXX", "--quiet"], "--subjects: NDARXXXX not in --bids", "subjects there: ")
    assert "sub-" not in line.split("subjects there: ")[1].split(",")[0]
    assert not (tmp_path / "c1").exists()


def _three_subjects(hbn_tree: Path, tree: Path) -> tuple[Path, list[Path]]:
    """A copy of the session's HBN tree cut to three subjects (the fewest a split takes)."""
    tree.mkdir()
    shutil.copy(hbn_tree / "participants.tsv", tree)
    subjects = sorted(p for p in hbn_tree.glob("sub-*") if p.is_dir())[:3]
    for sub in subjects:
        shutil.copytree(sub, tree / sub.name)
    return tree, subjects


def test_too_few_subjects_after_skips_names_the_skipped_files(ray_session: None, hbn_tree: Path, tmp_path: Path,
                                                               expect_exit2: Callable[..., str]) -> None:
    tree, subjects = _three_subjects(hbn_tree, tmp_path / "bids")
    bad = next((tree / subjects[0].name).rglob("*_eeg.set"))
    bad.write_bytes(b"not an EEGLAB file")
    expect_exit2(["prepare", "eeg", "--bids", str(tree), "--out", str(tmp_path / "c1"), "--quiet"],
                 "need at least 3 distinct subjects", "recording(s) skipped", bad.name)
    assert not (tmp_path / "c1").exists()


def test_a_fifo_or_folder_in_place_of_a_recording_is_skipped_by_name(ray_session: None, hbn_tree: Path,
                                                                     tmp_path: Path,
                                                                     expect_exit2: Callable[..., str]) -> None:
    """A named pipe would block MNE's reader forever; it is named (as is a folder) instead of read."""
    import os

    tree, subjects = _three_subjects(hbn_tree, tmp_path / "bids")
    fifo = next((tree / subjects[0].name).rglob("*_eeg.set"))
    fifo.unlink()
    os.mkfifo(fifo)
    folder = next((tree / subjects[1].name).rglob("*_eeg.set"))
    folder.unlink()
    folder.mkdir()
    line = expect_exit2(["prepare", "eeg", "--bids", str(tree), "--out", str(tmp_path / "c1"), "--quiet"],
                        "recording(s) skipped", fifo.name)
    assert folder.name in line and "not a regular file" in line
    assert not (tmp_path / "c1").exists()


def test_spectrogram_flags_are_checked_before_inputs_are_written(tmp_path: Path,
                                                                expect_exit2: Callable[..., str]) -> None:
    out = tmp_path / "lfp"
    expect_exit2(["prepare", "spectrograms", "--synthetic-lfp", "--nperseg", "0", "--out", str(out)],
                 "--nperseg 0: must be >= 2")
    assert not list(tmp_path.iterdir())
    # a flag that only the data can refute (fmax above the inputs' Nyquist): the inputs it wrote go again
    expect_exit2(["prepare", "spectrograms", "--synthetic-iq", "--fmax", "1e9", "--out", str(out)], "--fmax")
    assert not list(tmp_path.iterdir())
