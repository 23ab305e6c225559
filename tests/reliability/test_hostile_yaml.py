"""Experiment files written to hurt (reliability issue D7, D11, D12): refused in a second, before Ray starts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from neuroray.cli import main

BASE = """name: hostile
data: {{shards: {shards}}}
phases:
  - {{name: fit, trainable: eeg_regressor, target: y, epochs: 1, batch_size: 16}}
search: {{num_samples: 1, space: {{lr: "loguniform(1e-3, 1e-2)"}}}}
"""

LAUGHS = """smoke:
  overrides:
    a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
    g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
"""

CASES = [  # (id, text appended to the base file, fragments of the error line)
    ("billion-laughs", LAUGHS, [":9:12:", "YAML aliases (*name) are not allowed"]),
    ("duplicate-arm", "matrix:\n  arm:\n    a: {}\n    a: {phases.fit.epochs: 2}\n",
     [":9: duplicate key 'a' (first at line 8)"]),
    ("duplicate-phases", "phases:\n  - {name: other, trainable: eeg_regressor, target: y, epochs: 1, batch_size: 8}\n",
     [":6: duplicate key 'phases' (first at line 3)"]),
]


@pytest.mark.parametrize(("text", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_yaml_is_refused(text: str, fragments: list[str], small_eeg: Path, tmp_path: Path,
                                 expect_exit2: Callable[..., str]) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(BASE.format(shards=small_eeg) + text)
    runs = tmp_path / "runs"
    for argv in (["validate", str(exp)], ["run", str(exp), "--storage", str(runs)]):
        expect_exit2(argv, str(exp), *fragments)
    assert not runs.exists()


def test_the_command_lines_storage_wins_over_the_files(small_eeg: Path, tmp_path: Path,
                                                       expect_exit2: Callable[..., str]) -> None:
    """D12: `storage:` in the file is the default; `--storage` on the command line wins."""
    exp = tmp_path / "exp.yaml"
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder\n")
    exp.write_text(BASE.format(shards=small_eeg) + f"storage: {tmp_path / 'from-file'}\n")
    # the flag names an unwritable place: the error names the flag's value, not the file's
    expect_exit2(["run", str(exp), "--storage", str(blocked / "runs")], f"--storage {blocked / 'runs'}")
    assert not (tmp_path / "from-file").exists()
    exp.write_text(BASE.format(shards=small_eeg) + f"storage: {blocked / 'runs'}\n")
    expect_exit2(["run", str(exp)], f"--storage {blocked / 'runs'}")  # without the flag the file's key counts
    assert main(["validate", str(exp)]) == 0
