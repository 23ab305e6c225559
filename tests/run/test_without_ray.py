"""`neuroray report RUN_DIR` and `neuroray export RUN_DIR` read a finished run folder alone: they run in a
process where ``ray`` cannot be imported at all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from export_runs import CASES, write_run, write_shards

from neuroray.trainables import base


def test_report_and_export_run_with_ray_unimportable(tmp_path: Path) -> None:
    spec, hparams, target = CASES["eeg_regressor"]
    shards = write_shards(tmp_path / "eeg", spec)
    module = base.build("eeg_regressor", spec, hparams, target=target)
    run = write_run(tmp_path / "run", shards, {"t0": module, "t1": module}, module.monitor, module.mode)  # t1 best
    (run / "report.md").unlink()

    both = ("import sys; sys.modules['ray'] = None\nfrom neuroray.cli import main\n"
            f"code = main(['report', {str(run)!r}])\n"
            f"raise SystemExit(code or main(['export', {str(run)!r}, '--out', {str(tmp_path / 'export')!r}]))")
    done = subprocess.run([sys.executable, "-c", both], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (run / "report.md").is_file() and (run / "report.html").is_file()
    card = json.loads((tmp_path / "export" / "model_card.json").read_text())
    assert card["source"]["trial_id"] == "t1" and (tmp_path / "export" / "model.onnx").is_file()

    # and the guard is real: importing ray fails in such a process
    check = subprocess.run([sys.executable, "-c", "import sys; sys.modules['ray'] = None\nimport ray"],
                           capture_output=True, text=True)
    assert check.returncode != 0 and "ModuleNotFoundError" in check.stderr
