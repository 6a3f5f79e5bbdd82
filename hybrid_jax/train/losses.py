"""Per-token cross-entropy and z-loss: the one loss definition training, evals and
scoring share."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hybrid_jax.typing import Array, Float, Int, Logits


def token_nll(logits: Logits, targets: Int[Array, "b t"]) -> Float[Array, "b t"]:
    """-log p(target) in nats for every position, computed in float32.

    Returns the per-token losses unreduced, so they can be logged, filtered or masked.
    """
    logits = logits.astype(jnp.float32)
    log_z = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return log_z - target_logit


def token_nll_and_log_z(
    logits: Logits, targets: Int[Array, "b t"]
) -> tuple[Float[Array, "b t"], Float[Array, "b t"]]:
    """(-log p(target), log Z) per position, float32; log Z feeds the z-loss."""
    logits = logits.astype(jnp.float32)
    log_z = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return log_z - target_logit, log_z


def chunked_token_nll_and_log_z(
    h_btd: Float[Array, "b t d"], w_dv: Float[Array, "d v"], targets: Int[Array, "b t"],
    *, seq_chunk: int = 256,
) -> tuple[Float[Array, "b t"], Float[Array, "b t"]]:
    """`token_nll_and_log_z` of the logits h @ w, `seq_chunk` positions of every row at
    a time: the [b, chunk, vocab] float32 logits exist for one chunk only, in the
    forward and, recomputed, in the backward (a 100k vocabulary at 4 x 4096 tokens
    would otherwise hold several 6.6 GB float32 arrays for the gradient). Chunks run
    along the sequence, so a batch sharded over devices stays sharded. The projection
    is cast to h's dtype inside each chunk, so its gradient sums over chunks in its own
    (float32) dtype. Measured, XLA's buffer assignment on CPU for loss and gradients at
    b 4, t 4096, d 2048, vocab 100352: 13.1 GiB of temporaries with full logits, 2.5 GiB
    with 256-position chunks (1024: 5.6 vs 8.5 GiB for a whole 60M training step at
    4 x 2048; 256: 3.3). `seq_chunk=0` computes the full logits at once instead (no
    recomputation; the trainer's `train.loss_chunk`)."""
    b, t, d = h_btd.shape
    if seq_chunk < 0:
        raise ValueError(f"seq_chunk must be >= 0 (0: full logits), got {seq_chunk}")
    if seq_chunk == 0:  # one piece, nothing recomputed: faster, [b, t, vocab] in memory
        logits = jnp.einsum("btd,dv->btv", h_btd, w_dv.astype(h_btd.dtype),
                            preferred_element_type=jnp.float32)
        return token_nll_and_log_z(logits, targets)
    chunk = min(seq_chunk, t)
    num = -(-t // chunk)
    pad = num * chunk - t
    h = jnp.pad(h_btd, ((0, 0), (0, pad), (0, 0))).reshape(b, num, chunk, d)
    tg = jnp.pad(targets, ((0, 0), (0, pad))).reshape(b, num, chunk)

    @jax.checkpoint
    def one_chunk(_, xs):
        h_c, t_c = xs
        logits = jnp.einsum("bcd,dv->bcv", h_c, w_dv.astype(h_c.dtype),
                            preferred_element_type=jnp.float32)
        return None, token_nll_and_log_z(logits, t_c)

    _, (nll, log_z) = jax.lax.scan(one_chunk, None, (h.swapaxes(0, 1), tg.swapaxes(0, 1)))
    return (nll.swapaxes(0, 1).reshape(b, num * chunk)[:, :t],
            log_z.swapaxes(0, 1).reshape(b, num * chunk)[:, :t])


def masked_mean(values: Float[Array, "b t"], mask: Array) -> Float[Array, ""]:
    """Mean of `values` where `mask` is true (0 if nothing is selected)."""
    mask = mask.astype(jnp.float32)
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)
