"""The training input pipeline (grain): shuffle, tokenize, pack, shard, batch.

    documents --shard by process--> shuffle(seed, reshuffled every epoch) --> repeat
      --> tokenize + EOS --> concat-then-split into rows of seq_len + 1 tokens
      (segment ids restart per row) --> batch of per-process rows

Each process reads a disjoint slice of the documents (`process_index::process_count`),
so a multi-host run sees every document once per epoch. The iterator is a grain
`DatasetIterator`: its state (a small JSON-able dict) is saved with every checkpoint,
and restoring it replays exactly the same batches, so a resumed run continues the same
loss curve. Positions are not carried: RoPE and NoPE depend only on position
differences inside a document, which segment ids fully determine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grain
import numpy as np
from grain.experimental import ConcatThenSplitIterDataset

from hybrid_jax.data.batch import Batch
from hybrid_jax.data.sources import Document
from hybrid_jax.data.tokenizers import Tokenizer


def training_dataset(
    docs: Sequence[Document],
    tokenizer: Tokenizer,
    *,
    seq_len: int,
    batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
) -> grain.IterDataset:
    """Batches {"tokens", "segment_ids"} of shape [batch_size, seq_len + 1] (this process).

    Args:
      batch_size: rows per batch on this process (global batch / process count).
    """
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    if len(docs) < process_count:
        raise ValueError(f"{len(docs)} documents cannot be shared by {process_count} processes")
    texts = [d.text for d in docs]
    eos = np.int32(tokenizer.eos_id)

    def tokenize(text: str) -> dict[str, np.ndarray]:
        return {"tokens": np.append(tokenizer.encode(text).astype(np.int32), eos)}

    ds = grain.MapDataset.source(texts)[process_index::process_count]
    ds = ds.shuffle(seed=seed).repeat(None).map(tokenize)
    packed = ConcatThenSplitIterDataset(ds.to_iter_dataset(),
                                        length_struct={"tokens": seq_len + 1})
    return packed.map(_rename).batch(batch_size, drop_remainder=True)


def _rename(row: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"tokens": row["tokens"].astype(np.int32),
            "segment_ids": row["tokens_segment_ids"].astype(np.int32)}


def to_batch(element: dict[str, Any]) -> Batch:
    """A pipeline element as a model `Batch` (inputs / targets shifted by one)."""
    return Batch.from_rows(element["tokens"], element["segment_ids"])
