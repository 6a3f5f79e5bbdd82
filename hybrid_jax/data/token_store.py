"""Pre-tokenised training data: one flat token file, memory-mapped (as OLMo-core does).

    <dir>/tokens.bin       every training document's token ids, each document followed
                           by EOS, concatenated in corpus order: uint16 when the
                           vocabulary fits (<= 65536 ids), else uint32 (little endian)
    <dir>/documents.npy    int64 [documents + 1]: document d is
                           tokens[documents[d]:documents[d + 1]] (its EOS last)
    <dir>/manifest.json    dtype, vocabulary, EOS id, the tokenizer's digest, the
                           corpus digest, counts, both files' sha256, the tokenisation
                           throughput, and `digest`: the sha256 of all of that, which
                           names these exact tokens (the study's "data digest")

`tokenize_corpus` writes it from a corpus directory (`corpus.py`): each worker process
tokenises one corpus shard into a part file, and the parts are joined in shard order, so
the result does not depend on the number of workers. Training reads it through
`TokenStore.open` (a `np.memmap`; nothing is tokenised while the accelerator waits).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import pathlib
import shutil
import time
from typing import Any

import numpy as np

from hybrid_jax.data.corpus import iter_shard, read_manifest
from hybrid_jax.data.packages_corpus import usable_cpus
from hybrid_jax.data.tokenizers import load_tokenizer, tokenizer_digest
from hybrid_jax.digests import file_sha256
from hybrid_jax.errors import UserError
from hybrid_jax.json_files import read_tagged

STORE_FORMAT = "hybrid_jax.token_store/1"
TOKENS, DOCUMENTS, MANIFEST = "tokens.bin", "documents.npy", "manifest.json"
_READ_BLOCK = 1 << 24


class TokenStoreError(UserError, ValueError):
    """A token store that is missing, incomplete, modified or of another tokenizer."""


def _dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


def _store_digest(manifest: dict[str, Any]) -> str:
    keys = ("format", "dtype", "vocab_size", "eos_id", "tokenizer_digest", "corpus_digest",
            "tokens", "documents", "tokens_sha256", "documents_sha256")
    return hashlib.sha256(json.dumps({k: manifest[k] for k in keys}, sort_keys=True)
                          .encode()).hexdigest()


def _tokenize_shard(args: tuple[str, str, str, str]) -> dict[str, Any]:
    """Worker: tokenise one corpus shard into `<part>.bin` + `<part>.len.npy`."""
    shard, spec, part, dtype = args
    t0, c0 = time.perf_counter(), time.process_time()
    tok = load_tokenizer(spec)
    eos = np.asarray([tok.eos_id], np.int64)
    lengths, chars = [], 0
    with open(part + ".bin", "wb") as out:
        for doc in iter_shard(shard):
            ids = np.concatenate([tok.encode(doc.text).astype(np.int64), eos])
            out.write(ids.astype(dtype).tobytes())
            lengths.append(ids.size)
            chars += len(doc.text)
    np.save(part + ".len.npy", np.asarray(lengths, np.int64))
    return {"tokens": int(sum(lengths)), "documents": len(lengths), "chars": chars,
            "seconds": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}


def tokenize_corpus(corpus_dir: str | os.PathLike, tokenizer_spec: str,
                    out: str | os.PathLike, *, workers: int = 0) -> dict[str, Any]:
    """Tokenise the training split of `corpus_dir` into a token store at `out`.

    workers: processes (0: one per CPU, at most one per shard; 1: this process).
    Returns the manifest (with `throughput`: tokens/s of the whole step and per worker).
    """
    corpus_dir, out = pathlib.Path(corpus_dir), pathlib.Path(out)
    corpus = read_manifest(corpus_dir)
    tok = load_tokenizer(tokenizer_spec)
    dtype = _dtype_for(tok.vocab_size)
    shards = [str(corpus_dir / s["name"]) for s in corpus["shards"]]
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tasks = [(s, tokenizer_spec, str(tmp / f"part-{i:05d}"), dtype.str)
             for i, s in enumerate(shards)]
    workers = min(workers or usable_cpus(), len(tasks))
    t0 = time.perf_counter()
    if workers <= 1:
        parts = [_tokenize_shard(t) for t in tasks]
    else:  # spawn: the caller may hold JAX threads that fork would copy half-way
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            parts = pool.map(_tokenize_shard, tasks, chunksize=1)
    t_tok = time.perf_counter() - t0
    # Join the parts in shard order, hashing on the way.
    h = hashlib.sha256()
    lengths = []
    with open(tmp / TOKENS, "wb") as f:
        for _, _, part, _ in tasks:
            with open(part + ".bin", "rb") as p:
                while block := p.read(_READ_BLOCK):
                    h.update(block)
                    f.write(block)
            lengths.append(np.load(part + ".len.npy"))
            os.remove(part + ".bin")
            os.remove(part + ".len.npy")
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(lengths))]).astype(np.int64)
    np.save(tmp / DOCUMENTS, offsets)
    n_tokens = int(offsets[-1])
    wall = time.perf_counter() - t0
    worker_s = sum(p["seconds"] for p in parts)
    manifest = {
        "format": STORE_FORMAT, "dtype": dtype.str, "vocab_size": int(tok.vocab_size),
        "eos_id": int(tok.eos_id), "tokenizer": tokenizer_spec,
        "tokenizer_digest": tokenizer_digest(tokenizer_spec),
        "corpus_digest": corpus["digest"], "tokens": n_tokens,
        "documents": int(offsets.size - 1), "chars": int(sum(p["chars"] for p in parts)),
        "tokens_sha256": h.hexdigest(), "documents_sha256": file_sha256(tmp / DOCUMENTS),
        "throughput": {
            "workers": workers, "cpus": usable_cpus(), "shards": len(tasks),
            "tokenize_s": t_tok, "wall_s": wall,
            "tokens_per_s": n_tokens / max(wall, 1e-9),
            "tokens_per_s_per_worker": n_tokens / max(worker_s, 1e-9),
            "chars_per_s_per_worker": sum(p["chars"] for p in parts) / max(worker_s, 1e-9),
            # per CPU-second of the workers: what a core gives when not shared (the
            # wall rates above fall when other processes load the machine)
            "tokens_per_cpu_s": n_tokens / max(sum(p["cpu_s"] for p in parts), 1e-9),
        },
    }
    manifest["digest"] = _store_digest(manifest)
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return manifest


class TokenStore:
    """A token store opened for reading: `tokens` is a read-only memmap [n] and
    `offsets` the document boundaries [documents + 1] (int64)."""

    def __init__(self, directory: pathlib.Path, manifest: dict[str, Any],
                 tokens: np.ndarray, offsets: np.ndarray) -> None:
        self.directory, self.manifest = directory, manifest
        self.tokens, self.offsets = tokens, offsets

    @property
    def digest(self) -> str:
        return self.manifest["digest"]

    @property
    def num_tokens(self) -> int:
        return int(self.tokens.size)

    @property
    def num_documents(self) -> int:
        return int(self.offsets.size - 1)

    def document(self, d: int) -> np.ndarray:
        """Token ids of document d (its EOS last), int64."""
        return np.asarray(self.tokens[self.offsets[d] : self.offsets[d + 1]], np.int64)

    @classmethod
    def open(cls, directory: str | os.PathLike, *, verify: bool = False) -> TokenStore:
        """Open the store at `directory`; `verify` re-hashes both files against the
        manifest (about 1 s per GB), else only sizes and the manifest digest are checked.
        """
        directory = pathlib.Path(directory)
        path = directory / MANIFEST
        manifest = read_tagged(path, STORE_FORMAT, TokenStoreError, "token store manifest")
        if _store_digest(manifest) != manifest.get("digest"):
            raise TokenStoreError(f"{path}: the manifest's fields do not match its digest "
                                  "(edited?)")
        dtype = np.dtype(manifest["dtype"])
        size = (directory / TOKENS).stat().st_size if (directory / TOKENS).exists() else -1
        if size != manifest["tokens"] * dtype.itemsize:
            raise TokenStoreError(f"{directory / TOKENS}: {size} bytes, the manifest says "
                                  f"{manifest['tokens']} tokens of {dtype.itemsize} bytes "
                                  "(truncated or replaced?)")
        if verify:
            for name, key in ((TOKENS, "tokens_sha256"), (DOCUMENTS, "documents_sha256")):
                if file_sha256(directory / name) != manifest[key]:
                    raise TokenStoreError(f"{directory / name}: sha256 differs from the "
                                          "manifest (modified or corrupt)")
        offsets = np.load(directory / DOCUMENTS)
        if offsets.size != manifest["documents"] + 1 or offsets[-1] != manifest["tokens"]:
            raise TokenStoreError(f"{directory / DOCUMENTS}: does not match the manifest")
        tokens = np.memmap(directory / TOKENS, dtype=dtype, mode="r")
        return cls(directory, manifest, tokens, offsets)

    def check_tokenizer(self, spec: str) -> None:
        """TokenStoreError unless `spec` is the tokenizer these tokens were made with."""
        digest = tokenizer_digest(spec)
        if digest != self.manifest["tokenizer_digest"]:
            raise TokenStoreError(
                f"{self.directory} was tokenised with {self.manifest['tokenizer']} (digest "
                f"{self.manifest['tokenizer_digest'][:12]}), not with {spec} (digest "
                f"{digest[:12]})")

