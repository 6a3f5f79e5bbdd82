"""Jitted per-token scoring: loss, entropy and rank of every target, vocab in slices.

For every target token: loss = -log p(target) (nats), entropy of the predicted
distribution (nats), and rank = how many vocabulary entries score strictly higher than
the target (0: the model's top choice). The LM head runs over the vocabulary in slices
of `vocab_chunk` columns with a running log-sum-exp, so a 100k vocabulary at 8192 tokens
never materialises all logits at once; the matmuls accumulate in float32 whatever the
compute dtype, and the softmax statistics are float32.

`make_scorer` gives the jitted function the scoring loop and in-loop evals call; it is
one function per (graphdef, vocab_chunk, batch sharding), so the exports of one run (equal
graphdefs) share its compilations instead of compiling the same program once each;
`score` is the plain Python API: model + windows -> per-token losses. Both hand it
`Batch.drop_trivial_segments()`: windows that hold one document (then padding) go
without a document mask, which on GPUs lets attention take cuDNN; the losses the mask
keeps are the same (tests/scoring/test_scoring.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hybrid_jax.data.batch import Batch
from hybrid_jax.models.lm import LM
from hybrid_jax.typing import Array, Float, Hidden, Int


class TokenStats(NamedTuple):
    loss: Float[Array, "b t"]  # nats
    entropy: Float[Array, "b t"]  # nats
    rank: Int[Array, "b t"]


def token_stats(h_btd: Hidden, w_dv: jax.Array, targets: Int[Array, "b t"], *,
                vocab_chunk: int = 8192) -> TokenStats:
    """Loss, entropy and rank from hidden states, one vocabulary slice at a time."""
    d, vocab = w_dv.shape
    chunk = min(vocab_chunk, vocab)
    n_chunks = -(-vocab // chunk)
    w = jnp.pad(w_dv.astype(h_btd.dtype), ((0, 0), (0, n_chunks * chunk - vocab)))
    w = w.reshape(d, n_chunks, chunk).transpose(1, 0, 2)  # [chunks, d, chunk]
    # The target's logit by a gather, for ranking; the loss uses the value the chunk
    # loop computes, so loss and softmax share identical numerics.
    w_target = jnp.take(w_dv.astype(h_btd.dtype), targets, axis=1)  # [d, b, t]
    target_ref = jnp.einsum("btd,dbt->bt", h_btd, w_target, preferred_element_type=jnp.float32)
    b, t = targets.shape
    neg_inf = jnp.float32(-jnp.inf)

    def step(carry, xs):
        m, s, sl, tl, rank = carry
        w_c, c = xs
        logits = jnp.einsum("btd,dv->btv", h_btd, w_c, preferred_element_type=jnp.float32)
        cols = c * chunk + jnp.arange(chunk)
        valid = cols < vocab
        logits = jnp.where(valid, logits, neg_inf)
        m_new = jnp.maximum(m, logits.max(-1))
        scale = jnp.exp(m - m_new)
        e = jnp.where(valid, jnp.exp(logits - m_new[..., None]), 0.0)
        s = s * scale + e.sum(-1)
        sl = sl * scale + jnp.sum(e * jnp.where(valid, logits, 0.0), -1)
        is_target = cols == targets[..., None]
        tl = tl + jnp.sum(jnp.where(is_target, logits, 0.0), -1)
        rank = rank + jnp.sum((logits > target_ref[..., None]) & ~is_target, -1)
        return (m_new, s, sl, tl, rank), None

    init = (jnp.full((b, t), neg_inf), jnp.zeros((b, t)), jnp.zeros((b, t)),
            jnp.zeros((b, t)), jnp.zeros((b, t), jnp.int32))
    (m, s, sl, tl, rank), _ = jax.lax.scan(step, init, (w, jnp.arange(n_chunks)))
    log_z = m + jnp.log(s)
    return TokenStats(loss=log_z - tl, entropy=log_z - sl / s, rank=rank)


def make_scorer(
    graphdef: nnx.GraphDef, *, vocab_chunk: int = 8192, batch_sharding=None
) -> Callable[[nnx.State, Batch], TokenStats]:
    """A jitted `scorer(params, batch) -> TokenStats` ([b, t] each, unmasked); the same
    function object for equal arguments (graphdefs compare by structure and config)."""
    return _jitted_scorer(graphdef, vocab_chunk, batch_sharding)


@functools.lru_cache(maxsize=8)
def _jitted_scorer(graphdef: nnx.GraphDef, vocab_chunk: int, batch_sharding):
    def scorer(params: nnx.State, batch: Batch) -> TokenStats:
        model = nnx.merge(graphdef, params)
        h = model.hidden_states(batch.inputs, segment_ids=batch.segment_ids)
        return token_stats(h, model.output_weights(), batch.targets, vocab_chunk=vocab_chunk)

    return jax.jit(scorer, in_shardings=(None, batch_sharding))


def score(model: LM, tokens: np.ndarray, segment_ids: np.ndarray | None = None, *,
          batch_size: int = 8, vocab_chunk: int = 8192) -> np.ndarray:
    """Per-token losses (nats) [r, t] of windows [r, t + 1] (e.g. for in-loop evals).

    Entry [i, j] is -log p(tokens[i, j + 1] | tokens[i, :j + 1]); targets whose input
    belongs to another document (or padding, segment id 0) are NaN.
    """
    tokens = np.asarray(tokens)
    if segment_ids is None:
        segment_ids = np.ones_like(tokens, np.int32)
    graphdef, params = nnx.split(model, nnx.Param)
    scorer = make_scorer(graphdef, vocab_chunk=vocab_chunk)
    out = []
    for start in range(0, tokens.shape[0], batch_size):
        batch = Batch.from_rows(tokens[start : start + batch_size],
                                segment_ids[start : start + batch_size])
        loss = np.asarray(scorer(params, batch.drop_trivial_segments()).loss)
        out.append(np.where(batch.loss_mask, loss, np.nan))
    return np.concatenate(out)
