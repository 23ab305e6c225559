"""Shard sets on an object store (``s3://…``, ``gs://…``): listing, reading, and publishing with the manifest last.

An object store has no rename, so a set cannot appear at once the way a local folder does. Its parts are
uploaded first and ``manifest.json`` last; a reader trusts only a manifest whose files it finds with their
recorded sizes, and a prefix that holds parts but no manifest is an *unfinished* set: refused by readers,
finished by ``neuroray prepare … --resume``. Each kind's prepare writes the set into a local staging folder
(bounded by the set's size on disk), which is then uploaded part by part.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import pyarrow.fs as pafs

from neuroray.datasets.locations import STORE_ERRORS, open_uri, public
from neuroray.datasets.manifest import MANIFEST
from neuroray.errors import NeurorayError, ShardSetError, first_line

__all__ = ["remote_listing", "read_remote_text", "store_error", "unfinished_message", "sha256_stream",
           "check_remote_out", "prepare_to_uri"]

_PART = re.compile(r"^(train|val|test)/part-\d+\.parquet$")
_BESIDE = {MANIFEST, "prepared_by.json"}  # what a shard set holds besides its parts


def store_error(where: str, operation: str, e: BaseException) -> ShardSetError:
    """One line naming the URI and the operation the object store did not answer."""
    return ShardSetError(f"{where}: {operation} failed ({first_line(e)}); is the object store reachable, and do "
                         "the credentials (AWS_PROFILE / AWS_ACCESS_KEY_ID, or the node's role) allow it?")


def unfinished_message(shown: str, what: str = "") -> str:
    """What a reader (or ``--out``: ``what``) says about a prefix with parts and no manifest."""
    return (f"{what}{shown}: an unfinished shard set (parts but no {MANIFEST}: a prepare was interrupted); finish it "
            f"with the same `neuroray prepare … --out {shown} --resume`, or replace it with --overwrite")


def remote_listing(fs: pafs.FileSystem, base: str, shown: str) -> dict[str, int]:
    """``{path relative to base: bytes}`` of every object under ``base`` (one listing)."""
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except STORE_ERRORS as e:
        raise store_error(shown, "listing", e) from None
    return {i.path[len(base) + 1:]: int(i.size or 0) for i in infos if i.type == pafs.FileType.File}


def read_remote_text(fs: pafs.FileSystem, path: str, shown: str) -> str | None:
    """The text of one small object, None when it does not exist."""
    try:
        if fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with fs.open_input_stream(path) as f:
            return bytes(f.read()).decode()
    except STORE_ERRORS as e:
        raise store_error(shown, f"reading {path.rsplit('/', 1)[-1]}", e) from None


def sha256_stream(fs: pafs.FileSystem, path: str, chunk: int = 1 << 20) -> str:
    """The sha256 hex digest of an object, streamed."""
    h = hashlib.sha256()
    with fs.open_input_stream(path) as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_remote_out(uri: str, overwrite: bool, resume: bool) -> str:
    """Before any work: what is at ``--out URI`` — ``"empty"``, ``"unfinished"`` (parts, no manifest; needs
    --resume or --overwrite) or ``"finished"`` (needs --overwrite; with --resume there is nothing to do).
    Objects that are not a shard set's are never replaced."""
    shown = public(uri)
    if resume and overwrite:
        raise NeurorayError("--resume and --overwrite exclude each other: finish the set, or replace it")
    fs, base = open_uri(uri, "--out")
    listing = remote_listing(fs, base, shown)
    if not listing:
        return "empty"
    foreign = sorted(k for k in listing if k not in _BESIDE and not _PART.match(k))
    if foreign:
        raise ShardSetError(f"--out {shown}: holds objects that are not a shard set's ({foreign[0]}, …); "
                            "neuroray replaces only shard sets. Choose another prefix")
    if MANIFEST in listing:
        if not (overwrite or resume):
            raise ShardSetError(f"--out {shown}: a shard set already exists; pass --overwrite to replace it")
        return "finished"
    if not (overwrite or resume):
        raise ShardSetError(unfinished_message(shown, "--out "))
    return "unfinished"


class _Renamed(io.TextIOBase):
    """stdout with the staging folder's path shown as the URI it is published to."""

    def __init__(self, out: TextIO, local: str, uri: str) -> None:
        self._out, self._uri = out, uri
        self._local = re.compile(re.escape(local) + r"(?![\w.-])")  # the set itself, not <set>-inputs beside it

    def write(self, s: str) -> int:
        """Pass ``s`` on with the staging path replaced."""
        self._out.write(self._local.sub(self._uri, s))
        return len(s)

    def flush(self) -> None:
        """Flush the real stdout."""
        self._out.flush()


@contextlib.contextmanager
def _shown_as(local: Path, uri: str) -> Iterator[None]:
    with contextlib.redirect_stdout(_Renamed(sys.stdout, str(local), uri)):
        yield


def staging_folder(uri: str) -> Path:
    """The local folder a prepare for ``uri`` writes into: one per URI, so --resume finds its work again."""
    digest = hashlib.sha1(public(uri).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "neuroray-staging" / digest / "set"


def prepare_to_uri(uri: str, build: Callable[[Path], Any], overwrite: bool, resume: bool) -> int:
    """``build`` the set into the local staging folder, then publish it at ``uri``: parts, then the manifest.

    A part already there with the same bytes (sha256) is not uploaded again (``--resume``); objects of an
    earlier attempt that the new manifest does not list are removed before it is written."""
    shown = public(uri)
    state = check_remote_out(uri, overwrite, resume)
    if state == "finished" and resume:
        print(f"{shown}: the shard set is already complete; nothing to resume")
        return 0
    local = staging_folder(uri)
    local.parent.mkdir(parents=True, exist_ok=True)
    with _shown_as(local, shown):
        build(local)
    uploaded = _publish(local, uri, shown)
    shutil.rmtree(local.parent, ignore_errors=True)
    print(f"{shown}: published ({uploaded} of its files uploaded now, {MANIFEST} last)")
    return 0


def _publish(local: Path, uri: str, shown: str) -> int:
    fs, base = open_uri(uri, "--out")
    manifest = json.loads((local / MANIFEST).read_text())
    files: dict[str, str] = manifest["files"]
    beside = [p.name for p in local.iterdir() if p.is_file() and p.name != MANIFEST]
    listing = remote_listing(fs, base, shown)
    uploaded = 0
    operation = "listing"
    try:
        if MANIFEST in listing:  # --overwrite: unpublish first, so no reader ever pairs it with new parts
            operation = f"removing the old {MANIFEST}"
            fs.delete_file(f"{base}/{MANIFEST}")
        for rel in [*files, *beside]:
            operation = f"uploading {rel}"
            key = f"{base}/{rel}"
            if rel in files and listing.get(rel) == (local / rel).stat().st_size \
                    and sha256_stream(fs, key) == files[rel]:
                continue
            pafs.copy_files(str(local / rel), key, destination_filesystem=fs)
            uploaded += 1
        for rel in sorted(set(listing) - set(files) - set(beside) - {MANIFEST}):
            operation = f"removing {rel} (left by an earlier attempt)"
            fs.delete_file(f"{base}/{rel}")
        operation = f"writing {MANIFEST}"
        with fs.open_output_stream(f"{base}/{MANIFEST}") as out:  # one PUT: the set appears complete or not at all
            out.write((local / MANIFEST).read_bytes())
    except STORE_ERRORS as e:
        raise ShardSetError(f"--out {shown}: {operation} failed ({first_line(e)}); nothing was published (no "
                            f"{MANIFEST}). Rerun the same command with --resume once the object store answers"
                            ) from None
    return uploaded
