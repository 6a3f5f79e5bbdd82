"""Packed windows: several documents share one row of tokens, told apart by segment ids.

A segment id is any integer per token; a document starts wherever the id differs from
the previous token's. Every mixing layer must keep documents apart: attention masks
keys of other documents, the GDN recurrence and its short convolution restart at each
document start. These helpers turn segment ids into what those layers need.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hybrid_jax.typing import Array, Bool, Int, Positions, SegmentIds


def document_starts(segment_ids: SegmentIds) -> Bool[Array, "b t"]:
    """True at every token that begins a new document inside the window.

    Position 0 is never a start: what precedes the window (an initial recurrent state,
    a cached prefix) is continued there unless the caller resets it.
    """
    changed = segment_ids[:, 1:] != segment_ids[:, :-1]
    return jnp.pad(changed, ((0, 0), (1, 0)), constant_values=False)


def document_index(segment_ids: SegmentIds) -> Int[Array, "b t"]:
    """0, 0, 1, 1, 1, 2, ...: how many document starts precede or are at each token.

    Two tokens belong to the same document iff their indices are equal, whatever id
    scheme the caller used (ids may repeat in non-adjacent documents).
    """
    return jnp.cumsum(document_starts(segment_ids).astype(jnp.int32), axis=1)


def positions_from_segments(segment_ids: SegmentIds) -> Positions:
    """Position of every token within its own document: 0, 1, 2, 0, 1, ..."""
    b, t = segment_ids.shape
    idx = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
    starts = document_starts(segment_ids) | (idx == 0)
    start_pos = jnp.where(starts, idx, 0)
    last_start = jax.lax.cummax(start_pos, axis=1)
    return idx - last_start
