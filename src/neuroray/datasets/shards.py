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
import pyarrow.parquet as pq

from neuroray import __version__
from neuroray.datasets.manifest import Manifest, parse_manifest
from neuroray.datasets.spec import Spec, spec_from_dict
from neuroray.datasets.splits import SPLITS
from neuroray.errors import ShardSetError, first_line

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """The sha256 hex digest of ``path``, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


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


def refuse_unless_replaceable(out: Path, what: str = "--out") -> None:
    """One error line (nothing touched) when ``out`` exists and is not a shard set or an empty folder."""
    reason = not_replaceable(out)
    if reason:
        raise ShardSetError(f"{what}: {out} {reason}; neuroray replaces only shard sets. Move it away or "
                            "choose another path")


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
    """A verified shard set on disk."""

    root: Path
    manifest: Manifest

    @property
    def spec(self) -> Spec:
        """The sample spec the manifest records."""
        return spec_from_dict(self.manifest.modality, self.manifest.spec)

    def files(self, split: str) -> list[str]:
        """Absolute paths of one split's Parquet files."""
        return [str(self.root / rel) for rel in self.manifest.files if rel.startswith(f"{split}/")]

    def rows(self, split: str) -> int:
        """Rows in one split, as the manifest records."""
        return int(self.manifest.rows.get(split, 0))

    def read_split(self, split: str, columns: Sequence[str] | None = None) -> pa.Table:
        """Whole split as one Arrow table (plain single-process path: tests, baselines, export)."""
        files = self.files(split)
        if not files:
            raise ShardSetError(f"{self.root}: split {split!r} has no files")
        return pa.concat_tables([pq.read_table(f, columns=list(columns) if columns else None) for f in files])


def tensor_column_to_numpy(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A fixed-shape tensor column as one float32 array (rows first)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    return np.asarray(col.to_numpy_ndarray(), dtype=np.float32)


def _check_parquet(path: Path, sample_shape: tuple[int, ...]) -> int:
    """The footer must parse and its x must be float32 samples of the manifest's shape: a corrupt or foreign
    shard fails here with its name, not deep inside a Ray Data read or a model. Returns the footer's rows."""
    try:
        meta = pq.read_metadata(path)
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


def open_shard_set(root: str | Path, expect_spec: Spec | None = None, verify: str = "sha256") -> ShardSet:
    """Open and verify a shard set; refuses a missing manifest, changed files or a different spec.

    The root is made absolute: Ray tasks that read the files run in other working directories.
    """
    root = Path(root).resolve()
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise ShardSetError(f"{root}: no {MANIFEST}; not a shard set (or an interrupted write). "
                            "Prepare it with `neuroray prepare` or point data.shards at a finished one")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        raise ShardSetError(f"{mpath}: not valid JSON ({e.msg} at line {e.lineno})") from None
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
    manifest = parse_manifest(manifest, str(mpath))
    try:
        sample_shape = spec_from_dict(manifest["modality"], manifest["spec"]).sample_shape
    except (KeyError, TypeError, ValueError) as e:
        raise ShardSetError(f"{mpath}: spec {manifest['spec']!r} is not a {manifest['modality']} spec "
                            f"({type(e).__name__}: {e}); re-run `neuroray prepare`") from None
    sizes = manifest.sizes
    footer_rows: dict[str, int] = {}
    for rel, digest in manifest.files.items():
        path = root / rel
        if not path.is_file():
            raise ShardSetError(f"{path}: listed in {MANIFEST} but missing")
        if verify == "none":
            continue
        if rel in sizes and path.stat().st_size != sizes[rel]:
            raise ShardSetError(f"{path}: {path.stat().st_size} bytes, {MANIFEST} says {sizes[rel]}; the file "
                                "changed or was cut short. Re-run `neuroray prepare` for this shard set")
        if verify == "sha256" and sha256_file(path) != digest:
            raise ShardSetError(f"{path}: checksum differs from {MANIFEST}; the file changed or is corrupt. "
                                "Re-run `neuroray prepare` for this shard set")
        split = rel.split("/", 1)[0]
        footer_rows[split] = footer_rows.get(split, 0) + _check_parquet(path, sample_shape)
    if verify != "none":  # a metric computed on fewer rows than the manifest promises would look fine
        for split, rows in manifest.rows.items():
            if int(rows) != footer_rows.get(split, 0):
                raise ShardSetError(f"{root}: split {split!r} holds {footer_rows.get(split, 0)} rows in its Parquet "
                                    f"files, {MANIFEST} says {rows}; a shard was replaced or cut. Re-run "
                                    "`neuroray prepare` for this shard set")
    shard_set = ShardSet(root=root, manifest=manifest)
    if expect_spec is not None and shard_set.spec != expect_spec:
        raise ShardSetError(f"{root}: spec {shard_set.spec.to_dict()} differs from the experiment's "
                            f"{expect_spec.to_dict()}")
    return shard_set
