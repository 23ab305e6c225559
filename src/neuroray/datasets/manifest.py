"""A shard set's ``manifest.json`` as a typed model, parsed once when the set is opened.

The core every shard set has is typed (modality, spec, columns, rows, files, …); what one prepare kind adds
(``target``, ``splits``, ``prepare``, ``conditioning`` …) is kept as extra keys. Item access (``m["rows"]``,
``m.get("target", {})``) reads both, so code and tests written against the JSON read the model unchanged.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from neuroray.errors import ShardSetError

__all__ = ["MANIFEST", "Manifest", "parse_manifest"]

MANIFEST = "manifest.json"  # written last: a folder or prefix without it holds no finished shard set


class Manifest(BaseModel):
    """manifest.json: schema version, modality and spec, column types, rows and files per split (with their
    checksums and sizes), steps, train-split normalization and target statistics, sources, skipped inputs."""

    model_config = ConfigDict(extra="allow", frozen=True)

    schema_version: int
    modality: str
    spec: dict[str, Any]
    columns: dict[str, dict[str, Any]]
    rows: dict[str, int]
    files: dict[str, str]
    sizes: dict[str, int] = {}  # absent in shard sets written before sizes were recorded
    preprocessing: list[dict[str, Any]] = []
    normalization: dict[str, Any] = {}
    target_stats: dict[str, dict[str, Any]] = {}
    sources: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    created_by: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key in type(self).model_fields:
            return getattr(self, key)
        extra = self.model_extra or {}
        if key in extra:
            return extra[key]
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        """``self[key]``, or ``default`` when the manifest has no such key."""
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return key in self.model_fields_set or key in (self.model_extra or {})


def parse_manifest(data: dict[str, Any], where: str) -> Manifest:
    """``data`` (the parsed JSON of ``where``) as a Manifest; a wrong key is one line naming it."""
    try:
        return Manifest.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ShardSetError(f"{where}: {key}: {err['msg']}; not a manifest neuroray wrote. Re-run `neuroray "
                            "prepare` for this shard set") from None
