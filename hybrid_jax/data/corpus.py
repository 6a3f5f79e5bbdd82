"""The on-disk corpus: documents deduplicated, split by document, in JSONL shards.

`build_corpus(docs, out)` streams documents (any `sources.iter_documents`) into

    <out>/train-00000.jsonl ...   training documents in source order, shards of about
                                  `shard_chars` characters (the unit of parallel
                                  tokenisation)
    <out>/held_out.jsonl          held-out documents (eval pack, in-loop evals)
    <out>/manifest.json           sources, package versions, counts by domain,
                                  duplicates removed, held-out share, shard digests,
                                  and `digest`: the sha256 of every kept document

Exact duplicates (same text) are removed, keeping the first in source order. The
held-out split is by document content: a document is held out when the first 8 bytes of
its text's sha256, as an integer, are divisible by `held_out_every` (per domain
overrides in `held_out_by_domain`). A document's side therefore does not depend on the
other documents or on the order, and is the same on every machine. Nothing but one
document and the set of text hashes is held in memory. The directory is written under a
temporary name and renamed when complete, so a killed build leaves no corpus behind.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import pathlib
import shutil
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TextIO

from hybrid_jax.data.stdlib_corpus import Document
from hybrid_jax.errors import UserError
from hybrid_jax.json_files import read_tagged

CORPUS_FORMAT = "hybrid_jax.corpus/1"
MANIFEST = "manifest.json"
HELD_OUT = "held_out.jsonl"


class CorpusError(UserError, ValueError):
    """A corpus directory that is missing, incomplete or modified."""


def is_held_out(text_sha256: bytes, every: int) -> bool:
    """The held-out rule: 1 in `every` documents, by the hash of their text."""
    return int.from_bytes(text_sha256[:8], "big") % every == 0


def _line(doc: Document) -> str:
    return json.dumps({"id": doc.id, "domain": doc.domain, "text": doc.text},
                      ensure_ascii=False) + "\n"


class _ShardWriter:
    """Train shards of about `shard_chars` characters, each with its own sha256."""

    def __init__(self, directory: pathlib.Path, shard_chars: int) -> None:
        self.directory, self.shard_chars = directory, shard_chars
        self.shards: list[dict[str, Any]] = []
        self._file: TextIO | None = None

    def write(self, doc: Document) -> None:
        if self._file is None or self.shards[-1]["chars"] >= self.shard_chars:
            self._close()
            name = f"train-{len(self.shards):05d}.jsonl"
            self._file = open(self.directory / name, "w", encoding="utf-8")
            self._hash = hashlib.sha256()
            self.shards.append({"name": name, "documents": 0, "chars": 0})
        line = _line(doc)
        self._file.write(line)
        self._hash.update(line.encode("utf-8"))
        self.shards[-1]["documents"] += 1
        self.shards[-1]["chars"] += len(doc.text)

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self.shards[-1]["sha256"] = self._hash.hexdigest()
            self._file = None

    def close(self) -> list[dict[str, Any]]:
        self._close()
        return self.shards


def build_corpus(
    docs: Iterable[Document],
    out: str | os.PathLike,
    *,
    held_out_every: int,
    held_out_by_domain: Mapping[str, int] | None = None,
    shard_chars: int = 32_000_000,
    info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the corpus of `docs` to `out` (see the module docstring); its manifest.

    info: recorded in the manifest as is (sources, package versions, ...).
    """
    out = pathlib.Path(out)
    every = dict(held_out_by_domain or {})
    for name, n in [("held_out_every", held_out_every), *every.items()]:
        if n < 2:
            raise ValueError(f"held-out stride {name}={n} must be >= 2")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    seen: set[bytes] = set()
    ids: set[str] = set()
    digest = hashlib.sha256()
    by_domain: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    dups = collections.Counter()
    shards = _ShardWriter(tmp, shard_chars)
    with open(tmp / HELD_OUT, "w", encoding="utf-8") as held_file:
        for doc in docs:
            text_hash = hashlib.sha256(doc.text.encode("utf-8")).digest()
            if text_hash in seen:
                dups["documents"] += 1
                dups["chars"] += len(doc.text)
                continue
            if doc.id in ids:
                raise CorpusError(f"two different documents share the id {doc.id!r}")
            seen.add(text_hash)
            ids.add(doc.id)
            held = is_held_out(text_hash, every.get(doc.domain, held_out_every))
            digest.update(b"H" if held else b"T")
            for part in (doc.id, doc.domain):
                digest.update(part.encode("utf-8") + b"\0")
            digest.update(text_hash)
            side = "held_out" if held else "train"
            by_domain[doc.domain][f"{side}_documents"] += 1
            by_domain[doc.domain][f"{side}_chars"] += len(doc.text)
            if held:
                held_file.write(_line(doc))
            else:
                shards.write(doc)
    shard_list = shards.close()
    total = {k: sum(c[k] for c in by_domain.values())
             for k in ("train_documents", "train_chars", "held_out_documents", "held_out_chars")}
    if not total["train_documents"]:
        raise CorpusError(f"no training document left ({total}, {dict(dups)} duplicates)")
    manifest = {
        "format": CORPUS_FORMAT,
        **dict(info or {}),
        "python": sys.version.split()[0],
        "held_out_every": held_out_every, "held_out_by_domain": every,
        "rule": "held out when int(sha256(text)[:8]) % every == 0; exact duplicates "
                "(same text) removed, the first kept",
        **total,
        "held_out_share_chars": total["held_out_chars"]
        / max(1, total["held_out_chars"] + total["train_chars"]),
        "duplicates_removed": {"documents": dups["documents"], "chars": dups["chars"]},
        "domains": {d: dict(sorted(c.items())) for d, c in sorted(by_domain.items())},
        "shards": shard_list,
        "digest": digest.hexdigest(),
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return manifest


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a complete corpus directory (CorpusError if there is none)."""
    return read_tagged(pathlib.Path(directory) / MANIFEST, CORPUS_FORMAT, CorpusError,
                       "corpus manifest")


def iter_corpus(directory: str | os.PathLike, split: str = "train") -> Iterator[Document]:
    """The documents of one split ("train" or "held_out"), streamed in corpus order."""
    directory = pathlib.Path(directory)
    manifest = read_manifest(directory)
    if split == "train":
        files = [directory / s["name"] for s in manifest["shards"]]
    elif split == "held_out":
        files = [directory / HELD_OUT]
    else:
        raise ValueError(f"split {split!r} is not train or held_out")
    for path in files:
        yield from iter_shard(path)


def iter_shard(path: str | os.PathLike) -> Iterator[Document]:
    """The documents of one JSONL shard written by `build_corpus`."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            obj = json.loads(line)
            yield Document(obj["id"], obj["domain"], obj["text"])


def sample_texts(directory: str | os.PathLike, max_chars: int) -> Iterator[str]:
    """About `max_chars` characters of training text spread over the whole corpus:
    every k-th training document, k = train characters / max_chars (a tokenizer sample
    that is not just the first packages in sorted order)."""
    manifest = read_manifest(directory)
    stride = max(1, -(-manifest["train_chars"] // max(1, max_chars)))
    for i, doc in enumerate(iter_corpus(directory, "train")):
        if i % stride == 0:
            yield doc.text
