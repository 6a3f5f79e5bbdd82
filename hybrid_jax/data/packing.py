"""Packing tokenized documents into fixed windows with segment ids, for evaluation.

Documents are concatenated, each followed by EOS, and cut into rows of `seq_len + 1`
tokens (inputs plus the shifted targets); consecutive rows overlap by one token, so
every token after the first is a target exactly once and nothing is dropped. Every
token carries the 1-based id of its document (0 marks padding), and where it came from
(`doc_index`, `token_index`), so per-token features and scores can be mapped back.
(Training packs with grain's concat-then-split instead: `pipeline.py`.)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np


class PackedWindows(NamedTuple):
    tokens: np.ndarray  # [r, seq_len + 1] int32
    segment_ids: np.ndarray  # [r, seq_len + 1] int32, 1-based document number, 0 = pad
    doc_index: np.ndarray  # [r, seq_len + 1] int32, 0-based document number, -1 = pad
    token_index: np.ndarray  # [r, seq_len + 1] int32 index in the document; EOS = its length


def pack_documents(
    docs: Iterable[np.ndarray], seq_len: int, eos_id: int, *, pad_id: int = 0
) -> PackedWindows:
    """Rows of `seq_len + 1` tokens, overlapping by one; the tail row is padded."""
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    tokens, doc_of, index_in_doc = [], [], []
    for i, doc in enumerate(docs):
        doc = np.asarray(doc, np.int32)
        if doc.ndim != 1 or doc.size == 0:
            raise ValueError(f"document {i + 1} is empty or not 1-d (shape {doc.shape})")
        tokens.append(np.append(doc, np.int32(eos_id)))
        doc_of.append(np.full(doc.size + 1, i, np.int32))
        index_in_doc.append(np.arange(doc.size + 1, dtype=np.int32))
    if not tokens:
        raise ValueError("no documents to pack")
    flat, flat_doc, flat_idx = (np.concatenate(x) for x in (tokens, doc_of, index_in_doc))
    n_rows = max(1, -(-(flat.size - 1) // seq_len))
    total = n_rows * seq_len + 1
    pad = total - flat.size
    flat = np.pad(flat, (0, pad), constant_values=pad_id)
    flat_doc = np.pad(flat_doc, (0, pad), constant_values=-1)
    flat_idx = np.pad(flat_idx, (0, pad), constant_values=-1)
    idx = np.arange(n_rows)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
    doc_index = flat_doc[idx]
    return PackedWindows(flat[idx], doc_index + 1, doc_index, flat_idx[idx])
