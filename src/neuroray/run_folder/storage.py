"""Where a run goes: a local folder, or any pyarrow filesystem URI (``s3://bucket/prefix``, ``gs://…``).

With a URI, Tune's ``storage_path`` is the URI: trial folders, checkpoints, per-trial results
(``result.json``, ``progress.csv``), the TorchTrainer engine's Train runs (``train/<trial>/``: its
checkpoints and state) and Tune's restorable experiment state go there, so every node of a
cluster reads and writes the same place. The run *summary* (``results.csv/.parquet``, ``report.md``,
``run.json``) is written to the local ``runs/<experiment>/`` first and then copied next to the trial
folders in storage, so a job whose working directory vanishes still leaves it behind. Each trial's
TensorBoard files are copied to ``<run>/tensorboard/<trial>/`` in storage when the trial ends (by the process
that wrote them: the actor engine's trial, the TorchTrainer engine's rank-0 worker), the W&B offline runs to
``<run>/wandb/`` with the summary.

S3 credentials and endpoint come from the standard AWS chain (``AWS_PROFILE``/``AWS_ACCESS_KEY_ID``, the
node's IAM role; ``AWS_ENDPOINT_URL`` for an S3-compatible server), read by pyarrow.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.fs as pafs

from neuroray.datasets.locations import is_uri, join, open_uri
from neuroray.errors import NeurorayError, first_line
from neuroray.outputs import atomic_write, publish_dir

LOCAL_SUMMARY_ROOT = Path("runs")  # where the summary of a run with URI storage is written locally
_URI_SCHEME_OF = {"s3": "s3", "gcs": "gs", "hdfs": "hdfs", "abfs": "abfs"}  # pyarrow type_name → URI scheme


def _local(path: str | Path) -> Path:
    text = str(path)
    return Path(text[len("file://"):] if text.startswith("file://") else text)


def with_query(uri: str, like: str) -> str:
    """``uri`` with the query of ``like`` (the storage URI) when it is a URI that has none of its own."""
    query = urlsplit(like).query
    s = urlsplit(uri)
    if not query or s.query or not is_uri(uri):
        return uri
    return urlunsplit((s.scheme, s.netloc, s.path, query, s.fragment))


def filesystem(uri: str, what: str = "--storage") -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path) of ``uri``; one error line naming ``what`` when pyarrow cannot open it."""
    return open_uri(uri, what)


def fs_and_path(location: str | Path) -> tuple[pafs.FileSystem, str]:
    """A folder or a URI → (pyarrow filesystem, path on it); local paths made absolute."""
    if is_uri(location):
        return filesystem(str(location))
    return pafs.LocalFileSystem(), str(_local(location).resolve())


def publish(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write ``data`` at ``path`` so a reader sees the old file or the new one (temp + rename locally, one PUT on
    an object store); a failed write (no space) leaves the old file whole."""
    if isinstance(fs, pafs.LocalFileSystem):
        atomic_write(Path(path), lambda tmp: tmp.write_bytes(data))
        return
    with fs.open_output_stream(path) as out:
        out.write(data)


def local_root(storage: str | Path) -> Path:
    """The local folder that holds run summaries (``runs/`` of the working directory for a URI)."""
    return LOCAL_SUMMARY_ROOT.resolve() if is_uri(storage) else _local(storage).resolve()


def tune_storage_path(storage: str | Path) -> str:
    """What Tune gets as ``RunConfig(storage_path=…)``."""
    return str(storage).rstrip("/") if is_uri(storage) else str(_local(storage).resolve())


def check_writable(storage: str | Path) -> None:
    """Probe-write one empty object; one clear line on failure (before Ray starts)."""
    if not is_uri(storage):
        root = _local(storage)
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = root / f".neuroray-write-test-{time.time_ns()}"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            raise NeurorayError(f"--storage {storage}: not writable ({e.strerror}); "
                                "choose a folder you can write") from None
        return
    uri = str(storage)
    fs, path = filesystem(uri)
    key = f"{path}/.neuroray-write-test-{time.time_ns()}"
    try:
        fs.create_dir(path, recursive=True)
        with fs.open_output_stream(key) as out:
            out.write(b"")
        fs.delete_file(key)
    except (OSError, pa.ArrowException) as e:
        raise NeurorayError(f"--storage {uri}: not writable ({first_line(e)}); check that the bucket exists and "
                            "that your credentials (AWS_PROFILE / AWS_ACCESS_KEY_ID, or the node's IAM role) may "
                            "write there; AWS_ENDPOINT_URL points at an S3-compatible server") from None


RUN_MARKER = "experiment.json"  # written at the start of every run folder: only such a folder is ever removed
LOCK_FILE = ".neuroray.lock"  # the live run's lock (run_folder/run_lock.py); never removed with the folder


def _own_run_folder(local: Path, root: Path) -> Path:
    """``local`` if it is a neuroray run folder directly inside ``root``; else one error line, nothing removed."""
    resolved = local.resolve()
    if resolved.parent != root.resolve() or resolved == root.resolve():
        raise NeurorayError(f"{local}: not a folder directly inside the storage root {root}; neuroray removes "
                            "only its own run folders there")
    if not (local / RUN_MARKER).is_file():
        raise NeurorayError(f"{local}: not a neuroray run folder (no {RUN_MARKER}); --overwrite removes only "
                            "neuroray's own runs. Move it away or choose another --storage")
    return resolved


def clear_previous_run(storage: str | Path, name: str, replace: bool) -> None:
    """Refuse to mix runs: an existing run of ``name`` (local summary or remote) is an error unless ``replace``.

    Replacing removes only a neuroray run folder (it holds ``experiment.json``) directly inside the storage
    root, and keeps the lock of the run that is replacing it."""
    root = local_root(storage)
    local = root / name
    local_found = local.is_dir() and any(p.name != LOCK_FILE for p in local.iterdir())
    remote_found = False
    if is_uri(storage):
        check_writable(storage)  # a missing bucket / bad credentials: one clear line, here already
        fs, path = filesystem(join(str(storage), name))
        remote_found = fs.get_file_info(path).type != pafs.FileType.NotFound
    if not (local_found or remote_found):
        return
    if not replace:
        where = [str(local)] * local_found + [join(str(storage), name)] * remote_found
        raise NeurorayError(f"{' and '.join(where)}: a run of {name!r} already exists; pass --resume to "
                            "continue it, --overwrite to replace it, or --storage to write elsewhere")
    if remote_found:
        marks = {i.base_name for i in fs.get_file_info(pafs.FileSelector(path))}
        if not marks & {RUN_MARKER, "tuner.pkl"}:
            raise NeurorayError(f"{join(str(storage), name)}: not a neuroray run folder (no {RUN_MARKER} or "
                                "tuner.pkl); --overwrite removes only neuroray's own runs")
    if local_found:
        for child in _own_run_folder(local, root).iterdir():
            if child.name == LOCK_FILE:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    if remote_found:
        fs.delete_dir(path)


def copy_logs(local: Path, fs: pafs.FileSystem, dest: str) -> bool:
    """Copy a folder of logs (a trial's TensorBoard files, the W&B offline runs) to ``dest`` on ``fs``; a store
    that does not answer costs a warning, never the trial. Returns whether it was copied."""
    if not local.is_dir():
        return False
    try:
        pafs.copy_files(str(local), dest, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    except (OSError, pa.ArrowException) as e:
        print(f"warning: copying {local} to storage failed ({first_line(e)}); it stays on this node", flush=True)
        return False
    return True


def copy_tensorboard(tensorboard_dir: str | None, trial: str, storage: tuple[pafs.FileSystem, str] | None) -> None:
    """A trial's TensorBoard folder to ``<run>/tensorboard/<trial>`` in URI storage (nothing for local storage)."""
    if storage is not None and tensorboard_dir:
        copy_logs(Path(tensorboard_dir) / trial, storage[0], f"{storage[1]}/tensorboard/{trial}")


def upload_summary(run_dir: Path, storage: str, name: str) -> str:
    """Copy the run summary (the run folder's top-level files: results, reports, run.json) next to the trial
    folders in remote storage, run.json last as the mark of a finished run; returns that folder's URI. The W&B
    offline runs (written on this node by the driver's logging actor) go along, under ``wandb/``."""
    dest = join(storage, name)
    fs, path = filesystem(dest)
    copy_logs(run_dir / "wandb", fs, f"{path}/wandb")
    files = sorted((f for f in run_dir.iterdir() if f.is_file() and not f.name.startswith(".")),
                   key=lambda f: (f.name == "run.json", f.name))
    try:
        for file in files:  # one PUT per object: a reader never sees half a file
            pafs.copy_files(str(file), f"{path}/{file.name}", destination_filesystem=fs)
    except (OSError, pa.ArrowException) as e:
        raise NeurorayError(f"{dest}: copying the run summary failed ({first_line(e)}); the trials and "
                            f"checkpoints are there, the summary is in {run_dir}") from None
    return dest


def checkpoint_uri(checkpoint: Any) -> str:
    """A ``ray.train.Checkpoint``'s location as a path or URI that ``fetch_checkpoint`` can open again."""
    return location_uri(checkpoint.filesystem, str(checkpoint.path))


def location_uri(fs: pafs.FileSystem | None, path: str) -> str:
    """A path on a pyarrow filesystem as a local path or a URI (``s3://bucket/key``) that ``filesystem`` opens."""
    if fs is None or isinstance(fs, pafs.LocalFileSystem):
        return path
    scheme = _URI_SCHEME_OF.get(fs.type_name)
    if scheme is None and isinstance(fs, pafs.PyFileSystem) and isinstance(fs.handler, pafs.FSSpecHandler):
        protocol = fs.handler.fs.protocol
        scheme = protocol[0] if isinstance(protocol, tuple | list) else protocol
    return f"{scheme}://{path}" if scheme else path


def fetch_checkpoint(checkpoint: str, cache: Path) -> Path:
    """A checkpoint URI → a local copy under ``cache`` (downloaded once; temp + rename, so never half there)."""
    fs, path = filesystem(checkpoint, what="checkpoint")
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        raise NeurorayError(f"checkpoint {checkpoint}: not found in storage; the trial has nothing to export")
    dest = cache / "__".join(path.split("/")[-2:])  # <trial folder>__checkpoint_0000NN
    if dest.is_dir():
        return dest
    try:
        publish_dir(dest, lambda tmp: pafs.copy_files(path, str(tmp), source_filesystem=fs,
                                                      destination_filesystem=pafs.LocalFileSystem()))
    except (OSError, pa.ArrowException) as e:
        raise NeurorayError(f"checkpoint {checkpoint}: download failed ({first_line(e)})") from None
    return dest
