"""The training input pipeline (grain): shuffle, tokenize, pack, shard, batch.

The global batch stream is made of `num_shards` independent shard streams, each over a
fixed slice of the documents (`shard::num_shards`):

    shard s: documents[s::K] --shuffle(seed, s; reshuffled every epoch)--> repeat
      --> tokenize + EOS --> concat-then-split into rows of seq_len + 1 tokens
      (segment ids restart per row) --> batches of B / K rows

    global batch = the K shard batches stacked in shard order

Each process owns a contiguous range of K / P shards and stacks only those, so its
rows are exactly its slice of the global batch (`jax.make_array_from_process_local_data`
takes them in process order). The stream therefore does not depend on the number of
processes: a checkpoint written by 2 hosts resumes on 1 (or 4) with the same batches,
as long as K stays the same. Iterator state is kept per shard (`get_state` gives
`{"num_shards": K, "shards": {s: grain state}}`), which is what makes that possible.

Positions are not carried: RoPE and NoPE depend only on position differences inside a
document, which segment ids fully determine.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hybrid_jax.data.batch import Batch
from hybrid_jax.data.sources import Document
from hybrid_jax.data.tokenizers import Tokenizer

if TYPE_CHECKING:
    import grain

Element = dict[str, np.ndarray]


def owned_shards(num_shards: int, process_index: int, process_count: int) -> range:
    """The contiguous range of shards that `process_index` of `process_count` reads."""
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    if num_shards % process_count:
        raise ValueError(f"data shards {num_shards} cannot be split evenly over "
                         f"{process_count} processes (set data.shards to a multiple)")
    per = num_shards // process_count
    return range(process_index * per, (process_index + 1) * per)


class ShardedBatches(Iterator[Element]):
    """This process's rows of the global batch stream: its shard batches, stacked.

    `get_state()` / `set_state()` round-trip the position of every owned shard; a state
    may hold more shards than this process owns (written by another topology).
    """

    def __init__(self, shards: dict[int, grain.IterDataset], num_shards: int) -> None:
        self.num_shards = num_shards
        self._iters = {s: iter(ds) for s, ds in shards.items()}

    @property
    def shards(self) -> list[int]:
        return list(self._iters)

    def __next__(self) -> Element:
        parts = [next(it) for it in self._iters.values()]
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    def get_state(self) -> dict[str, Any]:
        return {"num_shards": self.num_shards,
                "shards": {str(s): it.get_state() for s, it in self._iters.items()}}

    def set_state(self, state: dict[str, Any]) -> None:
        saved = state["shards"]
        missing = [s for s in self._iters if str(s) not in saved]
        if state["num_shards"] != self.num_shards or missing:
            raise ValueError(
                f"the data state is for {state['num_shards']} shards (holding "
                f"{sorted(map(int, saved))}), this stream has {self.num_shards} (this process "
                f"reads {self.shards}): was data.shards changed since it was saved?")
        for s, it in self._iters.items():
            it.set_state(saved[str(s)])


def training_batches(
    docs: Sequence[Document],
    tokenizer: Tokenizer,
    *,
    seq_len: int,
    batch_size: int,
    seed: int,
    num_shards: int = 0,
    process_index: int = 0,
    process_count: int = 1,
) -> ShardedBatches:
    """This process's rows of each global batch: {"tokens", "segment_ids"} of shape
    [batch_size / process_count, seq_len + 1].

    Args:
      batch_size: global rows per batch; a multiple of the number of shards.
      num_shards: independent shard streams (0: one per process). Keep it fixed to
        resume a run on a different number of processes.
    """
    num_shards = num_shards or process_count
    owned = owned_shards(num_shards, process_index, process_count)
    if batch_size % num_shards:
        raise ValueError(f"batch size {batch_size} is not a multiple of the {num_shards} "
                         "data shards")
    if len(docs) < num_shards:
        raise ValueError(f"{len(docs)} documents cannot fill {num_shards} data shards")
    # grain is imported here, not at the top: the trainer imports this module, and a
    # run on pre-tokenised data (token_batches.py) must not need grain installed.
    import grain
    from grain.experimental import ConcatThenSplitIterDataset

    texts = [d.text for d in docs]
    eos = np.int32(tokenizer.eos_id)

    def tokenize(text: str) -> Element:
        return {"tokens": np.append(tokenizer.encode(text).astype(np.int32), eos)}

    def shard_stream(s: int) -> grain.IterDataset:
        shard_seed = int(np.random.SeedSequence([seed, s]).generate_state(1)[0])
        ds = grain.MapDataset.source(texts)[s::num_shards]
        ds = ds.shuffle(seed=shard_seed).repeat(None).map(tokenize)
        packed = ConcatThenSplitIterDataset(ds.to_iter_dataset(),
                                            length_struct={"tokens": seq_len + 1})
        return packed.map(_rename).batch(batch_size // num_shards, drop_remainder=True)

    return ShardedBatches({s: shard_stream(s) for s in owned}, num_shards)


def _rename(row: Element) -> Element:
    return {"tokens": row["tokens"].astype(np.int32),
            "segment_ids": row["tokens_segment_ids"].astype(np.int32)}


def to_batch(element: dict[str, Any]) -> Batch:
    """A pipeline element as a model `Batch` (inputs / targets shifted by one)."""
    return Batch.from_rows(element["tokens"], element["segment_ids"])
