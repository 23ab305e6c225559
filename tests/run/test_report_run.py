"""`neuroray report`: run folders → report.csv/.md/.html + PNGs; HTML numbers == CSV numbers; Chromium renders it.

The first tests write run folders with the production ``write_reports`` from hand-built trial tables (known
answers, no Ray needed). The last one is the end-to-end: a real demo --smoke run on the session's Ray, then
`neuroray report` on its folder, then headless Chromium on report.html.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neuroray.cli import main
from neuroray.reports import folder as report

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")


class _Tables(HTMLParser):
    """Text of every <table id=…>'s cells, row by row (stdlib only: no lxml/bs4 dependency)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._table and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def html_tables(text: str) -> dict[str, list[list[str]]]:
    parser = _Tables()
    parser.feed(text)
    return parser.tables


def assert_html_matches_csv(html_text: str, csv_path: Path) -> pd.DataFrame:
    """The arm-stats table shows exactly report.csv: same header, same rows, same numbers ("—" ↔ empty)."""
    csv = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    rows = html_tables(html_text)["arm-stats"]
    assert rows[0] == list(csv.columns)
    shown = [[("" if v == "—" else v) for v in r] for r in rows[1:]]
    assert shown == csv.values.tolist()
    # …and the numbers, as numbers (a formatting change must not silently round only one side).
    for h, c in zip(shown, csv.values.tolist(), strict=True):
        for hv, cv in zip(h[2:-1], c[2:-1], strict=True):  # the last column names the test used
            assert (hv == cv == "") or float(hv) == float(cv)
    return csv


def _write_run(root: Path, name: str, values: dict[str, dict[int, float]], shards: Path | None = None,
               params: bool = True, history: bool = True) -> Path:
    """A run folder through the production writer: one trial per (arm, seed) (+ a worse one when params)."""
    rows, hist = [], []
    rng = np.random.default_rng(0)
    for arm, per_seed in values.items():
        for seed, v in per_seed.items():
            for t, value in enumerate((v, v + 0.3) if params else (v,)):
                tid = f"{arm}{seed}{t}"
                row = {"trial_id": tid, "arm": arm, "seed": seed, "status": "OK", "epochs": 3,
                       "val/nrmse": value, "test/nrmse": value + 0.05, "checkpoint": None, "error": ""}
                if params:
                    row.update({"param.lr": float(10 ** rng.uniform(-4, -2)), "param.dropout": 0.1 * t})
                rows.append(row)
                for epoch in (1, 2, 3):
                    hist.append({"trial_id": tid, "arm": arm, "seed": seed, "training_iteration": epoch,
                                 "phase": "fit", "phase_epoch": epoch, "val/nrmse": value + (3 - epoch) * 0.1})
    run_dir = root / name
    report.write_reports(run_dir, pd.DataFrame(rows), name, "val/nrmse", "min", list(values),
                         shards=str(shards) if shards else None, history=pd.DataFrame(hist) if history else None)
    return run_dir


def _shards(root: Path, kind: str) -> Path:
    out = root / f"shards-{kind}"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"target": {"kind": kind, "column": "x"}}))
    return out


C1 = {"full": {0: 0.80, 1: 0.82, 2: 0.78}, "supervised": {0: 0.90, 1: 0.95, 2: 0.85}}
C2 = {"full": {0: 0.98, 1: 0.99}, "supervised": {0: 1.00, 1: 1.02}}


def test_report_files_agree_and_baseline_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = _write_run(tmp_path, "c1", C1)
    for name in ("report.md", "report.csv", "report.html", "learning_curves.png", "param_importance.png",
                 "units.png", "history.parquet", "results.parquet"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "run.json").read_text())["baseline"] == "full"
    csv = assert_html_matches_csv((run_dir / "report.html").read_text(), run_dir / "report.csv")
    assert set(csv["metric"]) == {"val/nrmse", "test/nrmse"} and len(csv) == 4
    sup = csv[(csv["arm"] == "supervised") & (csv["metric"] == "val/nrmse")].iloc[0]
    assert float(sup["mean"]) == pytest.approx(0.9, abs=1e-6) and sup["n"] == "3"
    assert float(sup["delta"]) == pytest.approx(0.9 - 0.8, abs=1e-6)
    md = (run_dir / "report.md").read_text()
    assert "![Learning curves](learning_curves.png)" in md and "![Parameter importance](param_importance.png)" in md
    assert "| supervised |" in md and "delta_vs_full" in md
    html_text = (run_dir / "report.html").read_text()
    assert html_text.count("data:image/png;base64,") == 3  # self-contained: no file or network references
    assert not re.search(r'(src|href)="(?!data:)', html_text) and "<script" not in html_text

    assert main(["report", str(run_dir), "--baseline", "supervised"]) == 0
    assert "delta_vs_supervised" in capsys.readouterr().out
    flipped = pd.read_csv(run_dir / "report.csv")
    full = flipped[(flipped["arm"] == "full") & (flipped["metric"] == "val/nrmse")].iloc[0]
    assert full["delta"] == pytest.approx(-0.1, abs=1e-6) and math.isnan(
        flipped[flipped["arm"] == "supervised"]["delta"].iloc[0])

    assert main(["report", str(run_dir), "--baseline", "nope"]) == 2
    assert "baseline 'nope'" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_combine_challenges_into_eeg2025_score(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The C2 run is passed first: its shard manifest says challenge2, so the report swaps the roles.
    c1 = _write_run(tmp_path, "c1", C1, shards=_shards(tmp_path, "challenge1"))
    c2 = _write_run(tmp_path, "c2", C2, shards=_shards(tmp_path, "challenge2"), params=False, history=False)
    out = tmp_path / "combined"
    assert main(["report", str(c2), "--combine", str(c1), "--out", str(out)]) == 0
    csv = assert_html_matches_csv((out / "report.html").read_text(), out / "report.csv")
    score = csv[csv["metric"] == "eeg2025:val/nrmse"].set_index("arm")
    full = [0.3 * C1["full"][s] + 0.7 * C2["full"][s] for s in (0, 1)]  # seed 2 has no C2 cell
    sup = [0.3 * C1["supervised"][s] + 0.7 * C2["supervised"][s] for s in (0, 1)]
    assert float(score.at["full", "mean"]) == pytest.approx(np.mean(full), abs=1e-5)
    assert score.at["full", "n"] == "2"
    assert float(score.at["supervised", "delta"]) == pytest.approx(np.mean(sup) - np.mean(full), abs=1e-5)
    assert "eeg2025:test/nrmse" in set(csv["metric"])
    md = (out / "report.md").read_text()
    best = 0.3 * np.mean(list(C1["full"].values())) + 0.7 * np.mean(list(C2["full"].values()))
    assert f"EEG2025 {best:.6g}" in md and "it is C2 here" in md
    assert "No learning curves" in md and "no search parameters" in md  # the C2 run has neither
    assert not (out / "learning_curves.png").exists()

    (tmp_path / "x").mkdir()
    same = _write_run(tmp_path, "c1b", C1, shards=_shards(tmp_path / "x", "challenge1"))
    assert main(["report", str(c1), "--combine", str(same)]) == 2
    assert "needs a challenge1 run and a challenge2 run" in capsys.readouterr().err


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def demo_run(demo_smoke_run: Path) -> Path:
    return demo_smoke_run  # the session's demo run (tests/conftest.py), shared with test_demo_smoke.py


def test_report_of_a_real_run_renders_in_chromium(demo_run: Path, tmp_path: Path) -> None:
    assert (demo_run / "history.parquet").is_file()  # persisted at run end
    for name in ("report.md", "report.csv", "report.html", "learning_curves.png"):
        (demo_run / name).unlink()
    assert main(["report", str(demo_run)]) == 0  # rebuilt from the run folder alone
    for name in ("report.md", "report.csv", "report.html", "learning_curves.png", "param_importance.png"):
        assert (demo_run / name).stat().st_size > 0, name
    hist = pd.read_parquet(demo_run / "history.parquet")
    assert {"trial_id", "arm", "seed", "training_iteration", "phase", "phase_epoch", "val/nrmse"} <= set(hist)
    csv = assert_html_matches_csv((demo_run / "report.html").read_text(), demo_run / "report.csv")
    assert set(csv["arm"]) == {"shallow", "conv"} and {"val/nrmse", "val/loss"} <= set(csv["metric"])
    assert set(csv[csv["arm"] == "conv"]["n_pairs"]) == {"2"}

    if not CHROMIUM.is_file():
        pytest.skip("/usr/bin/chromium missing: install the Debian package `chromium` (`.ci/run` does) "
                    "to check that report.html renders")
    url = (demo_run / "report.html").resolve().as_uri()
    shot = tmp_path / "report.png"
    done = _chromium([f"--screenshot={shot}", "--window-size=1280,2000", url], tmp_path / "profile")
    assert done.returncode == 0, done.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000  # a blank 1280×2000 page is ~10 kB
    dom = _chromium(["--dump-dom", url], tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert_html_matches_csv(dom.stdout, demo_run / "report.csv")  # what the browser built, not the file
    assert html_tables(dom.stdout)["summary"][1][0] == "shallow"
    keep = os.environ.get("NEURORAY_REPORT_SCREENSHOT")  # opt-in copy for a human to look at
    if keep:
        shutil.copy(shot, keep)


def test_report_says_when_a_scheduler_pruned_across_arms(tmp_path: Path) -> None:
    """run.json records the scheduler's scope; a run pruned across arms says so in its report's intro."""
    run_dir = _write_run(tmp_path, "fair", C1)
    report.write_reports(run_dir, pd.read_parquet(run_dir / "results.parquet"), "fair", "val/nrmse", "min",
                         list(C1), pruning="asha within each cell")
    md = (run_dir / "report.md").read_text()
    assert "Early stopping: asha within each cell" in md and "Pruned across arms" not in md
    report.write_reports(run_dir, pd.read_parquet(run_dir / "results.parquet"), "fair", "val/nrmse", "min",
                         list(C1), pruning="asha across all trials", pruned_across_arms=True)
    assert json.loads((run_dir / "run.json").read_text())["pruned_across_arms"] is True
    assert "**Pruned across arms**" in (run_dir / "report.md").read_text()
    assert "Pruned across arms" in (run_dir / "report.html").read_text()
