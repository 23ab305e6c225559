"""Parquet shard sets: atomic writer, checksummed manifest, verifying reader (DESIGN §3).

Layout: ``<out>/{train,val,test}/part-00000.parquet`` + ``<out>/manifest.json``. The sample tensor
column ``x`` is a fixed-shape float32 Arrow tensor; targets and metadata are plain columns.
Everything is written under a temporary sibling folder and renamed into place once the manifest
(written last) is complete, so a reader never sees half a shard set.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import shutil
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from neuroray import __version__
from neuroray.datasets.locations import STORE_ERRORS, is_uri, normalize, open_uri, public
from neuroray.datasets.manifest import MANIFEST, Manifest, parse_manifest
from neuroray.datasets.remote_shards import (
    read_remote_text,
    remote_listing,
    sha256_stream,
    store_error,
    unfinished_message,
)
from neuroray.datasets.spec import Spec, spec_from_dict
from neuroray.datasets.splits import SPLITS
from neuroray.errors import ShardSetError, first_line

SCHEMA_VERSION = 1


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """The sha256 hex digest of ``path``, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _local_size(path: str) -> int | None:
    return os.stat(path).st_size if os.path.isfile(path) else None


def _digest(fs: pafs.FileSystem | None, path: str) -> str:
    return sha256_file(Path(path)) if fs is None else sha256_stream(fs, path)


def not_replaceable(out: Path) -> str | None:
    """Why writing a shard set at ``out`` would destroy something else (None when it would not).

    Only an absent path, an empty folder or a shard set (a folder with a manifest) may be replaced: a
    folder of someone's files, or a file, named as ``--out``/``data.shards`` by mistake must survive."""
    if not out.exists() and not out.is_symlink():
        return None
    if out.is_symlink():
        return "is a symbolic link, not a shard set"
    if not out.is_dir():
        return "is a file, not a shard set folder"
    if (out / MANIFEST).is_file() or not any(out.iterdir()):
        return None
    return f"is a folder that holds no shard set (no {MANIFEST})"


def refuse_unless_replaceable(out: str | Path, what: str = "--out") -> None:
    """One error line (nothing touched) when ``out`` exists and is not a shard set or an empty folder; a URI
    (data.prepare never writes one) must already hold a finished set."""
    if is_uri(out):
        if not shards_exist(str(out)):
            raise ShardSetError(f"{what}: {public(out)} holds no finished shard set, and data.prepare writes local "
                                f"folders only; prepare it first with `neuroray prepare <kind> … --out {public(out)}`")
        return
    out = Path(out)
    reason = not_replaceable(out)
    if reason:
        raise ShardSetError(f"{what}: {out} {reason}; neuroray replaces only shard sets. Move it away or "
                            "choose another path")


def shards_exist(location: str | Path) -> bool:
    """Whether ``location`` (a folder or a URI) holds a finished shard set: its manifest is there."""
    if not is_uri(location):
        return (Path(normalize(location)) / MANIFEST).is_file()
    fs, base = open_uri(str(location), "shard set")
    try:
        return bool(fs.get_file_info(f"{base}/{MANIFEST}").type == pafs.FileType.File)
    except STORE_ERRORS as e:
        raise store_error(public(location), f"looking for {MANIFEST}", e) from None


def tensor_array(x: np.ndarray) -> pa.ExtensionArray:
    """(N, *shape) float32 → Arrow fixed-shape tensor column (zero-copy from the contiguous buffer)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    typ = pa.fixed_shape_tensor(pa.float32(), list(x.shape[1:]))
    storage = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), int(np.prod(x.shape[1:])))
    return pa.ExtensionArray.from_storage(typ, storage)


def _describe(name: str, arr: pa.Array) -> dict[str, Any]:
    if isinstance(arr.type, pa.FixedShapeTensorType):
        return {"dtype": str(arr.type.value_type), "shape": list(arr.type.shape)}
    return {"dtype": str(arr.type)}


@dataclass
class ShardSetWriter:
    """Collects splits, then commits a complete shard set at ``out`` in one rename."""

    out: Path
    spec: Spec
    preprocessing: list[dict[str, Any]] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    rows_per_file: int = 4096
    overwrite: bool = False

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.out.exists() and not self.overwrite:
            raise ShardSetError(f"{self.out}: already exists; pass overwrite=True or choose another --out")
        refuse_unless_replaceable(self.out)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.out.with_name(f".{self.out.name}.tmp-{os.getpid()}")
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp.mkdir()
        self._rows: dict[str, int] = dict.fromkeys(SPLITS, 0)
        self._columns: dict[str, Any] = {}
        self._parts: dict[str, int] = dict.fromkeys(SPLITS, 0)

    def write(self, split: str, x: np.ndarray,
              columns: Mapping[str, Sequence[Any] | np.ndarray | pa.Array | pa.ChunkedArray]) -> None:
        """Append rows to ``split``; ``x`` is (N, *spec.shape)."""
        if split not in SPLITS:
            raise ShardSetError(f"unknown split {split!r}; allowed: {list(SPLITS)}")
        expected = self.spec.sample_shape
        if expected and tuple(x.shape[1:]) != expected:
            raise ShardSetError(f"sample shape {tuple(x.shape[1:])} differs from the spec's {expected}")
        if len(x) == 0:
            return
        for start in range(0, len(x), self.rows_per_file):
            stop = min(start + self.rows_per_file, len(x))
            arrays = {"x": tensor_array(x[start:stop])}
            for name, values in columns.items():
                if isinstance(values, pa.Array | pa.ChunkedArray):
                    arrays[name] = values.slice(start, stop - start)
                elif isinstance(values, np.ndarray):
                    arrays[name] = pa.array(values[start:stop])
                else:
                    arrays[name] = pa.array(list(values)[start:stop])
            table = pa.table(arrays)
            folder = self._tmp / split
            folder.mkdir(exist_ok=True)
            pq.write_table(table, folder / f"part-{self._parts[split]:05d}.parquet")
            self._parts[split] += 1
            if not self._columns:
                self._columns = {n: _describe(n, a) for n, a in arrays.items()}
        self._rows[split] += len(x)

    def commit(
        self,
        normalization: dict[str, Any] | None = None,
        skipped: list[dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Checksum every file, write the manifest last, then move the set into place."""
        parts = sorted(self._tmp.rglob("*.parquet"))
        files = {str(p.relative_to(self._tmp)): sha256_file(p) for p in parts}
        sizes = {str(p.relative_to(self._tmp)): p.stat().st_size for p in parts}
        manifest: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "modality": self.spec.modality,
            "spec": self.spec.to_dict(),
            "columns": self._columns,
            "rows": self._rows,
            "preprocessing": self.preprocessing,
            "normalization": normalization or {},
            "sources": self.sources,
            "skipped": skipped or [],
            "files": files,
            "sizes": sizes,
            "created_by": {
                "tool": f"neuroray {__version__}",
                "user": getpass.getuser(),
                "host": socket.gethostname(),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
            **(extra or {}),
        }
        (self._tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=_json_default))
        old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
        if self.out.exists():  # --overwrite: the old set stays whole (beside it) until the new one is in place
            os.replace(self.out, old)
        os.replace(self._tmp, self.out)
        shutil.rmtree(old, ignore_errors=True)
        return manifest

    def abort(self) -> None:
        """Remove everything written so far (the temp folder)."""
        shutil.rmtree(self._tmp, ignore_errors=True)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


@dataclass(frozen=True)
class ShardSet:
    """A verified shard set: ``root`` as printed and recorded (an absolute folder, or a URI without
    credentials); ``fs`` + ``base`` where its files are read (``fs`` None: the local filesystem)."""

    root: str
    manifest: Manifest
    fs: pafs.FileSystem | None = None
    base: str = ""

    @property
    def spec(self) -> Spec:
        """The sample spec the manifest records."""
        return spec_from_dict(self.manifest.modality, self.manifest.spec)

    @property
    def remote(self) -> bool:
        """Whether the set is on an object store (``s3://…``) rather than a local folder."""
        return self.fs is not None

    def files(self, split: str) -> list[str]:
        """One split's Parquet files: absolute paths, or paths on ``fs`` for a remote set."""
        base = self.base or self.root
        return [f"{base}/{rel}" for rel in self.manifest.files if rel.startswith(f"{split}/")]

    def rows(self, split: str) -> int:
        """Rows in one split, as the manifest records."""
        return int(self.manifest.rows.get(split, 0))

    def read_text(self, name: str) -> str | None:
        """A small file beside the manifest (``prepared_by.json``), None when there is none."""
        if self.fs is None:
            path = Path(self.root) / name
            return path.read_text() if path.is_file() else None
        return read_remote_text(self.fs, f"{self.base}/{name}", self.root)

    def read_split(self, split: str, columns: Sequence[str] | None = None) -> pa.Table:
        """Whole split as one Arrow table (plain single-process path: tests, baselines, export)."""
        files = self.files(split)
        if not files:
            raise ShardSetError(f"{self.root}: split {split!r} has no files")
        cols = list(columns) if columns else None
        try:
            return pa.concat_tables([pq.read_table(f, columns=cols, filesystem=self.fs) for f in files])
        except STORE_ERRORS as e:
            raise store_error(self.root, f"reading split {split!r}", e) from None


def tensor_column_to_numpy(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A fixed-shape tensor column as one float32 array (rows first)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    return np.asarray(col.to_numpy_ndarray(), dtype=np.float32)


def _check_parquet(fs: pafs.FileSystem | None, path: str, sample_shape: tuple[int, ...]) -> int:
    """The footer must parse and its x must be float32 samples of the manifest's shape: a corrupt or foreign
    shard fails here with its name, not deep inside a Ray Data read or a model. Returns the footer's rows."""
    try:
        meta = pq.read_metadata(path, filesystem=fs)
        schema = meta.schema.to_arrow_schema()
        x_type = schema.field("x").type if "x" in schema.names else None
    except (pa.ArrowException, OSError) as e:
        raise ShardSetError(f"{path}: not a readable Parquet file ({first_line(e)}); the shard is corrupt. "
                            "Re-run `neuroray prepare` for this shard set") from None
    value = getattr(x_type, "value_type", None)
    if x_type is None or value != pa.float32():
        raise ShardSetError(f"{path}: column x is {x_type or 'missing'}; a shard set's samples are a float32 "
                            "tensor column. Re-run `neuroray prepare` for this shard set")
    shape = tuple(int(d) for d in getattr(x_type, "shape", ()) or ())
    if shape and shape != tuple(sample_shape):
        raise ShardSetError(f"{path}: samples of shape {shape}, the manifest's spec says {tuple(sample_shape)}; "
                            "the manifest and the data disagree. Re-run `neuroray prepare` for this shard set")
    return int(meta.num_rows)


def _load_manifest(location: str) -> tuple[str, pafs.FileSystem | None, str, Any, dict[str, int] | None]:
    """(root as shown, fs, base, the parsed JSON, sizes of every file for a remote set) of ``location``."""
    if not is_uri(location):
        root = str(Path(normalize(location)).resolve())
        mpath = Path(root) / MANIFEST
        if not mpath.is_file():
            raise ShardSetError(f"{root}: no {MANIFEST}; not a shard set (or an interrupted write). "
                                "Prepare it with `neuroray prepare` or point data.shards at a finished one")
        text = mpath.read_text()
        fs, base, listing = None, root, None
    else:
        root = public(normalize(location))
        fs, base = open_uri(location, "shard set")
        listing = remote_listing(fs, base, root)
        if MANIFEST not in listing:
            raise ShardSetError(unfinished_message(root) if listing else
                                f"{root}: no {MANIFEST}; not a shard set. Prepare it with `neuroray prepare … "
                                "--out` that URI or point data.shards at a finished one")
        text = read_remote_text(fs, f"{base}/{MANIFEST}", root) or ""
    try:
        return root, fs, base, json.loads(text), listing
    except json.JSONDecodeError as e:
        raise ShardSetError(f"{root}/{MANIFEST}: not valid JSON ({e.msg} at line {e.lineno})") from None


def open_shard_set(root: str | Path, expect_spec: Spec | None = None, verify: str | None = None) -> ShardSet:
    """Open and verify a shard set (a folder or a URI); refuses a missing manifest, changed files or a different
    spec. ``verify`` defaults to ``sha256`` for a folder and ``size`` (+ Parquet footers) for a URI.

    A folder is made absolute: Ray tasks that read the files run in other working directories.
    """
    shown, fs, base, manifest, listing = _load_manifest(str(root))
    mpath = f"{shown}/{MANIFEST}"
    verify = verify or ("sha256" if fs is None else "size")
    if not isinstance(manifest, dict):
        raise ShardSetError(f"{mpath}: a JSON {type(manifest).__name__}, not an object; re-run `neuroray prepare`")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ShardSetError(f"{mpath}: schema_version {manifest.get('schema_version')!r}; "
                            f"this neuroray reads {SCHEMA_VERSION}")
    if verify not in ("sha256", "size", "none"):
        raise ShardSetError(f"verify={verify!r}; allowed: sha256, size, none")
    missing = [k for k in ("modality", "spec", "rows", "files", "columns") if k not in manifest]
    if missing:
        raise ShardSetError(f"{mpath}: lacks {', '.join(missing)}; not a manifest neuroray wrote. Re-run "
                            "`neuroray prepare` for this shard set")
    manifest = parse_manifest(manifest, mpath)
    try:
        sample_shape = spec_from_dict(manifest["modality"], manifest["spec"]).sample_shape
    except (KeyError, TypeError, ValueError) as e:
        raise ShardSetError(f"{mpath}: spec {manifest['spec']!r} is not a {manifest['modality']} spec "
                            f"({type(e).__name__}: {e}); re-run `neuroray prepare`") from None
    sizes = manifest.sizes
    footer_rows: dict[str, int] = {}
    for rel, digest in manifest.files.items():
        path = f"{base}/{rel}"
        shown_path = f"{shown}/{rel}"
        size = listing.get(rel) if listing is not None else _local_size(path)
        if size is None:
            raise ShardSetError(f"{shown_path}: listed in {MANIFEST} but missing")
        if verify == "none":
            continue
        if rel in sizes and size != sizes[rel]:
            raise ShardSetError(f"{shown_path}: {size} bytes, {MANIFEST} says {sizes[rel]}; the file "
                                "changed or was cut short. Re-run `neuroray prepare` for this shard set")
        try:
            if verify == "sha256" and _digest(fs, path) != digest:
                raise ShardSetError(f"{shown_path}: checksum differs from {MANIFEST}; the file changed or is "
                                    "corrupt. Re-run `neuroray prepare` for this shard set")
        except STORE_ERRORS as e:
            raise store_error(shown, f"reading {rel}", e) from None
        split = rel.split("/", 1)[0]
        footer_rows[split] = footer_rows.get(split, 0) + _check_parquet(fs, path, sample_shape)
    if verify != "none":  # a metric computed on fewer rows than the manifest promises would look fine
        for split, rows in manifest.rows.items():
            if int(rows) != footer_rows.get(split, 0):
                raise ShardSetError(f"{shown}: split {split!r} holds {footer_rows.get(split, 0)} rows in its "
                                    f"Parquet files, {MANIFEST} says {rows}; a shard was replaced or cut. Re-run "
                                    "`neuroray prepare` for this shard set")
    shard_set = ShardSet(root=shown, manifest=manifest, fs=fs, base=base)
    if expect_spec is not None and shard_set.spec != expect_spec:
        raise ShardSetError(f"{shown}: spec {shard_set.spec.to_dict()} differs from the experiment's "
                            f"{expect_spec.to_dict()}")
    return shard_set
