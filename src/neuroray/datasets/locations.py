"""Where a shard set (or a run) lives: a local folder, or a pyarrow filesystem URI (``s3://bucket/prefix``).

A URI may carry pyarrow's options in its query (``?endpoint_override=host:port&scheme=http``); credentials
come from the usual AWS chain (``AWS_PROFILE``, ``AWS_ACCESS_KEY_ID`` …, the node's IAM role). A URI that
names credentials in its query (``access_key=…``) is accepted, but ``public`` strips them from whatever
neuroray prints or records.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.fs as pafs

from neuroray.errors import NeurorayError, first_line

__all__ = ["is_uri", "join", "open_uri", "public", "normalize"]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SECRET_KEYS = {"access_key", "secret_key", "session_token"}
STORE_ERRORS = (OSError, pa.ArrowException)  # what pyarrow raises when an object store does not answer


def is_uri(path: str | Path) -> bool:
    """``s3://…``, ``gs://…``, ``hdfs://…``: a remote filesystem. ``file://`` and plain paths are local."""
    text = str(path)
    return bool(_SCHEME.match(text)) and not text.startswith("file://")


def join(uri: str, *parts: str) -> str:
    """Append path parts to a URI, keeping its query (``?endpoint_override=…``) at the end."""
    s = urlsplit(uri)
    path = "/".join([s.path.rstrip("/"), *(p.strip("/") for p in parts)])
    return urlunsplit((s.scheme, s.netloc, path, s.query, s.fragment))


def public(location: str | Path) -> str:
    """``location`` without credentials in its query: what logs, manifests and run folders may hold."""
    text = str(location)
    if not is_uri(text):
        return text
    s = urlsplit(text)
    query = [(k, v) for k, v in parse_qsl(s.query) if k not in _SECRET_KEYS]
    return urlunsplit((s.scheme, s.netloc, s.path.rstrip("/"), urlencode(query), s.fragment))


def normalize(location: str | Path) -> str:
    """One spelling per shard set (``data/x/`` and ``data/x`` are one set; so are ``s3://b/x/`` and ``s3://b/x``)."""
    text = str(location)
    if not is_uri(text):
        return str(Path(text[len("file://"):] if text.startswith("file://") else text))
    s = urlsplit(text)
    return urlunsplit((s.scheme, s.netloc, s.path.rstrip("/"), s.query, s.fragment))


def open_uri(uri: str, what: str) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path on it) of ``uri``; one error line naming ``what`` when pyarrow cannot open it."""
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, OSError) as e:
        raise NeurorayError(f"{what} {public(uri)}: pyarrow cannot open this URI ({first_line(e)}); use a local "
                            "folder or s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, hdfs://HOST/PATH") from None
    return fs, path.rstrip("/")
