"""The live report (issue 19 item 5): report.html is rebuilt as trials end while the run goes on, reloads
itself while live, and the final report replaces it without the reload."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pandas as pd
import yaml

from neuroray.run.runner import run
from neuroray.search_spaces.experiment import load

REFRESH = re.compile(r'<meta http-equiv="refresh" content="(\d+)">')


def test_report_lists_ended_trials_while_the_run_goes_on(ray_session: None, small_eeg: Path, tmp_path: Path) -> None:
    exp = tmp_path / "live.yaml"
    exp.write_text(yaml.safe_dump({
        "name": "live", "data": {"shards": str(small_eeg)},
        "phases": [{"name": "fit", "trainable": "eeg_regressor", "target": "y", "epochs": 2, "batch_size": 16,
                    "hparams": {"lr": 5e-3}}],
        "matrix": {"arm": {"a": {}, "b": {"phases.fit.hparams.n_filters": 4}}, "seed": [0, 1]},
        "resources": {"max_concurrent_trials": 1},  # trials end one after another
        "report": {"live_every": 0.5},
        "evaluate": {"test": False}}))
    page = tmp_path / "runs" / "live" / "report.html"
    seen: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if page.is_file() and (text := page.read_text()) and (not seen or text != seen[-1]):
                seen.append(text)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        summary = run(load(exp), storage=tmp_path / "runs", verbose=0)
    finally:
        done.set()
        watcher.join()
    trials = pd.read_csv(summary.run_dir / "results.csv")
    assert len(trials) == 4 and (trials["status"] == "OK").all(), trials
    live = [text for text in seen if REFRESH.search(text)]
    assert live, f"no live report while the run went on ({len(seen)} versions seen)"
    first = live[0]
    listed = [t for t in trials["trial_id"] if t in first]
    assert 1 <= len(listed) < 4, listed  # written after the first trial ended, before the last
    assert "of 4 trials ended" in first and "Live:" in first
    assert int(REFRESH.search(first).group(1)) >= 5  # type: ignore[union-attr]
    # each ended trial's row reads as in the final results
    row = trials.set_index("trial_id").loc[listed[0]]
    assert f"{row['val/nrmse']:.6g}" in first, row["val/nrmse"]
    final = page.read_text()
    assert not REFRESH.search(final) and "Live:" not in final  # a browser left open stops reloading
    assert all(t in final for t in trials["trial_id"])
