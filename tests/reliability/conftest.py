"""The reliability catalogue (the README's "What happens when…" table), one test per case:

- test_bad_recordings.py   raw data given to `prepare eeg`: truncated EDF, .set without .fdt, .vhdr without .eeg,
                           NaN/inf samples, flat channels, sfreq below --sfreq, events.tsv missing columns, empty
                           BIDS folder, participants.tsv without the target column, --out not writable, --strict
- test_bad_runs.py         `run`: YAML syntax error, !!python tags, unknown key/trainable, wrong type, bounds
                           low > high, loguniform ≤ 0, unknown distribution, `from:` a missing phase, storage not
                           writable; corrupt/cut/missing shard, manifest checksum or JSON wrong, no shard set,
                           shard set prepared unlike data.prepare, target column missing, val split empty,
                           int step < 1 or fractional, driver_resources naming cpu/gpu/memory (run and validate)
- test_bad_models.py       `bench-model`/`predict`: corrupt or non-object model_card.json beside the model,
                           `--json` into a missing folder (made) or one that cannot be made
- test_interrupted_prepare.py  SIGINT then SIGTERM during a real prepare process, --resume == uninterrupted
- test_run_safety.py       a real run with fake credentials whose trial actor is killed: error row, secret scan,
                           export of a trial without checkpoint, pickled checkpoint, dashboard on 127.0.0.1, job
                           working_dir excludes

Unit-level checks of the same cases stay beside their modules (tests/datasets/eeg/test_readers.py,
tests/datasets/eeg/test_prepare.py incl. SIGKILL, tests/datasets/test_shards.py, tests/search_spaces/).

The bad-input check (``expect_exit2``): exit 2, one `error:` line naming what is wrong, no traceback, and the
output folders absent or byte-identical to before."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from neuroray.cli import main

# Lines a Ray worker prints are forwarded to the driver's stderr, e.g. "(process_recording pid=123) ...";
# they are not the CLI's own output.
_WORKER_LINE = re.compile(r"^(\x1b\[[0-9;]*m)*\((\S+ )?pid=\d+")


def tree_digest(path: Path) -> dict[str, str] | None:
    """Every file under ``path`` with its sha256 (folders as markers); None when ``path`` does not exist."""
    if not path.exists():
        return None
    if path.is_file():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
            for p in sorted(path.rglob("*"))}


ExpectExit2 = Callable[..., str]


@pytest.fixture
def expect_exit2(capsys: pytest.CaptureFixture[str]) -> ExpectExit2:
    """``expect_exit2(argv, *fragments, untouched=[paths])`` → the error line, after checking the contract."""

    def check(argv: Sequence[str], *fragments: str, untouched: Sequence[Path] = ()) -> str:
        before = {p: tree_digest(p) for p in untouched}
        capsys.readouterr()
        rc = main(list(argv))
        captured = capsys.readouterr()
        err = captured.err
        own = [line for line in err.splitlines() if line.strip() and not _WORKER_LINE.match(line)]
        assert rc == 2, f"exit {rc}\nstdout: {captured.out[-2000:]}\nstderr: {err[-3000:]}"
        assert "Traceback" not in err and "Traceback" not in captured.out, err
        assert len(own) == 1 and own[0].startswith("error: "), err
        for fragment in fragments:
            assert fragment in own[0], f"{fragment!r} not in {own[0]!r}"
        for path in untouched:
            assert tree_digest(path) == before[path], f"{path} changed (half-written output?)"
        return own[0]

    return check

