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

and optionally `entropy` (nats) and `rank`. Parquet metadata a table may carry:

    hybrid_jax.model        the model name
    hybrid_jax.step         the training step
    hybrid_jax.doc_digests  JSON {doc_id: document_digest(text)} of the documents the
                            char offsets point into (the scorer writes it); the analysis
                            then refuses documents whose text differs
    hybrid_jax.loss_unit    "nats" (what `write_table` writes) or "bits"; a table in bits
                            is converted to nats on reading, anything else is refused

What is checked and what is the user's responsibility:
- the documents: every row's doc_id must exist, have the row's domain and contain its
  char span; with stored digests every document's text must be the one scored (exact);
  without them a heuristic checks that each token id keeps its surface text across
  documents (`check_documents`), which catches shifted or edited texts but is no proof.
- the loss unit: only the metadata above says it. A table written by another tool with
  losses in bits (log2) and no `hybrid_jax.loss_unit` cannot be told apart from one in
  nats; converting it (x ln 2) is the user's job.
- the domain labels: checked against the documents' `domain`, so a table must be
  analysed with the documents file of its own eval pack. Which documents belong to a
  domain is the documents file's word, not checked against anything else.

Two tables compared token by token must be row-aligned: the same eval pack, so the same
keys and token ids at every row. `check_aligned` verifies that and raises naming the
first mismatching rows; nothing here ever joins tables on keys, because a join would
silently drop or duplicate tokens when the packs differ.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pathlib
import unicodedata

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hybrid_jax.digests import document_digest
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
_META_DIGESTS = b"hybrid_jax.doc_digests"
_META_UNIT = b"hybrid_jax.loss_unit"
_UNIT_TO_NATS = {"nats": 1.0, "nat": 1.0, "bits": math.log(2.0), "bit": math.log(2.0)}
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
    # {doc_id: document_digest(text)} of the scored documents (parquet metadata
    # `hybrid_jax.doc_digests`), or None for a table written without them.
    doc_digests: dict[str, str] | None = None
    # Set when the table's losses were converted to nats on reading (e.g. "bits").
    loss_unit_read: str | None = None
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
    order). `name` defaults to its metadata model name (plus "@step") or the file stem.
    Losses stored in bits (metadata `hybrid_jax.loss_unit`) are converted to nats."""
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
        parts = [pq.read_table(f) for f in files]
        pt = pa.concat_tables(parts)
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
    digests = _read_digests(files, parts)
    frame = pt.to_pandas()
    units = {(p.schema.metadata or {}).get(_META_UNIT, b"nats").decode() for p in parts}
    if len(units) > 1:
        raise TableError(f"{path}: shards disagree on the loss unit ({sorted(units)})")
    unit = units.pop()
    if unit.lower() not in _UNIT_TO_NATS:
        raise TableError(f"{path}: loss unit {unit!r} in metadata hybrid_jax.loss_unit; "
                         "expected nats or bits")
    factor = _UNIT_TO_NATS[unit.lower()]
    if factor != 1.0 and "loss" in frame.columns:
        frame["loss"] = frame["loss"].astype(np.float64) * factor
        if "entropy" in frame.columns:
            frame["entropy"] = frame["entropy"].astype(np.float64) * factor
    frame = validate_frame(frame, f"{path}")
    return ScoreTable(name=name, frame=frame, model=model, step=step, path=str(path),
                      doc_digests=digests, loss_unit_read=unit if factor != 1.0 else None,
                      provenance=provenance)


def _read_digests(files: list[pathlib.Path], parts: list[pa.Table]) -> dict[str, str] | None:
    """The union of every shard's `hybrid_jax.doc_digests` (None when no shard has
    any); a document given two different digests is an error."""
    out: dict[str, str] | None = None
    for f, p in zip(files, parts, strict=True):
        raw = (p.schema.metadata or {}).get(_META_DIGESTS)
        if raw is None:
            continue
        try:
            d = json.loads(raw.decode("utf-8"))
            if not isinstance(d, dict):
                raise ValueError("not a JSON object")
        except (UnicodeDecodeError, ValueError) as e:
            raise TableError(f"{f}: metadata hybrid_jax.doc_digests is not a JSON object "
                             f"{{doc_id: digest}} ({e})") from e
        out = {} if out is None else out
        for k, v in d.items():
            if out.setdefault(str(k), str(v)) != str(v):
                raise TableError(f"{f}: document {k!r} has digest {v} here and "
                                 f"{out[str(k)]} in an earlier shard")
    return out


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


def write_table(frame: pd.DataFrame, path: str | pathlib.Path, *, model: str | None = None,
                step: int | None = None, doc_digests: dict[str, str] | None = None) -> None:
    """Validates and writes a table as parquet (losses in nats), with model/step
    metadata and, when given, the digests {doc_id: document_digest(text)} of the
    documents it was scored on (at least every doc_id of the frame)."""
    frame = validate_frame(frame, str(path))
    pt = pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(pt.schema.metadata or {})
    meta[_META_UNIT] = b"nats"
    if model is not None:
        meta[_META_MODEL] = model.encode()
    if step is not None:
        meta[_META_STEP] = str(step).encode()
    if doc_digests is not None:
        missing = [d for d in pd.unique(frame["doc_id"]) if d not in doc_digests]
        if missing:
            raise TableError(f"{path}: doc_digests lack {len(missing)} documents of the "
                             f"table, first {missing[0]!r}")
        meta[_META_DIGESTS] = json.dumps({str(k): str(v) for k, v in doc_digests.items()},
                                         sort_keys=True).encode()
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


@dataclasses.dataclass(frozen=True)
class DocumentCheck:
    """How the documents were verified against the tables, for the report.

    method:  "digests" (exact: every document's text hashed and compared with the
             digests stored in the tables), "surface heuristic" (no digests: token
             surfaces compared across documents, `surface_agreement`) or "not verified".
    n_docs:  documents checked.
    detail:  one sentence for the report.
    """

    method: str
    n_docs: int
    detail: str


def check_documents(frame: pd.DataFrame, docs: dict[str, Document], name: str = "table", *,
                    digests: dict[str, dict[str, str] | None] | None = None,
                    verify_text: bool = True) -> DocumentCheck:
    """Checks the documents against a table before any statistic is computed.

    Always: every row's document exists, has the row's domain, and contains its char
    span. Then the text itself: with `digests` ({table name: its doc_digests or None})
    every table that stores digests has each of its documents' text hashed and compared
    (exact); when no table stores any, `surface_agreement` looks for documents whose
    token surfaces disagree with the rest (a heuristic; `verify_text=False` skips it and
    the report then says the texts were not verified). Raises a one-line TableError
    naming the first document at fault.
    """
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

    stored = {t: d for t, d in (digests or {}).items() if d is not None}
    if stored:
        have = {d: document_digest(docs[d].text) for d in uniq}
        for table, dg in stored.items():
            lack = [d for d in uniq if d not in dg]
            if lack:
                raise TableError(f"{table}: its stored document digests lack {len(lack)} of "
                                 f"its {len(uniq)} documents, first {lack[0]!r}")
            bad = [d for d in uniq if dg[d] != have[d]]
            if bad:
                raise TableError(
                    f"{table}: the text of {len(bad)} of {len(uniq)} documents differs from "
                    f"the text it was scored on, first {bad[0]!r} (digest {have[bad[0]]}, "
                    f"stored {dg[bad[0]]}); pass the documents file of its eval pack")
        unverified = [t for t, d in (digests or {}).items() if d is None]
        extra = (f"; {len(unverified)} table(s) without digests ({', '.join(unverified)}) "
                 "are row-aligned with them") if unverified else ""
        return DocumentCheck("digests", len(uniq),
                             f"every document's text matches the sha256 digest stored in "
                             f"{len(stored)} table(s){extra}")
    if not verify_text:
        return DocumentCheck("not verified", 0, "the tables store no document digests and "
                             "the text check was switched off: the documents were NOT "
                             "verified against the tables")
    agree = surface_agreement(frame, docs)
    judged = agree[agree["rows"] >= SURFACE_MIN_ROWS]
    bad = judged[judged["agreement"] < SURFACE_MIN_AGREEMENT]
    if len(bad):
        first = bad.index[0]
        raise TableError(
            f"{name}: in {len(bad)} of {len(judged)} documents the text at the table's char "
            f"offsets disagrees with what the same token ids cover elsewhere, first "
            f"{first!r} ({bad.loc[first, 'agreement']:.0%} of {int(bad.loc[first, 'rows'])} "
            f"sampled tokens agree); the documents are not the ones scored (or were edited)")
    low = float(judged["agreement"].min()) if len(judged) else float("nan")
    return DocumentCheck(
        "surface heuristic", len(judged),
        f"no document digests stored; token surfaces agree across documents in all "
        f"{len(judged)} documents with >= {SURFACE_MIN_ROWS} checkable tokens (lowest "
        f"agreement {low:.1%}; {len(agree) - len(judged)} documents too short to judge). "
        "A heuristic, not a proof that the documents are the ones scored")


SURFACE_MIN_ROWS = 20  # fewer checkable tokens than this: a document is not judged
SURFACE_MIN_AGREEMENT = 0.5  # correct tables agree at >= 0.95, shifted texts at ~0.1
SURFACE_SAMPLE = 256  # rows per document looked at


def _normal(surface: str) -> str:
    """A token's surface text with case, accents, compatibility forms and surrounding
    whitespace removed: what the same token id may legitimately vary in."""
    if not surface.isascii():
        surface = "".join(c for c in unicodedata.normalize("NFKD", surface)
                          if not unicodedata.combining(c))
    return surface.casefold().strip()


def surface_agreement(frame: pd.DataFrame, docs: dict[str, Document],
                      sample: int = SURFACE_SAMPLE) -> pd.DataFrame:
    """Per document: the share of its sampled tokens whose text (at the table's offsets)
    equals the usual text of their token id over all documents.

    A tokenizer maps one token id to (nearly) one piece of text, so in a correct table a
    token id covers the same text everywhere (after `_normal`). When a document's text is
    shifted or edited after scoring, its offsets point at other characters and its
    tokens disagree with the rest. Only rows whose id occurs >= 3 times in >= 2
    documents of the sample and whose usual text is ASCII are judged (a byte token inside
    multi-byte characters covers many different characters legitimately). Up to `sample`
    rows per document, spread over it. Returns a frame indexed by doc_id with columns
    `rows` (judged rows) and `agreement` (share, NaN when no row is judged), in the
    table's document order.
    """
    codes, names = pd.factorize(frame["doc_id"])
    # Rank of every row within its document (table order), and the document's size.
    order = np.argsort(codes, kind="stable")
    size = np.bincount(codes)
    starts = np.cumsum(size) - size
    rank = np.empty(codes.size, np.int64)
    rank[order] = np.arange(codes.size) - np.repeat(starts, size)
    stride = np.maximum(1, -(-size[codes] // sample))
    pick = np.flatnonzero(rank % stride == 0)
    d_ids = np.asarray(names, dtype=object)[codes[pick]]
    cs = frame["char_start"].to_numpy()[pick]
    ce = frame["char_end"].to_numpy()[pick]
    cache: dict[str, str] = {}
    surf = []
    for d, s, e in zip(d_ids.tolist(), cs.tolist(), ce.tolist(), strict=True):
        raw = docs[d].text[s:e]
        v = cache.get(raw)
        if v is None:
            v = cache[raw] = _normal(raw)
        surf.append(v)
    rows = pd.DataFrame({"doc": d_ids, "tok": frame["token_id"].to_numpy()[pick],
                         "surf": surf})
    pair = rows.groupby(["tok", "surf"], sort=False).size()
    mode = pair.groupby(level=0).idxmax().map(lambda k: k[1])
    n_tok = rows.groupby("tok").size()
    n_doc = rows.groupby("tok")["doc"].nunique()
    ok_tok = (n_tok >= 3) & (n_doc >= 2) & mode.map(str.isascii)
    judged = ok_tok.reindex(rows["tok"]).to_numpy()
    agree = (mode.reindex(rows["tok"]).to_numpy() == rows["surf"].to_numpy()) & judged
    order = pd.unique(d_ids)
    out = pd.DataFrame({"rows": pd.Series(judged).groupby(d_ids).sum(),
                        "agree": pd.Series(agree).groupby(d_ids).sum()}).reindex(order)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["agreement"] = out["agree"] / out["rows"]
    return out[["rows", "agreement"]]
