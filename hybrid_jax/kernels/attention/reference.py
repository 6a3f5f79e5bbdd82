"""Masked softmax attention in plain jnp: the ground truth for every attention kernel.

Masks, for query i and key j (self-attention; queries are the last t of the s keys):
    causal           j <= i
    sliding window   i - window < j <= i  (exactly `window` keys, the query included;
                     Olmo 3's 4096 = jax `local_window_size=(4095, 0)`)
    segment ids      same document only (packed windows)
Grouped-query attention: n query heads share g key/value heads, n % g == 0, query head
i reading kv head i // (n // g). Logits and softmax are float32 (float32 inputs: exact
float32 products; bf16 inputs: bf16 products accumulated in float32); the output takes
q's dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hybrid_jax.segments import document_index
from hybrid_jax.typing import (
    Array,
    AttentionMask,
    AttentionOut,
    Keys,
    Queries,
    SegmentIds,
    Values,
)

_HI = jax.lax.Precision.HIGHEST


def check_attention_args(
    q: Array, k: Array, v: Array, causal: bool, window: int | None,
    segment_ids: Array | None = None,
) -> None:
    """Raise a ValueError naming the argument that does not fit."""
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(
            f"q, k, v must be [b, t, n, h], [b, s, g, h], [b, s, g, h]; "
            f"got {q.shape}, {k.shape}, {v.shape}"
        )
    if k.shape != v.shape:
        raise ValueError(f"k shape {k.shape} != v shape {v.shape}")
    b, t, n, h = q.shape
    if k.shape[0] != b or k.shape[3] != h:
        raise ValueError(f"k {k.shape} does not match q {q.shape} in batch or head dim")
    if n % k.shape[2]:
        raise ValueError(f"query heads {n} not divisible by key/value heads {k.shape[2]}")
    if k.shape[1] < t:
        raise ValueError(f"fewer keys ({k.shape[1]}) than queries ({t})")
    if window is not None:
        if not causal:
            raise ValueError("a sliding window is only defined for causal attention")
        if window < 1:
            raise ValueError(f"window must be >= 1 (keys seen, self included), got {window}")
    if segment_ids is not None and segment_ids.shape != (b, k.shape[1]):
        raise ValueError(f"segment_ids shape {segment_ids.shape} != (batch, keys) = "
                         f"{(b, k.shape[1])}")


def attention_mask(
    t: int,
    s: int,
    *,
    causal: bool = True,
    window: int | None = None,
    segment_ids: SegmentIds | None = None,
) -> AttentionMask:
    """Boolean [b or 1, t, s] mask, True where query i may read key j.

    `segment_ids` are [b, s], one per key; the queries are the last t keys.
    """
    qi = jnp.arange(s - t, s)[:, None]
    kj = jnp.arange(s)[None, :]
    mask = jnp.ones((t, s), bool)
    if causal:
        mask &= kj <= qi
    if window is not None:
        mask &= kj > qi - window
    mask = mask[None]
    if segment_ids is not None:
        doc = document_index(segment_ids)
        mask = mask & (doc[:, s - t :, None] == doc[:, None, :])
    return mask


def attention_reference(
    q: Queries,
    k: Keys,
    v: Values,
    *,
    causal: bool = True,
    window: int | None = None,
    segment_ids: SegmentIds | None = None,
    scale: float | None = None,
) -> AttentionOut:
    """softmax(q k^T * scale + mask) v with the masks above; scale defaults to h^-0.5.

    Args:
      q: [b, t, n, h]; k, v: [b, s, g, h] with s >= t.
      segment_ids: [b, s] document ids of the keys (queries: the last t of them).
    Returns:
      [b, t, n, h] in q's dtype. A query with no visible key (impossible when causal)
      gets zeros, never NaN.
    """
    check_attention_args(q, k, v, causal, window, segment_ids)
    b, t, n, h = q.shape
    s, gk = k.shape[1], k.shape[2]
    scale = h**-0.5 if scale is None else scale
    f32 = jnp.float32
    # float32 inputs: exact float32 products. bf16 / fp16 inputs: products of the
    # inputs as given, accumulated in float32 (the numerics of fused attention kernels).
    exact = q.dtype == f32
    precision = _HI if exact else None
    q5 = q.reshape(b, t, gk, n // gk, h)
    logits = jnp.einsum("btgrh,bsgh->bgrts", q5, k, precision=precision,
                        preferred_element_type=f32) * scale
    mask = attention_mask(t, s, causal=causal, window=window, segment_ids=segment_ids)
    mask = mask[:, None, None]  # [b, 1, 1, t, s]
    logits = jnp.where(mask, logits, jnp.finfo(f32).min)
    probs = jax.nn.softmax(logits, axis=-1)
    probs = jnp.where(mask.any(-1, keepdims=True), probs, 0.0).astype(v.dtype)
    o = jnp.einsum("bgrts,bsgh->btgrh", probs, v, precision=precision,
                   preferred_element_type=f32)
    return o.reshape(b, t, n, h).astype(q.dtype)
