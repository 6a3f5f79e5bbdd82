"""The eval pack: a frozen set of token windows that every compared model scores.

Two models compared token by token must see identical prefixes. That is made a
property of the inputs: documents are tokenized and cut into windows once, the result
is written to disk, and every scoring run reads the same file. Its `digest()` covers
the documents (ids, domains, texts), the windows (every array below) and the tokenizer
(`tokenizer_sha256`: its model file) and goes into each table's side-car, so tables of
different packs cannot be mixed; `meta["doc_digests"]` holds each document's
`document_digest` (sha256 of its text, 16 hex digits). A pack holds, per window row of
`seq_len + 1` tokens:

    tokens, segment_ids     what the model reads (documents packed, EOS after each)
    doc_index               which document each token came from (-1: padding)
    char_start, char_end    each token's character span in its document (-1: EOS / pad)
    score_mask [r, seq_len] which targets get a row in the per-token table

Layouts (`mode`):
    packed    documents concatenated and cut into windows that overlap by one token
              (the study's 8192-token packed windows); every target with context in its
              window is scored once.
    document  one document per window; a long document continues in further windows
              that start `stride` tokens later, repeating seq_len - stride tokens of
              context, and only the targets not scored before are scored.
Targets that are scored: text tokens whose input is in the same document. Not scored,
and counted in `meta`: a document's first token (it has no context) and EOS targets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from hybrid_jax.data.packing import pack_documents
from hybrid_jax.data.sources import Document
from hybrid_jax.data.tokenizers import Tokenizer, tokenizer_sha256
from hybrid_jax.digests import document_digest
from hybrid_jax.errors import UserError
from hybrid_jax.json_files import read_tagged

PACK_FORMAT = "hybrid_jax.eval_pack/1"


class PackError(UserError, ValueError):
    """An eval pack directory that cannot be used as given; the message names it."""
_ARRAYS = ("tokens", "segment_ids", "doc_index", "char_start", "char_end", "score_mask")


@dataclasses.dataclass
class EvalPack:
    tokens: np.ndarray  # [r, t + 1] int32
    segment_ids: np.ndarray  # [r, t + 1] int32
    doc_index: np.ndarray  # [r, t + 1] int32
    char_start: np.ndarray  # [r, t + 1] int64
    char_end: np.ndarray  # [r, t + 1] int64
    score_mask: np.ndarray  # [r, t] bool, over targets (tokens[:, 1:])
    docs: list[Document]
    meta: dict[str, Any]

    @property
    def seq_len(self) -> int:
        return self.tokens.shape[1] - 1

    @property
    def num_windows(self) -> int:
        return self.tokens.shape[0]

    def sha256(self) -> str:
        """sha256 of the window arrays only (kept for older side-cars; see `digest`)."""
        h = hashlib.sha256()
        for name in _ARRAYS:
            h.update(np.ascontiguousarray(getattr(self, name)).tobytes())
        return h.hexdigest()

    def digest(self) -> str:
        """sha256 over the windows, the documents and the tokenizer: two packs with one
        digest give every model the same inputs and the same texts to analyse."""
        h = hashlib.sha256(PACK_FORMAT.encode() + b"\0")
        h.update(self.sha256().encode() + b"\0" + corpus_sha256(self.docs).encode() + b"\0")
        tok = self.meta.get("tokenizer_sha256") or f"spec:{self.meta.get('tokenizer')}"
        layout = (tok, self.meta.get("mode"), self.seq_len, self.meta.get("stride"),
                  self.meta.get("vocab_size"), self.meta.get("eos_id"))
        h.update(json.dumps(layout).encode())
        return h.hexdigest()

    def doc_digests(self) -> dict[str, str]:
        """{doc_id: document_digest(text)} of every document of the pack."""
        return {d.id: document_digest(d.text) for d in self.docs}

    # ------------------------------------------------------------------ files
    def save(self, directory: str | pathlib.Path) -> pathlib.Path:
        """pack.npz + docs.jsonl (the analysis reads these) + pack.json."""
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(directory / "pack.npz", **{k: getattr(self, k) for k in _ARRAYS})
        with open(directory / "docs.jsonl", "w", encoding="utf-8") as f:
            for d in self.docs:
                f.write(json.dumps({"id": d.id, "domain": d.domain, "text": d.text}) + "\n")
        meta = {**self.meta, "format": PACK_FORMAT, "sha256": self.sha256(),
                "digest": self.digest(), "doc_digests": self.doc_digests()}
        (directory / "pack.json").write_text(json.dumps(meta, indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | pathlib.Path) -> EvalPack:
        """Read a saved pack; PackError if it is not one, or if its arrays, documents
        or digests differ from what was saved."""
        directory = pathlib.Path(directory)
        meta_file = directory / "pack.json"
        if not meta_file.is_file():
            raise PackError(f"{directory} is not an eval pack (no pack.json)")
        meta = read_tagged(meta_file, PACK_FORMAT, PackError, "pack's metadata")
        try:
            arrays = np.load(directory / "pack.npz")
            docs = []
            with open(directory / "docs.jsonl", encoding="utf-8") as f:
                for line in f:
                    obj = json.loads(line)
                    docs.append(Document(obj["id"], obj["domain"], obj["text"]))
            pack = cls(**{k: arrays[k] for k in _ARRAYS}, docs=docs, meta=meta)
        except (OSError, ValueError, KeyError) as e:
            raise PackError(f"{directory}: unreadable eval pack ({type(e).__name__}: {e})") from e
        if pack.sha256() != meta["sha256"]:
            raise PackError(f"{directory}: arrays do not match the recorded sha256 (modified?)")
        if corpus_sha256(docs) != meta.get("corpus_sha256"):
            raise PackError(f"{directory / 'docs.jsonl'}: the documents differ from the ones "
                            "the pack was built from (modified?)")
        if "digest" in meta and pack.digest() != meta["digest"]:
            raise PackError(f"{meta_file}: the pack's digest does not match (modified?)")
        return pack


def corpus_sha256(docs: Sequence[Document]) -> str:
    h = hashlib.sha256()
    for d in docs:
        for part in (d.id, d.domain, d.text):
            h.update(part.encode("utf-8") + b"\0")
    return h.hexdigest()


def build_eval_pack(
    docs: Sequence[Document],
    tokenizer: Tokenizer,
    seq_len: int,
    *,
    tokenizer_spec: str,
    mode: str = "packed",
    stride: int | None = None,
) -> EvalPack:
    """Tokenize `docs` once and lay them out in windows (see the module docstring)."""
    if mode not in ("packed", "document"):
        raise ValueError(f"mode={mode!r} is not one of packed, document")
    ids_of, starts, ends, kept = [], [], [], []
    skipped_empty = 0
    for d in docs:
        ids, s, e = tokenizer.encode_with_offsets(d.text)
        if ids.size == 0:
            skipped_empty += 1
            continue
        if s.min() < 0 or e.max() > len(d.text) or np.any(e < s):
            raise ValueError(f"document {d.id!r}: the tokenizer returned offsets outside the "
                             f"text ({s.min()}..{e.max()} for {len(d.text)} characters)")
        ids_of.append(ids)
        starts.append(s)
        ends.append(e)
        kept.append(d)
    if not kept:
        raise ValueError("no non-empty document to pack")
    if mode == "packed":
        layout = _packed(ids_of, seq_len, tokenizer.eos_id)
    else:
        layout = _per_document(ids_of, seq_len, tokenizer.eos_id, stride or seq_len)
    tokens, segs, doc_index, token_index = layout
    n_docs = len(kept)
    flat_start = [np.append(s, -1) for s in starts]  # EOS has no characters
    flat_end = [np.append(e, -1) for e in ends]
    real = doc_index >= 0
    char_start = np.full(tokens.shape, -1, np.int64)
    char_end = np.full(tokens.shape, -1, np.int64)
    char_start[real] = [flat_start[d][i] for d, i in zip(doc_index[real], token_index[real])]
    char_end[real] = [flat_end[d][i] for d, i in zip(doc_index[real], token_index[real])]
    same_doc = (doc_index[:, 1:] == doc_index[:, :-1]) & (doc_index[:, 1:] >= 0)
    is_text = char_start[:, 1:] >= 0
    score_mask = same_doc & is_text & _first_occurrence(doc_index, token_index)
    meta = {
        "mode": mode, "seq_len": seq_len, "stride": stride if mode == "document" else None,
        "tokenizer": tokenizer_spec, "tokenizer_sha256": tokenizer_sha256(tokenizer),
        "vocab_size": int(tokenizer.vocab_size),
        "eos_id": int(tokenizer.eos_id), "corpus_sha256": corpus_sha256(kept),
        "documents": n_docs, "skipped_empty_documents": skipped_empty,
        "text_tokens": int(sum(x.size for x in ids_of)),
        "scored_targets": int(score_mask.sum()),
        "unscored_first_tokens": n_docs, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    meta["doc_digests"] = {d.id: document_digest(d.text) for d in kept}
    return EvalPack(tokens, segs, doc_index, char_start, char_end, score_mask, list(kept), meta)


def _packed(ids_of, seq_len, eos_id):
    p = pack_documents(ids_of, seq_len, eos_id)
    return p.tokens, p.segment_ids, p.doc_index, p.token_index


def _per_document(ids_of, seq_len, eos_id, stride):
    if not 1 <= stride <= seq_len:
        raise ValueError(f"stride {stride} must be in [1, seq_len={seq_len}]")
    rows_t, rows_d, rows_i = [], [], []
    for d, ids in enumerate(ids_of):
        stream = np.append(ids, np.int32(eos_id))
        start = 0
        while True:
            piece = stream[start : start + seq_len + 1]
            pad = seq_len + 1 - piece.size
            rows_t.append(np.pad(piece, (0, pad)))
            rows_d.append(np.pad(np.full(piece.size, d, np.int32), (0, pad), constant_values=-1))
            rows_i.append(np.pad(np.arange(start, start + piece.size, dtype=np.int32), (0, pad),
                                 constant_values=-1))
            if start + seq_len + 1 >= stream.size:
                break
            start += stride
    doc_index = np.stack(rows_d)
    return np.stack(rows_t), doc_index + 1, doc_index, np.stack(rows_i)


def _first_occurrence(doc_index: np.ndarray, token_index: np.ndarray) -> np.ndarray:
    """[r, t] True where this target is scored for the first time (strided windows
    repeat earlier tokens as context; they are scored only where first seen)."""
    keys = doc_index[:, 1:].astype(np.int64) * (1 << 32) + token_index[:, 1:]
    flat = keys.ravel()
    first = np.zeros(flat.size, bool)
    _, idx = np.unique(flat, return_index=True)
    first[idx] = True
    return first.reshape(keys.shape)
