"""What every benchmark shares: repeat-and-summarize, one result row per compared path, markdown rendering.

A result is ``{"name", "title", "what", "rows": [row, ...], "findings": [str, ...], ...}``; a row compares one
neuroray path with the plain baseline measured in the same run (``ratio`` oriented so that higher is better
for rates and lower is better for times, as the goal text says).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any


def summary(xs: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def timed(fn: Callable[[], object], repeats: int, warmup: int = 0) -> list[float]:
    """Wall seconds of ``fn()`` per repeat, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def row(label: str, figure: Sequence[float], unit: str, baseline: Sequence[float] | None = None,
        ratio: float | None = None, goal: str = "", met: bool | None = None, **extra: Any) -> dict[str, Any]:
    """One compared path: its figure over the repeats, the baseline's, the ratio and whether the goal holds."""
    out: dict[str, Any] = {"label": label, "unit": unit, "figure": summary(figure)}
    if baseline is not None:
        out["baseline"] = summary(baseline)
    if ratio is not None:
        out["ratio"] = ratio
    if goal:
        out["goal"], out["met"] = goal, met
    return {**out, **extra}


def skipped(name: str, title: str, reason: str) -> dict[str, Any]:
    return {"name": name, "title": title, "skipped": reason, "rows": []}


def _fmt(x: float) -> str:
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}" if abs(x) >= 0.1 else f"{x:.3f}"


def fmt_summary(s: dict[str, float], unit: str = "") -> str:
    u = f" {unit}" if unit else ""
    if s.get("n") == 1:
        return f"{_fmt(s['median'])}{u}"
    return f"{_fmt(s['median'])}{u} ({_fmt(s['min'])}–{_fmt(s['max'])})"


def render(result: dict[str, Any]) -> list[str]:
    """Markdown section for one result; falls back to a key/value table for results without ``rows``."""
    lines = [f"## {result.get('title', result['name'])}", ""]
    if result.get("skipped"):
        return [*lines, f"Skipped: {result['skipped']}.", ""]
    if result.get("what"):
        lines += [str(result["what"]), ""]
    rows = result.get("rows")
    if rows:
        lines += ["| path | figure | baseline (plain) | ratio | goal | met |", "|---|---|---|---|---|---|"]
        for r in rows:
            base = fmt_summary(r["baseline"], r["unit"]) if "baseline" in r else "—"
            ratio = f"{r['ratio']:.2f}" if r.get("ratio") is not None else "—"
            met = {True: "yes", False: "**no**", None: ""}[r.get("met")]
            lines.append(f"| {r['label']} | {fmt_summary(r['figure'], r['unit'])} | {base} | {ratio} | "
                         f"{r.get('goal', '')} | {met} |")
        lines.append("")
    else:
        lines += _generic_table(result)
    for f in result.get("findings", []):
        lines.append(f"- {f}")
    if result.get("findings"):
        lines.append("")
    return lines


def _generic_table(result: dict[str, Any]) -> list[str]:
    """Any other result (e.g. another engineer's module): every {median,min,max} and scalar, flattened."""
    flat: list[tuple[str, str]] = []

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict) and "median" in v and "min" in v and "max" in v:
            flat.append((prefix, fmt_summary(v)))
        elif isinstance(v, dict) and "median_s" in v:
            flat.append((prefix, f"{_fmt(v['median_s'])} s ({_fmt(v['min_s'])}–{_fmt(v['max_s'])})"))
        elif isinstance(v, dict):
            for k, sub in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), sub)
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for i, sub in enumerate(v):
                walk(f"{prefix}[{sub.get('name', sub.get('model', i))}]", sub)
        elif isinstance(v, bool | int | float | str) and prefix not in ("name", "title", "what", "date",
                                                                        "machine"):
            flat.append((prefix, _fmt(v) if isinstance(v, float) else str(v)))

    walk("", {k: v for k, v in result.items() if k not in ("versions", "findings")})
    return ["| figure | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in flat], ""]


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid → (parent pid, CPU seconds so far) for every process, from /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rindex(")") + 2:].split()
        out[int(d)] = (int(rest[1]), (int(rest[11]) + int(rest[12])) / tick)
    return out


def run_measured(cmd: list[str], **kwargs: Any) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run ``cmd``; returns (completed process, wall seconds, CPU seconds of its whole process tree).

    The tree (Ray's raylet, GCS, dashboard, workers, actors…) is sampled from /proc twice a second while the
    command runs, so processes that live under half a second are missed. CPU seconds do not depend on what
    else the machine runs, which wall time does."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
    seen: dict[int, float] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            try:
                table = _proc_table()
            except OSError:
                continue
            tree, grew = {proc.pid}, True
            while grew:
                grew = False
                for pid, (ppid, _) in table.items():
                    if ppid in tree and pid not in tree:
                        tree.add(pid)
                        grew = True
            for pid in tree:
                if pid in table:
                    seen[pid] = max(seen.get(pid, 0.0), table[pid][1])

    thread = threading.Thread(target=sample, daemon=True)
    if os.path.isdir("/proc"):
        thread.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    if thread.is_alive():
        thread.join()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), wall, sum(seen.values())


def tensor_loader(shard_set: Any, split: str, batch_size: int, shuffle: bool, target: str = "y") -> Any:
    """The plain baselines' loader: a split read once into tensors, batched as the dicts neuroray's modules
    take (``{"x", target}``). Imports torch here: the orchestration benchmark's driver never needs it."""
    import torch

    from neuroray.datasets.shards import tensor_column_to_numpy

    t = shard_set.read_split(split, ["x", target])
    ds = torch.utils.data.TensorDataset(torch.from_numpy(tensor_column_to_numpy(t["x"])),
                                        torch.from_numpy(t[target].to_numpy()))
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle,
                                       collate_fn=lambda rows: {"x": torch.stack([r[0] for r in rows]),
                                                                target: torch.stack([r[1] for r in rows])})
