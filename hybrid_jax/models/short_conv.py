"""Depthwise causal short convolution + SiLU, restarting at every document start.

GDN runs one of these (width 4) on each of q, k and v before the delta rule:

    y[t, e] = silu( sum_{i=0..w-1} W[i, e] * x[t - (w-1) + i, e] )

with x[t'] taken as zero when t' precedes the window (or comes from the decode cache)
and when t' belongs to an earlier document than t. W is stored tap-major [w, e]; an HF
`conv1d.weight` [e, 1, w] maps to it as `weight[:, 0, :].T`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hybrid_jax.models.params import param
from hybrid_jax.typing import Array, Float, Int


class ShortConv(nnx.Module):
    """Depthwise causal conv of `width` taps over `channels`, then SiLU."""

    def __init__(
        self, channels: int, width: int, *, rngs: nnx.Rngs, param_dtype: jnp.dtype
    ) -> None:
        self.width = width
        # torch's default Conv1d init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = width.
        bound = width**-0.5
        w = jax.random.uniform(rngs.params(), (width, channels), param_dtype, -bound, bound)
        self.weight = param(w, (None, "heads"))

    def __call__(
        self,
        x_bte: Float[Array, "b t e"],
        *,
        doc_bt: Int[Array, "b t"] | None = None,
        cache_bwe: Float[Array, "b w e"] | None = None,
    ) -> tuple[Float[Array, "b t e"], Float[Array, "b w e"]]:
        """Convolve x. Returns (y, new cache of the last width-1 inputs).

        Args:
          x_bte: inputs.
          doc_bt: document index per token (`segments.document_index`); the cache and
            token 0 belong to document 0. None: one document.
          cache_bwe: the width-1 inputs that precede x (decode / chunked prefill);
            zeros if None.
        """
        b, t, e = x_bte.shape
        lag_max = self.width - 1
        if cache_bwe is None:
            cache_bwe = jnp.zeros((b, lag_max, e), x_bte.dtype)
        xx = jnp.concatenate([cache_bwe.astype(x_bte.dtype), x_bte], axis=1)
        if doc_bt is None:
            doc_bt = jnp.zeros((b, t), jnp.int32)
        doc_all = jnp.concatenate([jnp.zeros((b, lag_max), doc_bt.dtype), doc_bt], axis=1)
        w = self.weight[...].astype(jnp.float32)
        y = jnp.zeros((b, t, e), jnp.float32)
        for lag in range(self.width):
            start = lag_max - lag
            x_lag = xx[:, start : start + t].astype(jnp.float32)
            same = doc_all[:, start : start + t] == doc_bt
            y = y + jnp.where(same[..., None], x_lag, 0.0) * w[lag_max - lag]
        y = jax.nn.silu(y).astype(x_bte.dtype)
        # The next token continues the last document: forget inputs of earlier ones.
        tail = xx[:, -lag_max:] if lag_max else xx[:, :0]
        tail_doc = doc_all[:, -lag_max:] if lag_max else doc_all[:, :0]
        new_cache = jnp.where((tail_doc == doc_all[:, -1:])[..., None], tail, 0)
        return y, new_cache
