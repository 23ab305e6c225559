"""A run folder in ``--storage s3://…`` read back by `report` and `export` (no Ray, no local run needed).

The summary (the folder's top-level files: run.json, results, history, experiment.json) is downloaded into a
local copy, one per URI under the system temp folder; checkpoints stay in the bucket (their URIs are in
results.csv, and export fetches the one it needs). What the command writes by default (the report, the
export) is uploaded back next to the trials.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import pyarrow.fs as pafs

from neuroray.datasets.locations import STORE_ERRORS, is_uri, public
from neuroray.errors import NeurorayError, first_line
from neuroray.run_folder.storage import filesystem

__all__ = ["fetch_run", "open_run", "fetch_model", "publish_report", "publish_export", "upload_outputs"]

SUMMARY_MARK = "run.json"


def _copy(uri: str) -> Path:
    name = uri.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    digest = hashlib.sha1(public(uri).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / "neuroray-runs" / digest / name


def fetch_run(uri: str, what: str = "RUN_DIR") -> Path:
    """The run folder at ``uri`` as a local copy of its summary; one error line when it is not a finished run."""
    fs, path = filesystem(uri, what=what)
    shown = public(uri)
    local = _copy(uri)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        files = {i.base_name: i for i in infos if i.type == pafs.FileType.File}
        if SUMMARY_MARK not in files:
            raise NeurorayError(f"{what} {shown}: not a finished neuroray run folder (no {SUMMARY_MARK}); give the "
                                "run's folder in --storage, e.g. s3://BUCKET/PREFIX/<experiment name>")
        shutil.rmtree(local, ignore_errors=True)
        local.mkdir(parents=True)
        for name, info in files.items():
            pafs.copy_files(info.path, str(local / name), source_filesystem=fs,
                            destination_filesystem=pafs.LocalFileSystem())
    except STORE_ERRORS as e:
        raise NeurorayError(f"{what} {shown}: reading the run folder failed ({first_line(e)}); is the object "
                            "store reachable?") from None
    return local


def fetch_model(location: str, card: str = "model_card.json") -> Path:
    """``model.onnx`` (a path, or a URI: downloaded with the model card beside it) as a local path."""
    if not is_uri(location):
        return Path(location)
    fs, path = filesystem(location, what="model")
    local = _copy(location.rsplit("/", 1)[0]) / path.rsplit("/", 1)[-1]
    local.parent.mkdir(parents=True, exist_ok=True)
    try:
        model, beside = fs.get_file_info([path, f"{path.rsplit('/', 1)[0]}/{card}"])
        if model.type != pafs.FileType.File:
            raise NeurorayError(f"model {public(location)}: not found in storage; give the export's model.onnx")
        for info in (i for i in (model, beside) if i.type == pafs.FileType.File):
            pafs.copy_files(info.path, str(local.parent / info.base_name), source_filesystem=fs,
                            destination_filesystem=pafs.LocalFileSystem())
    except STORE_ERRORS as e:
        raise NeurorayError(f"model {public(location)}: download failed ({first_line(e)})") from None
    return local


def open_run(location: str, what: str = "RUN_DIR") -> tuple[Path, str | None]:
    """(a local run folder, the URI it came from or None): ``location`` itself, or the local copy of a URI's."""
    return (fetch_run(location, what), location) if is_uri(location) else (Path(location), None)


def _shown(uri: str) -> str:
    return public(uri).split("?", 1)[0].rstrip("/")


def publish_report(out: Path, uri: str) -> str:
    """Upload the report files (report.md/.csv/.html, its pictures) written in ``out`` to ``uri``; their folder."""
    upload_outputs(out, uri, sorted(p.name for p in out.iterdir()
                                    if p.is_file() and (p.name.startswith("report") or p.suffix == ".png")))
    return _shown(uri)


def publish_export(run_dir: Path, uri: str) -> str:
    """Upload ``run_dir/export`` to ``uri``/export; that folder's URI."""
    upload_outputs(run_dir, uri, ["export"])
    return f"{_shown(uri)}/export"


def upload_outputs(local: Path, uri: str, names: list[str]) -> None:
    """Copy files or folders ``names`` of the local copy back into the run folder at ``uri``."""
    fs, path = filesystem(uri)
    for name in names:
        item = local / name
        try:
            if item.exists():
                pafs.copy_files(str(item), f"{path}/{name}", source_filesystem=pafs.LocalFileSystem(),
                                destination_filesystem=fs)
        except STORE_ERRORS as e:
            raise NeurorayError(f"{public(uri)}: uploading {name} failed ({first_line(e)}); it is in {local}"
                                ) from None
