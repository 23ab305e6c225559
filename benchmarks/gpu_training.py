"""GPU (issue 9 item 6): the training benchmark (data_wait.py) on one CUDA device, as its own dated entry
naming the GPU; without a device the result is marked skipped."""

from __future__ import annotations

from typing import Any

import torch

from benchmarks import data_wait
from benchmarks.common import skipped

TITLE = "GPU training: share of step time waiting for data on CUDA (issue 9 item 6)"


def run(quick: bool = False, repeats: int = 3) -> dict[str, Any]:
    if not torch.cuda.is_available():
        return skipped("gpu_training", TITLE, "no device (torch.cuda.is_available() is False)")
    result = data_wait.run(quick=quick, repeats=repeats, device="cuda")
    gpu = torch.cuda.get_device_name(0)
    return {**result, "name": "gpu_training", "title": f"{TITLE} — {gpu}", "gpu": gpu}
