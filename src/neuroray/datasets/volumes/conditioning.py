"""Study conditioning columns: journal codes, term/topic weights, train-only statistics.

* ``journal_code`` (int32): journals with at least ``min_count`` studies in the TRAIN split get codes 1, 2, …
  (most frequent first, ties by name); every other journal — rare, empty, or seen only in val/test — is 0,
  ``"other"``. The vocabulary (index = code) is stored in the manifest.
* ``term_<name>`` (float32): optional term or topic weights joined on the study id from ``--terms FILE``:

  - a Neurosynth ``*_features.npz`` (scipy sparse, one row per study in the order of the ``metadata.tsv.gz``
    beside the coordinates, e.g. ``data-neurosynth_version-7_vocab-LDA50_source-abstract_type-weight_features.npz``)
    with its ``*vocabulary.txt`` (one label per line, same ``vocab-``/``version-`` tags) in the same folder;
  - or a tab-separated table with an ``id`` column and one numeric column per term.

  Column names are ``term_`` + the label lower-cased with every run of other characters replaced by ``_``
  (``working memory`` → ``term_working_memory``). Studies absent from the file get NaN.
* ``year_z``, ``n_peaks_z``: year and peak count standardized with the train split's mean/std, ready for a
  model that expects standardized conditioning (vae3d's ``cond_columns``).

``target_stats`` in the manifest holds mean/std/count (population std, NaN ignored) of every numeric column,
computed from train rows only, as for EEG targets.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neuroray.datasets.shards import sha256_file
from neuroray.errors import NeurorayError

OTHER = "other"
TERM_PREFIX = "term_"
STANDARDIZED = ("year", "n_peaks")
NOT_NUMERIC = ("study_id", "space", "journal", "path", "journal_code")


# --- journals --------------------------------------------------------------------------------------------------


def journal_vocabulary(train_journals: Sequence[str], min_count: int) -> list[str]:
    """``["other", j1, j2, …]``: train journals with >= ``min_count`` studies, most frequent first."""
    counts = Counter(j for j in train_journals if j)
    kept = sorted((j for j, n in counts.items() if n >= min_count), key=lambda j: (-counts[j], j))
    return [OTHER, *kept]


def encode_journals(journals: Sequence[str], vocabulary: list[str]) -> np.ndarray:
    """Journal names → int32 codes: the index in ``vocabulary``, 0 (``other``) for a journal not in it."""
    code = {j: i for i, j in enumerate(vocabulary) if i > 0}
    return np.array([code.get(j, 0) for j in journals], dtype=np.int32)


# --- term / topic weights --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Terms:
    """Term/topic weights from ``--terms``: weights per study id, column → label, the file kind and its files."""

    weights: pd.DataFrame  # index: study id (str); columns: term_<name>, float32
    labels: dict[str, str]  # column → the file's label
    kind: str  # "neurosynth-npz" | "tsv"
    files: tuple[Path, ...]

    def info(self, ids: Sequence[str]) -> dict[str, Any]:
        """Manifest entry: kind, columns, how many of ``ids`` have no weights, and the source files with sha256."""
        missing = int((~pd.Index(ids).isin(self.weights.index)).sum())
        return {"kind": self.kind, "columns": self.labels, "studies_without_weights": missing,
                "sources": [{"path": str(p.resolve()), "sha256": sha256_file(p)} for p in self.files]}


def term_column(label: str) -> str:
    """Column name for a term label: ``term_`` + the label lower-cased, other character runs as ``_``."""
    return TERM_PREFIX + (re.sub(r"[^0-9a-z]+", "_", label.lower()).strip("_") or "_")


def _columns_for(labels: list[str], where: Path) -> list[str]:
    cols = [term_column(t) for t in labels]
    repeated = [c for c, n in Counter(cols).items() if n > 1]
    if repeated:
        clash = [t for t in labels if term_column(t) == repeated[0]]
        raise NeurorayError(f"--terms {where}: labels {clash} all become column {repeated[0]!r}; rename one")
    return cols


def _select(labels: list[str], names: Sequence[str] | None, where: Path) -> list[int]:
    """Indices of the requested labels (by label or by column name); all of them without ``names``."""
    if not names:
        return list(range(len(labels)))
    by_label = {t: i for i, t in enumerate(labels)}
    by_column = {term_column(t): i for i, t in enumerate(labels)}
    unknown = [n for n in names if n not in by_label and n not in by_column]
    if unknown:
        raise NeurorayError(f"--term-names {', '.join(unknown)}: not in {where} (it has {len(labels)} labels, "
                            f"e.g. {', '.join(labels[:5])})")
    return [by_label[n] if n in by_label else by_column[n] for n in names]


def _vocabulary_beside(features: Path) -> Path:
    tags = [t for t in features.name.split("_") if t.startswith(("vocab-", "version-"))]
    matches = sorted(p for p in features.parent.glob("*vocabulary.txt")
                     if all(t in p.name.removesuffix(".txt").split("_") for t in tags))
    if len(matches) != 1:
        what = "no" if not matches else f"{len(matches)}"
        raise NeurorayError(f"--terms {features}: {what} matching *vocabulary.txt beside it (tags "
                            f"{', '.join(tags) or 'none'}); put the release's vocabulary file in the same folder")
    return matches[0]


def _read_npz(path: Path, metadata: Path | None, names: Sequence[str] | None,
              ids: Sequence[str]) -> Terms:
    from scipy import sparse

    if metadata is None:
        raise NeurorayError(f"--terms {path}: a Neurosynth features .npz needs the metadata.tsv.gz of the same "
                            "release (its rows are in metadata order); use it with --neurosynth, or pass a TSV")
    vocab_path = _vocabulary_beside(path)
    labels = [line.strip() for line in vocab_path.read_text().splitlines() if line.strip()]
    try:
        matrix = sparse.load_npz(path).tocsr()
    except (OSError, ValueError) as e:
        raise NeurorayError(f"--terms {path}: not a scipy sparse .npz ({type(e).__name__}: {e})") from None
    order = pd.read_csv(metadata, sep="\t", dtype={"id": str}, usecols=["id"])["id"].tolist()
    if matrix.shape != (len(order), len(labels)):
        raise NeurorayError(f"--terms {path}: {matrix.shape[0]} rows x {matrix.shape[1]} columns, but {metadata} "
                            f"has {len(order)} studies and {vocab_path.name} {len(labels)} labels; use files of "
                            "one release")
    keep = _select(labels, names, path)
    row_of = {k: i for i, k in enumerate(order)}
    wanted = [k for k in dict.fromkeys(ids) if k in row_of]
    dense = matrix[[row_of[k] for k in wanted]][:, keep].toarray().astype(np.float32)
    chosen = [labels[i] for i in keep]
    cols = _columns_for(chosen, path)
    return Terms(pd.DataFrame(dense, index=pd.Index(wanted, name="id"), columns=cols),
                 dict(zip(cols, chosen, strict=True)), "neurosynth-npz", (path, vocab_path))


def _read_tsv(path: Path, names: Sequence[str] | None) -> Terms:
    try:
        table = pd.read_csv(path, sep="\t", dtype={"id": str})
    except (OSError, ValueError, EOFError) as e:
        raise NeurorayError(f"--terms {path}: cannot read as a tab-separated table ({type(e).__name__}: {e})") \
            from None
    if "id" not in table.columns:
        raise NeurorayError(f"--terms {path}: missing column id; a terms TSV holds id plus one numeric column per "
                            f"term (columns: {', '.join(map(str, table.columns[:8]))})")
    if table["id"].duplicated().any():
        raise NeurorayError(f"--terms {path}: id {table['id'][table['id'].duplicated()].iloc[0]} repeats; one row "
                            "per study")
    labels = [str(c) for c in table.columns if c != "id"]
    keep = [labels[i] for i in _select(labels, names, path)]
    bad = [c for c in keep if not pd.api.types.is_numeric_dtype(table[c])]
    if bad or not keep:
        raise NeurorayError(f"--terms {path}: " + (f"column(s) {', '.join(bad[:5])} are not numeric" if bad
                                                   else "no term columns besides id") + "; a terms TSV holds id "
                            "plus one numeric column per term")
    cols = _columns_for(keep, path)
    weights = table.set_index("id")[keep].astype(np.float32)
    weights.columns = cols
    return Terms(weights, dict(zip(cols, keep, strict=True)), "tsv", (path,))


def read_terms(path: str | Path, ids: Sequence[str], metadata: Path | None = None,
               names: Sequence[str] | None = None) -> Terms:
    """Term/topic weights of the studies ``ids`` (see the module doc for the two layouts)."""
    path = Path(path)
    if not path.is_file():
        raise NeurorayError(f"--terms {path}: not a file; expected a Neurosynth *features.npz or a TSV with an "
                            "id column")
    if path.suffix == ".npz":
        return _read_npz(path, metadata, names, ids)
    return _read_tsv(path, names)


def join_terms(columns: pd.DataFrame, terms: Terms) -> pd.DataFrame:
    """``columns`` with the term weight columns appended, matched on ``study_id`` (NaN without weights)."""
    weights = terms.weights.reindex(columns["study_id"].astype(str).to_numpy())
    return pd.concat([columns.reset_index(drop=True), weights.reset_index(drop=True)], axis=1)


# --- train-only statistics -------------------------------------------------------------------------------------


def numeric_stats(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Mean/std (population) and count of each numeric column, NaN ignored."""
    out: dict[str, dict[str, float]] = {}
    for name in frame.columns:
        if name in NOT_NUMERIC or not pd.api.types.is_numeric_dtype(frame[name]):
            continue
        v = frame[name].to_numpy(dtype=np.float64)
        v = v[np.isfinite(v)]
        if len(v):
            out[name] = {"mean": float(v.mean()), "std": float(v.std()), "count": len(v)}
    return out


def finish_columns(columns: pd.DataFrame, train: np.ndarray,
                   min_journal_count: int) -> tuple[pd.DataFrame, dict[str, Any], dict[str, dict[str, float]]]:
    """Add ``journal_code`` and the ``_z`` columns from train rows (boolean ``train``) only.

    Returns ``(columns, conditioning info for the manifest, target_stats)``.
    """
    columns = columns.copy()
    info: dict[str, Any] = {}
    stats = numeric_stats(columns[train])
    if "journal" in columns.columns:
        vocab = journal_vocabulary(columns.loc[train, "journal"].astype(str).tolist(), min_journal_count)
        columns["journal_code"] = encode_journals(columns["journal"].astype(str).tolist(), vocab)
        info["journal"] = {"column": "journal_code", "vocabulary": vocab, "other": 0,
                           "min_count": min_journal_count, "from": "train"}
    for name in STANDARDIZED:
        if name in stats:
            mean, std = stats[name]["mean"], stats[name]["std"] or 1.0
            columns[f"{name}_z"] = ((columns[name].to_numpy(np.float64) - mean) / std).astype(np.float32)
            info.setdefault("standardized", {})[f"{name}_z"] = {"from": name, "mean": mean, "std": std,
                                                               "stats_from": "train"}
    info["columns"] = [c for c in columns.columns if c not in ("study_id", "space", "journal", "path")]
    return columns, info, stats
