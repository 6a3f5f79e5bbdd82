"""Training batches from a token store (`token_store.py`): fixed windows, shuffled per
epoch, identical for every model that reads the same store, resumable.

The store's tokens are cut into instances of seq_len + 1 tokens that overlap by one
(instance i = tokens[i * t : i * t + t + 1], t = seq_len), so every token after the first
is a target exactly once per epoch. Epoch e visits the instances in the order of a
permutation seeded by (seed, e); global batch s holds instances s * b ... s * b + b - 1
of the epochs' orders laid end to end (b = batch_size), so the stream depends only on
the tokens, seq_len, batch_size and seed: every architecture trained from one store
with one config reads the same tokens in the same order. Process p of P reads rows
p * b / P ... (p + 1) * b / P - 1 of each global batch, so the stream does not depend
on the number of processes either.

Segment ids come from the document boundaries (each document's EOS belongs to it),
numbered from 1 within each row, as the grain pipeline numbers them: a target whose
input is in another document is masked by `Batch.from_rows`.

`stream_digest` chains the sha256 of every global batch's instance indices, starting
from the store's digest: two runs with equal stream digests after equal steps read
the same tokens in the same order. It is part of the iterator state, which the
trainer's checkpoints save (`train/checkpoints.py`: one JSON per shard; this stream is
one shard, written by process 0).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from hybrid_jax.data.sources import Document, SourceStats, load_documents
from hybrid_jax.data.token_store import TokenStore, TokenStoreError
from hybrid_jax.data.tokenizers import Tokenizer, load_tokenizer

Element = dict[str, np.ndarray]
STATE_FORMAT = "hybrid_jax.token_batches/1"


class TokenBatches(Iterator[Element]):
    """This process's rows of every global batch: {"tokens", "segment_ids"}, int32
    [batch_size / process_count, seq_len + 1]."""

    def __init__(self, store: TokenStore, *, seq_len: int, batch_size: int, seed: int,
                 process_index: int = 0, process_count: int = 1) -> None:
        if batch_size % process_count:
            raise ValueError(f"batch size {batch_size} is not divisible by the "
                             f"{process_count} processes")
        self.store, self.seq_len, self.batch_size, self.seed = store, seq_len, batch_size, seed
        self.num_instances = (store.num_tokens - 1) // seq_len
        if self.num_instances < batch_size:
            raise TokenStoreError(
                f"{store.directory} holds {store.num_tokens} tokens: fewer than one batch of "
                f"{batch_size} windows of {seq_len + 1} tokens")
        per = batch_size // process_count
        self.process_rows = slice(process_index * per, (process_index + 1) * per)
        self.process_index = process_index
        self.batches = 0  # global batches served
        self.stream_digest = hashlib.sha256(
            f"{store.digest}:{seq_len}:{batch_size}:{seed}".encode()).hexdigest()
        self._orders: dict[int, np.ndarray] = {}

    # ------------------------------------------------------------------ order
    def order(self, epoch: int) -> np.ndarray:
        """The instance order of `epoch` (a permutation of all instances), int64."""
        if epoch not in self._orders:
            if len(self._orders) > 1:  # a batch spans at most two epochs
                self._orders.pop(min(self._orders))
            rng = np.random.default_rng([self.seed, epoch])
            self._orders[epoch] = rng.permutation(self.num_instances)
        return self._orders[epoch]

    def global_instances(self, batch: int) -> np.ndarray:
        """Instance indices [batch_size] of global batch `batch` (0-based)."""
        pos = batch * self.batch_size + np.arange(self.batch_size)
        epoch, within = np.divmod(pos, self.num_instances)
        out = np.empty(self.batch_size, np.int64)
        for e in np.unique(epoch):
            sel = epoch == e
            out[sel] = self.order(int(e))[within[sel]]
        return out

    @property
    def epochs(self) -> float:
        """Epochs of the store served so far."""
        return self.batches * self.batch_size / self.num_instances

    # ------------------------------------------------------------------ rows
    def rows(self, instances: np.ndarray) -> Element:
        """Tokens and segment ids of `instances` ([n] -> [n, seq_len + 1] int32)."""
        t = self.seq_len
        tokens = self.store.tokens
        starts = np.asarray(instances, np.int64) * t
        rows = np.stack([np.asarray(tokens[s : s + t + 1]) for s in starts]).astype(np.int32)
        positions = starts[:, None] + np.arange(t + 1)[None, :]
        doc = np.searchsorted(self.store.offsets, positions, side="right") - 1
        segment_ids = (doc - doc[:, :1] + 1).astype(np.int32)
        return {"tokens": rows, "segment_ids": segment_ids}

    def __next__(self) -> Element:
        instances = self.global_instances(self.batches)
        self.stream_digest = hashlib.sha256(
            bytes.fromhex(self.stream_digest) + instances.astype("<i8").tobytes()).hexdigest()
        self.batches += 1
        return self.rows(instances[self.process_rows])

    # ------------------------------------------------------------------ state
    def _identity(self) -> dict[str, Any]:
        return {"data_digest": self.store.digest, "seq_len": self.seq_len,
                "batch_size": self.batch_size, "seed": self.seed}

    def get_state(self) -> dict[str, Any]:
        """In the form of `pipeline.ShardedBatches` states: one shard, kept by process 0."""
        shard = {"format": STATE_FORMAT, **self._identity(), "batches": self.batches,
                 "stream_digest": self.stream_digest}
        return {"num_shards": 1, "shards": {"0": shard} if self.process_index == 0 else {}}

    def set_state(self, state: dict[str, Any]) -> None:
        shard = state.get("shards", {}).get("0")
        if state.get("num_shards") != 1 or not shard or shard.get("format") != STATE_FORMAT:
            raise TokenStoreError("the checkpoint's data state is not a token-store stream "
                                  "(was this run started on another data source?)")
        mine = self._identity()
        diff = [f"{k} {shard.get(k)!r} -> {v!r}" for k, v in mine.items() if shard.get(k) != v]
        if diff:
            raise TokenStoreError("the checkpoint was written reading other data or another "
                                  "order: " + "; ".join(diff))
        self.batches = int(shard["batches"])
        self.stream_digest = shard["stream_digest"]


@dataclasses.dataclass
class StoreStats:
    """What a pre-tokenised run reads (the trainer logs `summary()`)."""

    store: TokenStore
    held_out: SourceStats

    def summary(self) -> str:
        return (f"{self.store.num_tokens:,} pre-tokenised tokens in "
                f"{self.store.num_documents:,} documents ({self.store.directory}, data digest "
                f"{self.store.digest[:12]}); eval documents: {self.held_out.summary()}")


@dataclasses.dataclass
class PretokenizedInput:
    batches: TokenBatches
    tokenizer: Tokenizer
    held_docs: list[Document]
    stats: StoreStats


def pretokenized_input(data_config: Any, *, seq_len: int, batch_size: int, seed: int,
                       process_index: int = 0, process_count: int = 1) -> PretokenizedInput:
    """The trainer's input when `data.tokens` names a token store.

    `data.tokenizer` must be the store's tokenizer ('sentencepiece' alone: the store's
    own); `data.eval_docs` is the JSONL of held-out documents for in-loop evals.
    """
    store = TokenStore.open(data_config.tokens)
    spec = data_config.tokenizer
    if spec in ("", "sentencepiece"):
        spec = store.manifest["tokenizer"]
    store.check_tokenizer(spec)
    eval_docs = data_config.get("eval_docs", "")
    if not eval_docs:
        raise TokenStoreError("data.tokens needs data.eval_docs: the held-out documents "
                              "(JSONL) of the in-loop evals")
    held, held_stats = load_documents(f"jsonl:{eval_docs}")
    batches = TokenBatches(store, seq_len=seq_len, batch_size=batch_size, seed=seed,
                           process_index=process_index, process_count=process_count)
    return PretokenizedInput(batches, load_tokenizer(spec), held, StoreStats(store, held_stats))
