"""Packing tokenized documents into fixed windows with segment ids.

Documents are concatenated, each followed by EOS, and cut into rows of `seq_len + 1`
tokens (inputs plus the shifted targets); consecutive rows overlap by one token so no
target is lost. Every token carries the 1-based id of its document; 0 marks padding.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def pack_documents(
    docs: Iterable[np.ndarray], seq_len: int, eos_id: int, *, pad_id: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Rows [r, seq_len + 1] of tokens and their segment ids [r, seq_len + 1].

    The tail row is padded (segment id 0) rather than dropped, so every token is used.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    tokens, segs = [], []
    for i, doc in enumerate(docs, start=1):
        doc = np.asarray(doc, np.int32)
        if doc.ndim != 1 or doc.size == 0:
            raise ValueError(f"document {i} is empty or not 1-d (shape {doc.shape})")
        tokens.append(np.append(doc, np.int32(eos_id)))
        segs.append(np.full(doc.size + 1, i, np.int32))
    if not tokens:
        raise ValueError("no documents to pack")
    flat, flat_seg = np.concatenate(tokens), np.concatenate(segs)
    stride = seq_len  # rows share one token: row r covers [r*seq_len, r*seq_len + seq_len]
    n_rows = max(1, -(-(flat.size - 1) // stride))
    total = n_rows * stride + 1
    flat = np.pad(flat, (0, total - flat.size), constant_values=pad_id)
    flat_seg = np.pad(flat_seg, (0, total - flat_seg.size), constant_values=0)
    idx = np.arange(n_rows)[:, None] * stride + np.arange(seq_len + 1)[None, :]
    return flat[idx], flat_seg[idx]
