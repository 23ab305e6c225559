"""What `neuroray generate` makes for a vae3d trial, folder by folder: ``reconstruct/`` (NIfTI pairs,
reconstruct.png), ``traverse/`` (NIfTI + PNG per step, traverse.png, latent_slider.html) and ``condition/``
(NIfTI per latent × conditioning, condition.png), under ``RUN_DIR/generate/<trial>/`` by default. Also the
input-vs-reconstruction picture of each arm's pick that the atlas report embeds (``report_maps``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from neuroray.errors import NeurorayError
from neuroray.generate import brain_maps as bm
from neuroray.generate import brain_pictures as pics

__all__ = ["BrainMapRequest", "make_brain_maps", "report_maps", "REPORT_PNG"]

REPORT_PNG = "reconstruct.png"  # RUN_DIR/generate/<trial>/reconstruct/: what the report shows per arm


@dataclass
class BrainMapRequest:
    """The brain-map flags of `neuroray generate` (None / empty: not asked for)."""

    reconstruct: int | None = None
    traverse: int | None = None
    steps: int = 7
    span: float = 3.0
    condition: list[str] = field(default_factory=list)
    split: str = "test"


def make_brain_maps(run_dir: Path, trial: str, req: BrainMapRequest, out: Path | None = None) -> list[str]:
    """Write what ``req`` asks for; returns the lines to print (files and per-study scores)."""
    if req.steps < 2 or req.steps > 101 or not 0 < req.span <= 100:
        raise NeurorayError(f"--steps {req.steps} / --range {req.span}: need 2 ≤ steps ≤ 101 and 0 < range ≤ 100")
    if req.reconstruct is not None and not 1 <= req.reconstruct <= 64:
        raise NeurorayError(f"--reconstruct {req.reconstruct}: must be between 1 and 64 studies")
    model = bm.load_volume_model(run_dir, trial)
    combos = bm.parse_condition(model, req.condition) if req.condition else []  # refused before any work
    base = out or run_dir / "generate" / model.trial_id
    arm = model.row.get("arm")
    lines = [f"brain maps of trial {model.trial_id} (arm {arm}) on the {req.split} split → {base}"]
    if req.reconstruct:
        folder = base / "reconstruct"
        folder.mkdir(parents=True, exist_ok=True)
        pairs = bm.reconstruct(model, req.reconstruct, folder, req.split)
        png = pics.grid_png([("", [a, b]) for a, b in pairs], model.affine, folder / REPORT_PNG,
                            f"{model.info.name}: input vs reconstruction, trial {model.trial_id} (arm {arm})")
        lines += [f"  {b.title.split(':')[0]}: voxel r = {b.scores['pearson_r']:.3f}, SSIM = {b.scores['ssim']:.3f}"
                  for _, b in pairs]
        lines.append(f"  reconstruct: {len(pairs) * 2} NIfTI maps, {png}")
    if req.traverse is not None:
        folder = base / "traverse"
        folder.mkdir(parents=True, exist_ok=True)
        maps = bm.traverse(model, req.traverse, req.steps, req.span, folder, req.split)
        frames = pics.step_pngs(maps, model.affine, folder)
        strip = pics.grid_png([("", maps)], model.affine, folder / "traverse.png",
                              f"latent dimension {req.traverse} swept over ±{req.span:g} (mean latent)")
        page = pics.slider_html(frames, [m.title for m in maps], f"{model.info.name}: trial {model.trial_id}, "
                                f"latent dimension {req.traverse}", folder / "latent_slider.html")
        lines.append(f"  traverse: {len(maps)} NIfTI maps, {strip}, {page}")
    if combos:
        folder = base / "condition"
        folder.mkdir(parents=True, exist_ok=True)
        rows = bm.condition(model, combos, folder, studies=min(req.reconstruct or 0, 4), split=req.split)
        png = pics.grid_png(rows, model.affine, folder / "condition.png",
                            f"same latents, other conditioning ({', '.join(model.cond_names)})")
        lines.append(f"  condition: {sum(len(m) for _, m in rows)} NIfTI maps, {png}")
    return lines


def report_maps(run_dir: Path, trials: pd.DataFrame, metric: str, mode: str, studies: int = 2) -> list[str]:
    """Each arm's best trial by ``metric``: input vs reconstruction of ``studies`` test studies, for the
    report (which embeds ``generate/<trial>/reconstruct/reconstruct.png``). Returns the trial ids drawn."""
    from neuroray.reports.folder import best_trial

    drawn = []
    ok = trials[trials["checkpoint"].apply(lambda c: isinstance(c, str) and bool(c))]
    for arm in ok["arm"].drop_duplicates():
        row = best_trial(ok[ok["arm"] == arm], metric, mode)
        if row is not None:
            make_brain_maps(run_dir, str(row["trial_id"]), BrainMapRequest(reconstruct=studies))
            drawn.append(str(row["trial_id"]))
    return drawn
