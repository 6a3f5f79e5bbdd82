"""Shape letters and array aliases used across hybrid_jax.

Every array name, einsum string and jaxtyping annotation in the package uses these
letters, so `q_btnh` reads as "queries, [batch, token, head, head_dim]".

    b      batch (windows)
    t      token position in a window (queries)
    s      key/value position (attention keys; equals t for self-attention)
    d      model width (d_model)
    n      query heads (attention) or GDN heads
    g      key/value heads of grouped-query attention (n % g == 0)
    h      attention head dim
    k      GDN key head dim (q and k of the delta rule)
    v      GDN value head dim
    c      position inside a GDN chunk
    l      GDN chunk index (t = l * c after padding)
    m      MLP (SwiGLU) hidden width
    w      short-convolution width
    e      channels of a depthwise short convolution
    vocab  vocabulary (spelled out: `v` is taken)

Units: losses are in nats; gates `g` are natural-log decays (g <= 0).
"""

from __future__ import annotations

from typing import TypeAlias

import jax
from jaxtyping import Array, Bool, Float, Int

PRNGKey: TypeAlias = jax.Array

# Token-level inputs of a language model.
Tokens: TypeAlias = Int[Array, "b t"]
SegmentIds: TypeAlias = Int[Array, "b t"]
"""Document id of every token in a packed window. Adjacent documents must differ;
tokens of one document share an id. Attention never crosses ids, and the GDN state and
short convolution restart where the id changes."""
Positions: TypeAlias = Int[Array, "b t"]
"""Position of every token inside its own document (restarts at 0 per document)."""

Hidden: TypeAlias = Float[Array, "b t d"]
Logits: TypeAlias = Float[Array, "b t vocab"]

# Attention.
Queries: TypeAlias = Float[Array, "b t n h"]
Keys: TypeAlias = Float[Array, "b s g h"]
Values: TypeAlias = Float[Array, "b s g h"]
AttentionOut: TypeAlias = Float[Array, "b t n h"]
AttentionMask: TypeAlias = Bool[Array, "b t s"]

# Gated DeltaNet.
GdnQK: TypeAlias = Float[Array, "b t n k"]
GdnV: TypeAlias = Float[Array, "b t n v"]
GdnGate: TypeAlias = Float[Array, "b t n"]
"""Log decay g <= 0, float32."""
GdnBeta: TypeAlias = Float[Array, "b t n"]
"""Delta-rule write strength, in (0, 1) or (0, 2) with negative eigenvalues."""
GdnState: TypeAlias = Float[Array, "b n k v"]
"""Recurrent state h (fla layout: h is K x V, o = h^T q), always float32."""

__all__ = [
    "Array",
    "AttentionMask",
    "AttentionOut",
    "Bool",
    "Float",
    "GdnBeta",
    "GdnGate",
    "GdnQK",
    "GdnState",
    "GdnV",
    "Hidden",
    "Int",
    "Keys",
    "Logits",
    "PRNGKey",
    "Positions",
    "Queries",
    "SegmentIds",
    "Tokens",
    "Values",
]
