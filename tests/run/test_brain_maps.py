"""`neuroray generate` brain maps of a vae3d trial (issue 19 item 1): NIfTI on the shard set's MNI grid,
glass-brain PNGs, a latent slider that headless Chromium moves, and the report's input-vs-reconstruction maps.

The trial is a conditional 3-D VAE fitted briefly on planted blobs that move with the study's year, on a
coarse MNI grid (so it fits in seconds), written as a finished run folder without a Tune run."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from export_runs import write_run

from neuroray.cli import main
from neuroray.datasets.shards import ShardSetWriter, open_shard_set, tensor_column_to_numpy
from neuroray.datasets.spec import VolumeSpec
from neuroray.reports.folder import rebuild
from neuroray.trainables import base

CHROMIUM = Path("/usr/bin/chromium")


GRID = (12, 14, 12)  # the MNI box at 15 mm: small enough to fit a VAE in seconds on a CPU
AFFINE = np.array([[-15.0, 0, 0, 90], [0, 15.0, 0, -126], [0, 0, 15.0, -72], [0, 0, 0, 1]])


def _blobs(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Planted signal: one Gaussian blob per study whose x position moves with its (standardized) year."""
    year_z = rng.uniform(-1.5, 1.5, n).astype(np.float32)
    ii, jj, kk = np.meshgrid(*(np.arange(s) for s in GRID), indexing="ij")
    x = np.stack([np.exp(-((ii - 6 - 2.5 * y) ** 2 + (jj - 7) ** 2 + (kk - 6) ** 2) / 4.0) for y in year_z])
    return x[:, None].astype(np.float32), year_z


@pytest.fixture(scope="module")
def atlas_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("atlas")
    spec = VolumeSpec(shape=GRID, voxel_mm=15.0)
    rng = np.random.default_rng(0)
    writer = ShardSetWriter(root / "vol", spec, rows_per_file=16)
    data = {}
    for split, n in (("train", 48), ("val", 8), ("test", 8)):
        data[split] = _blobs(n, rng)
        writer.write(split, data[split][0], {"study_id": np.array([f"{split}{i}" for i in range(n)]),
                                             "year_z": data[split][1]})
    writer.commit(extra={"grid": {"shape": list(GRID), "voxel_mm": 15.0, "affine": AFFINE.tolist()}})
    x, cond = (torch.from_numpy(a) for a in data["train"])
    torch.manual_seed(0)
    module = base.build("vae3d", spec, {"latent_dim": 4, "base_channels": 8, "depth": 2, "cond_columns": "year_z"})
    opt = torch.optim.AdamW(module.parameters(), lr=1e-2)
    for _ in range(40):
        opt.zero_grad()
        out = module._step({"x": x, "year_z": cond}, sample=False)
        out["recon"].backward()
        opt.step()
    return write_run(root / "run", root / "vol", {"t0": module.eval()}, "val/pearson_r", "max")


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, check=False)


def test_generate_writes_nifti_on_the_grid_pictures_and_a_slider(atlas_run: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", str(atlas_run), "--reconstruct", "4", "--traverse", "0", "--steps", "5",
                 "--condition", "year_z=-1,1"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("voxel r = ") == 4 and "SSIM = " in printed
    shards = open_shard_set(atlas_run.parent / "vol")
    affine = np.asarray(shards.manifest["grid"]["affine"])
    out = atlas_run / "generate" / "t0"
    niftis = sorted(out.rglob("*.nii.gz"))
    assert len(niftis) == 4 * 2 + 5 + (1 + 4) * 2, [p.name for p in niftis]
    test = tensor_column_to_numpy(shards.read_split("test", ["x"]).column("x"))
    ids = shards.read_split("test", ["study_id"]).column("study_id").to_pylist()
    for path in niftis:
        img = nib.load(path)
        assert img.shape == tuple(shards.manifest["grid"]["shape"]) and np.allclose(img.affine, affine), path
    first = np.asarray(nib.load(out / "reconstruct" / f"{ids[0]}_input.nii.gz").dataobj)
    assert np.allclose(first, test[0, 0])  # the input map is the study itself
    recon = np.asarray(nib.load(out / "reconstruct" / f"{ids[0]}_recon.nii.gz").dataobj)
    assert np.corrcoef(recon.ravel(), first.ravel())[0, 1] > 0.3  # a fitted model reconstructs its blob
    steps = [np.asarray(nib.load(out / "traverse" / f"dim0_step{k}.nii.gz").dataobj) for k in range(5)]
    assert not np.allclose(steps[0], steps[-1])  # moving the latent changes the map
    years = [np.asarray(nib.load(p).dataobj) for p in sorted((out / "condition").glob("mean_*.nii.gz"))]
    assert len(years) == 2 and not np.allclose(*years)  # the same latent, another year: another map
    for png in ("reconstruct/reconstruct.png", "traverse/traverse.png", "condition/condition.png",
                "traverse/step0.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    page = out / "traverse" / "latent_slider.html"
    text = page.read_text()  # 5 frames inline, and the first as the image shown without scripts; nothing fetched
    assert text.count("data:image/png;base64,") == 5 + 1 and "http" not in text.split("<body>")[1]

    if not CHROMIUM.is_file():
        pytest.skip("/usr/bin/chromium missing: install the Debian package `chromium` (`.ci/run` does)")
    shown = []
    for k in (0, 4):  # two slider positions (the page opens at #K) show different images
        dom = _chromium(["--dump-dom", f"{page.resolve().as_uri()}#{k}"], tmp_path / "profile")
        assert dom.returncode == 0, dom.stderr[-2000:]
        frame = dom.stdout.split('id="frame"')[1].split(">")[0]
        assert f'data-step="{k}"' in frame
        shown.append(frame.split('src="')[1].split('"')[0])
    assert shown[0] != shown[1] and shown[0].startswith("data:image/png")


def test_the_report_embeds_each_arms_input_and_reconstruction(atlas_run: Path, tmp_path: Path) -> None:
    import pandas as pd

    from neuroray.generate.atlas import report_maps

    trials = pd.read_parquet(atlas_run / "results.parquet")
    assert report_maps(atlas_run, trials, "val/pearson_r", "max") == ["t0"]
    rebuild(atlas_run)
    page = (atlas_run / "report.html").read_text()
    assert "Brain maps: input vs reconstruction" in page and "arm a" in page
    assert "generate/t0/reconstruct/reconstruct.png" in (atlas_run / "report.md").read_text()
    if CHROMIUM.is_file():
        shot = tmp_path / "atlas_report.png"
        done = _chromium([f"--screenshot={shot}", "--window-size=1280,2400", page and
                          (atlas_run / "report.html").resolve().as_uri()], tmp_path / "profile")
        assert done.returncode == 0 and shot.stat().st_size > 50_000, done.stderr[-2000:]
        if keep := os.environ.get("NEURORAY_REPORT_SCREENSHOT_DIR"):  # the test artifact for a human to look at
            shutil.copy(shot, Path(keep) / shot.name)


def test_brain_map_mistakes_are_one_line(atlas_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args, fragment in ((["--traverse", "9"], "dimensions 0…3"), (["--condition", "journal_code=1"],
                           "conditioning columns: year_z"), (["--condition", "year_z=a"], "must be numbers"),
                           (["--reconstruct", "2", "--attention"], "not both"), (["--steps", "1", "--traverse", "0"],
                                                                                 "2 ≤ steps")):
        assert main(["generate", str(atlas_run), *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and fragment in err[0], (args, err)
