"""The per-token table: schema, reading and writing, validation, and the documents.

The contract between the model side and the analysis side (`../shared/DESIGN.md`):
one row per scored token, with at least

    doc_id      str    the document's `id` in the documents JSONL
    domain      str    the document's domain (books, python, ...)
    window      int    index of the packed window the token was scored in
    position    int    the token's position in that window
    token_id    int    the target token
    char_start  int    offsets of the token in the document's text (Python str
    char_end    int    indices, end exclusive)
    loss        float  -log p(token | prefix), in nats

and optionally `entropy` (nats) and `rank`. A table may carry its model name and
training step as parquet metadata (`hybrid_jax.model`, `hybrid_jax.step`).

Two tables compared token by token must be row-aligned: the same eval pack, so the same
keys and token ids at every row. `check_aligned` verifies that and raises naming the
first mismatching rows; nothing here ever joins tables on keys, because a join would
silently drop or duplicate tokens when the packs differ.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hybrid_jax.errors import UserError

REQUIRED: dict[str, str] = {
    "doc_id": "str", "domain": "str", "window": "int", "position": "int",
    "token_id": "int", "char_start": "int", "char_end": "int", "loss": "float",
}
OPTIONAL: dict[str, str] = {"entropy": "float", "rank": "int"}
ALIGN_KEYS = ("doc_id", "window", "position", "token_id", "char_start", "char_end")
ORDER = ("window", "position")  # canonical row order: contexts are contiguous
_META_MODEL = b"hybrid_jax.model"
_META_STEP = b"hybrid_jax.step"
_META_DOC_DIGESTS = b"hybrid_jax.doc_digests"
SCORES_SIDE_CAR = "scores.json"  # written by hybrid_jax.scoring.writer when complete
SCORES_PARTIAL = "scores.partial.json"  # the same while scoring is under way
SCORES_FORMAT = "hybrid_jax.scores/1"


class TableError(UserError, ValueError):
    """A per-token table or documents file that cannot be analysed as given."""


@dataclasses.dataclass
class ScoreTable:
    """One model's per-token table, validated and in canonical (window, position) order.

    name:  a label for reports ("transformer", "hybrid@2000").
    model: the model name (metadata, or the label before "@").
    step:  the training step, or None when unknown.
    """

    name: str
    frame: pd.DataFrame
    model: str
    step: int | None = None
    path: str | None = None
    # A scorer directory's side-car provenance: pack_digest, checkpoint {path,
    # params_sha256}, model, step, ...; None for a plain parquet file.
    provenance: dict | None = None


@dataclasses.dataclass(frozen=True)
class Document:
    """One document of the eval pack: the text the table's char offsets point into."""

    id: str
    domain: str
    text: str
    lang: str = "en"


def _row_desc(frame: pd.DataFrame, i: int) -> str:
    row = frame.iloc[i]
    keys = [k for k in ("doc_id", "window", "position", "token_id", "char_start", "char_end")
            if k in frame.columns]
    vals = {k: row[k].item() if hasattr(row[k], "item") else row[k] for k in keys}
    return f"row {i} (" + ", ".join(f"{k}={v!r}" for k, v in vals.items()) + ")"


def validate_frame(frame: pd.DataFrame, name: str = "table") -> pd.DataFrame:
    """Checks columns, types, losses and keys; returns the frame sorted by (window,
    position) with a fresh index and normalised dtypes. Raises TableError naming the
    column or the first offending row."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise TableError(f"{name}: missing columns {missing} (has {list(frame.columns)})")
    if len(frame) == 0:
        raise TableError(f"{name}: no rows")
    out = frame.copy()
    for col, kind in {**REQUIRED, **OPTIONAL}.items():
        if col not in out.columns:
            continue
        s = out[col]
        if kind == "int":
            if not pd.api.types.is_integer_dtype(s):
                if pd.api.types.is_float_dtype(s) and s.notna().all() and (s % 1 == 0).all():
                    s = s.astype(np.int64)
                else:
                    raise TableError(f"{name}: column {col!r} must be integer, got {s.dtype}")
            out[col] = s.astype(np.int64)
        elif kind == "float":
            if not pd.api.types.is_numeric_dtype(s):
                raise TableError(f"{name}: column {col!r} must be numeric, got {s.dtype}")
            out[col] = s.astype(np.float64)
        else:
            out[col] = s.astype(str)
    loss = out["loss"].to_numpy()
    bad = ~np.isfinite(loss)
    if bad.any():
        i = int(np.argmax(bad))
        raise TableError(f"{name}: {int(bad.sum())} non-finite loss values (NaN or inf), "
                         f"first at {_row_desc(out, i)}: loss={loss[i]}")
    # -log p >= 0; allow float32 round-off of a probability of one.
    neg = loss < -1e-4
    if neg.any():
        i = int(np.argmax(neg))
        raise TableError(f"{name}: negative loss {loss[i]} at {_row_desc(out, i)}; "
                         "loss must be -log p in nats")
    span = out["char_end"].to_numpy() < out["char_start"].to_numpy()
    span |= out["char_start"].to_numpy() < 0
    if span.any():
        i = int(np.argmax(span))
        raise TableError(f"{name}: char_end < char_start or negative offset at "
                         f"{_row_desc(out, i)}")
    out = out.sort_values(list(ORDER), kind="stable").reset_index(drop=True)
    dup = out.duplicated(["window", "position"]).to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        raise TableError(f"{name}: two rows at the same (window, position): {_row_desc(out, i)}")
    return out


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def scorer_shards(directory: str | pathlib.Path) -> tuple[list[pathlib.Path], dict]:
    """The shard files of a complete scorer directory and its side-car.

    A table is one parquet file (any tool can write one) or a scorer's output
    directory: parquet shards plus the side-car `scores.json`, which names the complete
    shard set (size and sha256 of each) and its provenance (the eval pack's digest, the
    checkpoint's path and parameter digest; `ScoreTable.provenance`). Raises TableError
    unless `scores.json` says scoring completed, names its shards, every named shard has
    its recorded size and sha256, and no other shard is there.
    """
    directory = pathlib.Path(directory)
    side_car = directory / SCORES_SIDE_CAR
    on_disk = sorted(p.name for p in directory.glob("*.parquet"))
    if not side_car.is_file():
        partial = directory / SCORES_PARTIAL
        if partial.is_file():
            try:
                info = json.loads(partial.read_text())
                done = f"{len(info['shard_files'])} of {info['shards']} shards"
            except (OSError, ValueError, KeyError, TypeError):
                done = "some shards"
            raise TableError(f"{directory}: scoring is incomplete ({done} written, "
                             f"{SCORES_PARTIAL}); rerun the scorer to finish")
        raise TableError(f"{directory}: {len(on_disk)} parquet files but no {SCORES_SIDE_CAR}"
                         " naming a complete shard set (scoring killed, or not a scorer "
                         "output); rerun the scorer, or pass a single parquet file")
    try:
        side = json.loads(side_car.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TableError(f"{side_car}: unreadable side-car ({e})") from e
    files = side.get("shard_files") if isinstance(side, dict) else None
    if side.get("format") != SCORES_FORMAT or not isinstance(files, dict):
        raise TableError(f"{side_car}: not a {SCORES_FORMAT} side-car (written by an older "
                         "scorer, without shard digests); score again with restart")
    if not side.get("complete") or len(files) != side.get("shards"):
        raise TableError(f"{side_car}: scoring is incomplete ({len(files)} of "
                         f"{side.get('shards')} shards); rerun the scorer to finish")
    stray = sorted(set(on_disk) - set(files))
    if stray:
        raise TableError(f"{directory}: {stray[0]} is not one of the {len(files)} shards that "
                         f"{SCORES_SIDE_CAR} names (shards of another run mixed in?)")
    for shard, want in sorted(files.items()):
        path = directory / shard
        if not path.is_file():
            raise TableError(f"{path}: missing ({SCORES_SIDE_CAR} names {len(files)} shards)")
        if path.stat().st_size != want.get("bytes") or _sha256(path) != want.get("sha256"):
            raise TableError(f"{path}: differs from the shard that was written (size or "
                             f"sha256 in {SCORES_SIDE_CAR}); score again with restart")
    return [directory / f for f in sorted(files)], side


def read_table(path: str | pathlib.Path, name: str | None = None) -> ScoreTable:
    """Reads and validates one parquet table: a file, or a scorer's directory of parquet
    shards (read only when complete, see `scorer_shards`; shards are concatenated in name
    order). `name` defaults to its metadata model name (plus "@step") or the file stem."""
    path = pathlib.Path(path)
    if not path.exists():
        raise TableError(f"{path}: no such table")
    provenance = None
    if path.is_dir():
        files, side = scorer_shards(path)
        provenance = side.get("provenance")
    else:
        files = [path]
    try:
        pt = pa.concat_tables([pq.read_table(f) for f in files])
    except Exception as e:  # pyarrow raises several types for a bad file
        raise TableError(f"{path}: not a readable parquet table ({e})") from e
    meta = pt.schema.metadata or {}
    model = meta.get(_META_MODEL, b"").decode() or None
    step_raw = meta.get(_META_STEP, b"").decode()
    step = int(step_raw) if step_raw else None
    if name is None:
        name = (model or path.stem) + (f"@{step}" if step is not None else "")
    if model is None:
        model = name.split("@")[0]
    frame = validate_frame(pt.to_pandas(), f"{path}")
    return ScoreTable(name=name, frame=frame, model=model, step=step, path=str(path),
                      provenance=provenance)


def parse_table_spec(spec: str) -> tuple[str | None, int | None, str]:
    """'path' | 'model=path' | 'model@step=path' -> (model, step, path)."""
    if "=" not in spec:
        return None, None, spec
    label, path = spec.split("=", 1)
    if "@" in label:
        model, step = label.split("@", 1)
        try:
            return model, int(step), path
        except ValueError as e:
            raise TableError(f"table spec {spec!r}: step {step!r} is not an integer") from e
    return label, None, path


def load_tables(specs: list[str]) -> list[ScoreTable]:
    """Reads every table spec (see `parse_table_spec`); names must be unique."""
    tables = []
    for spec in specs:
        model, step, path = parse_table_spec(spec)
        name = None if model is None else model + (f"@{step}" if step is not None else "")
        t = read_table(path, name)
        if model is not None:
            t.model, t.step = model, step if step is not None else t.step
        tables.append(t)
    names = [t.name for t in tables]
    if len(set(names)) != len(names):
        raise TableError(f"table names must be unique, got {names}; label them model@step=path")
    return tables


def document_digest(text: str) -> str:
    """sha256 of a document's UTF-8 text, first 16 hex digits."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def write_table(frame: pd.DataFrame, path: str | pathlib.Path, *, model: str | None = None,
                step: int | None = None, doc_digests: dict[str, str] | None = None) -> None:
    """Validates and writes a table as parquet, with model/step metadata and, when given,
    the `document_digest` of each document ({doc_id: digest})."""
    frame = validate_frame(frame, str(path))
    pt = pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(pt.schema.metadata or {})
    if model is not None:
        meta[_META_MODEL] = model.encode()
    if step is not None:
        meta[_META_STEP] = str(step).encode()
    if doc_digests is not None:
        meta[_META_DOC_DIGESTS] = json.dumps(doc_digests, sort_keys=True).encode()
    pq.write_table(pt.replace_schema_metadata(meta), path)


def check_aligned(tables: list[ScoreTable]) -> None:
    """Raises TableError unless every table has the same rows as the first: the same
    doc_id, window, position, token_id and char offsets at every row (after sorting by
    window, position). Names the first mismatching row of each side."""
    ref = tables[0]
    for other in tables[1:]:
        a, b = ref.frame, other.frame
        n = min(len(a), len(b))
        first = None
        for k in ALIGN_KEYS:
            va, vb = a[k].to_numpy()[:n], b[k].to_numpy()[:n]
            diff = np.flatnonzero(va != vb)
            if diff.size and (first is None or diff[0] < first[0]):
                first = (int(diff[0]), k)
        if first is None and len(a) != len(b):
            first = (n, "row count")
        if first is not None:
            i, what = first
            da = _row_desc(a, i) if i < len(a) else "no such row"
            db = _row_desc(b, i) if i < len(b) else "no such row"
            raise TableError(
                f"tables {ref.name!r} ({len(a)} rows) and {other.name!r} ({len(b)} rows) are "
                f"not row-aligned: first mismatch in {what} at sorted row {i}: "
                f"{ref.name}: {da}; {other.name}: {db}. Score both on the same eval pack.")


def read_documents(paths: list[str | pathlib.Path]) -> dict[str, Document]:
    """Reads JSONL documents (`id`, `domain`, `text`, optional `lang`) from every path.

    Raises TableError naming the file and line for bad JSON or UTF-8, a missing field, an
    empty text or a duplicate id.
    """
    docs: dict[str, Document] = {}
    for path in paths:
        path = pathlib.Path(path)
        if not path.exists():
            raise TableError(f"{path}: no such documents file")
        with open(path, "rb") as f:
            for line_no, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError as e:
                    raise TableError(f"{path}:{line_no}: not UTF-8 ({e})") from e
                except json.JSONDecodeError as e:
                    raise TableError(f"{path}:{line_no}: not JSON ({e})") from e
                for field in ("id", "domain", "text"):
                    if field not in rec:
                        raise TableError(f"{path}:{line_no}: missing field {field!r}")
                if not rec["text"]:
                    raise TableError(f"{path}:{line_no}: document {rec['id']!r} has empty text")
                if rec["id"] in docs:
                    raise TableError(f"{path}:{line_no}: duplicate document id {rec['id']!r}")
                docs[rec["id"]] = Document(id=str(rec["id"]), domain=str(rec["domain"]),
                                           text=rec["text"], lang=str(rec.get("lang", "en")))
    return docs


def check_documents(frame: pd.DataFrame, docs: dict[str, Document], name: str = "table"
                    ) -> None:
    """Every row's document exists, has the row's domain, and contains its char span."""
    ids = frame["doc_id"].to_numpy()
    uniq = pd.unique(ids)
    missing = [d for d in uniq if d not in docs]
    if missing:
        i = int(np.flatnonzero(ids == missing[0])[0])
        raise TableError(f"{name}: {len(missing)} doc_ids not in the documents, first "
                         f"{missing[0]!r} at {_row_desc(frame, i)}")
    lengths = pd.Series({d: len(docs[d].text) for d in uniq})
    dom = pd.Series({d: docs[d].domain for d in uniq})
    too_long = frame["char_end"].to_numpy() > lengths.reindex(ids).to_numpy()
    if too_long.any():
        i = int(np.argmax(too_long))
        raise TableError(f"{name}: char span past the end of document {ids[i]!r} "
                         f"({lengths[ids[i]]} chars) at {_row_desc(frame, i)}")
    wrong = frame["domain"].to_numpy() != dom.reindex(ids).to_numpy()
    if wrong.any():
        i = int(np.argmax(wrong))
        raise TableError(f"{name}: domain {frame['domain'].iloc[i]!r} differs from the domain "
                         f"{dom[ids[i]]!r} of document {ids[i]!r} at {_row_desc(frame, i)}")
