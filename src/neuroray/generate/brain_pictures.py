"""Pictures of brain maps (brain_maps.py): nilearn glass brains (its MNI outlines ship in the wheel; nothing is
downloaded) in grids of maps, one PNG per traversal step, and ``latent_slider.html``: one self-contained page
(the step PNGs inline as data URIs, a range input moving through them; ``#K`` in the URL opens step K)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from neuroray.generate.brain_maps import Map
from neuroray.outputs import atomic_write

__all__ = ["grid_png", "step_pngs", "slider_html"]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _glass(m: Map, affine: np.ndarray, ax: object, vmax: float, title: str) -> None:
    from nilearn import plotting

    img = nib.Nifti1Image(np.asarray(m.volume, dtype=np.float32), affine)
    plotting.plot_glass_brain(img, axes=ax, display_mode="ortho", colorbar=False, plot_abs=False, cmap="inferno",
                              vmin=0.0, vmax=vmax, threshold=0.15 * vmax, title=None, annotate=False)
    ax.set_title(title, fontsize=8)  # type: ignore[attr-defined]


def _save(fig: object, path: Path) -> Path:
    plt = _plt()
    try:
        atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=90, bbox_inches="tight"))  # type: ignore[attr-defined]
    finally:
        plt.close(fig)
    return path


def _vmax(maps: list[Map]) -> float:
    top = max(float(np.percentile(np.abs(m.volume), 99.9)) for m in maps)
    return top if top > 0 else 1.0


def grid_png(rows: list[tuple[str, list[Map]]], affine: np.ndarray, path: Path, title: str) -> Path:
    """One row of glass brains per (label, maps), every panel on one colour scale; scores in the titles."""
    plt = _plt()
    n_cols = max(len(maps) for _, maps in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(3.4 * n_cols, 1.5 * len(rows) + 0.6), squeeze=False)
    vmax = _vmax([m for _, maps in rows for m in maps])
    for (label, maps), line in zip(rows, axes, strict=True):
        for ax, m in zip(line, maps, strict=False):
            score = f" (r {m.scores['pearson_r']:.2f}, SSIM {m.scores['ssim']:.2f})" if m.scores else ""
            _glass(m, affine, ax, vmax, f"{label}: {m.title}{score}" if label else m.title + score)
        for ax in line[len(maps):]:
            ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def step_pngs(maps: list[Map], affine: np.ndarray, out: Path) -> list[Path]:
    """One glass-brain PNG per traversal step, all on one colour scale (so the slider compares like with like)."""
    plt = _plt()
    vmax = _vmax(maps)
    paths = []
    for k, m in enumerate(maps):
        fig, ax = plt.subplots(figsize=(6.4, 2.4))
        _glass(m, affine, ax, vmax, m.title)
        paths.append(_save(fig, out / f"step{k}.png"))
    return paths


def slider_html(pngs: list[Path], labels: list[str], title: str, path: Path) -> Path:
    """``latent_slider.html``: the step PNGs inline, a range input choosing which one shows."""
    frames = [f"data:image/png;base64,{base64.b64encode(p.read_bytes()).decode('ascii')}" for p in pngs]
    frames_js = ",".join(f'"{f}"' for f in frames)
    labels_js = ",".join(f'"{html.escape(t)}"' for t in labels)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 900px; }}
input {{ width: 100%; }} img {{ max-width: 100%; border: 1px solid #eee; }}</style></head>
<body><h1>{html.escape(title)}</h1>
<p><input id="step" type="range" min="0" max="{len(frames) - 1}" value="0" step="1"
 aria-label="latent value"></p>
<p id="label">{html.escape(labels[0])}</p>
<p><img id="frame" alt="decoded brain map" src="{frames[0]}"></p>
<script>
const frames = [{frames_js}];
const labels = [{labels_js}];
const step = document.getElementById("step");
function show(k) {{
  step.value = k;
  document.getElementById("frame").src = frames[k];
  document.getElementById("frame").dataset.step = k;
  document.getElementById("label").textContent = labels[k];
}}
step.addEventListener("input", () => show(Number(step.value)));
const asked = Number(location.hash.slice(1));
show(Number.isInteger(asked) && asked >= 0 && asked < frames.length ? asked : 0);
</script></body></html>
"""
    atomic_write(path, lambda p: p.write_text(page))
    return path
