"""Per-token cross-entropy and z-loss: the one loss definition training, evals and
scoring share."""

from __future__ import annotations

import functools

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
    """`token_nll_and_log_z` of the logits h @ w (float32 accumulation), `seq_chunk`
    positions of every row at a time, with its own backward (`_head_loss`).

    Memory: the [b, chunk, vocab] float32 logits exist for one chunk only, in the
    forward and, recomputed, in the backward (a 100k vocabulary at 4 x 4096 tokens
    would otherwise hold several 6.6 GB float32 arrays for the gradient). Chunks run
    along the sequence, so a batch sharded over devices stays sharded. Measured, XLA's
    buffer assignment on CPU for loss and gradients at b 4, t 4096, d 2048, vocab
    100352: 13.1 GiB of temporaries with full logits, 2.5 GiB with 256-position chunks
    (1024: 5.6 vs 8.5 GiB for a whole 60M training step at 4 x 2048; 256: 3.3).
    `seq_chunk=0` computes the full logits at once instead and keeps them for the
    backward (no recomputation; the trainer's `train.loss_chunk`).

    Precision: w is cast to h's dtype once per pass (not per chunk); the logits and
    softmax are float32; the logits' gradient is cast to h's dtype for the two backward
    products (as autodiff of a bf16 model does for every other layer), which accumulate
    in float32, and dw sums over chunks in float32 (w's dtype). With autodiff instead,
    the float32 logit gradient turned both backward products into float32 (TF32) GEMMs
    and w was converted three times per chunk: on an H100 those took ~33 ms of a 149 ms
    training step of the 370M transformer (benchmarks/train_throughput.py --profile).
    The training step itself uses `chunked_head_objective` (same chunks and precision,
    the gradient formed in the forward pass); this function serves the eval step and
    objectives built on per-token losses.
    """
    b, t, _ = h_btd.shape
    if seq_chunk < 0:
        raise ValueError(f"seq_chunk must be >= 0 (0: full logits), got {seq_chunk}")
    h, tg = _as_chunks(seq_chunk, h_btd, targets)
    nll, log_z = _head_loss(h, w_dv, tg, seq_chunk == 0)
    return tuple(x.swapaxes(0, 1).reshape(b, -1)[:, :t] for x in (nll, log_z))


def _logits(h_c, w_c):
    return jnp.einsum("bcd,dv->bcv", h_c, w_c, preferred_element_type=jnp.float32)


def _head_grads(h_c, w_c, logits, log_z, targets, g_nll, g_log_z):
    """(dh [b, c, d] in h's dtype, dw [d, v] float32) of one chunk, given the cotangents
    of its nll and log Z: d nll / d logits = softmax - onehot(target), d log Z / d logits
    = softmax; the logits' gradient is cast to h's dtype for the two products."""
    p = jnp.exp(logits - log_z[..., None])
    onehot = jax.nn.one_hot(targets, logits.shape[-1], dtype=jnp.float32)
    dlogits = ((g_nll + g_log_z)[..., None] * p - g_nll[..., None] * onehot).astype(h_c.dtype)
    dh = jnp.einsum("bcv,dv->bcd", dlogits, w_c, preferred_element_type=jnp.float32)
    dw = jnp.einsum("bcd,bcv->dv", h_c, dlogits, preferred_element_type=jnp.float32)
    return dh.astype(h_c.dtype), dw


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _head_loss(h, w, targets, keep_logits: bool):
    """(nll, log Z) [n, b, c] of the chunks h [n, b, c, d] (scanned over n), targets
    [n, b, c]; `keep_logits`: save the float32 logits for the backward (one chunk)."""
    return _head_loss_fwd(h, w, targets, keep_logits)[0]


def _head_loss_fwd(h, w, targets, keep_logits):
    w_c = w.astype(h.dtype)

    def one_chunk(_, xs):
        h_c, t_c = xs
        logits = _logits(h_c, w_c)
        nll, log_z = token_nll_and_log_z(logits, t_c)
        return None, (nll, log_z, logits if keep_logits else None)

    _, (nll, log_z, logits) = jax.lax.scan(one_chunk, None, (h, targets))
    return (nll, log_z), (h, w, targets, log_z, logits)


def _head_loss_bwd(keep_logits, res, cts):
    h, w, targets, log_z, kept = res
    g_nll, g_log_z = cts
    w_c = w.astype(h.dtype)

    def one_chunk(dw, xs):
        h_c, t_c, lz_c, gn_c, gz_c, logits = xs
        if logits is None:
            logits = _logits(h_c, w_c)
        dh_c, dw_c = _head_grads(h_c, w_c, logits, lz_c, t_c, gn_c, gz_c)
        return dw + dw_c, dh_c

    dw, dh = jax.lax.scan(one_chunk, jnp.zeros(w.shape, jnp.float32),
                          (h, targets, log_z, g_nll, g_log_z, kept))
    return dh, dw.astype(w.dtype), None


_head_loss.defvjp(_head_loss_fwd, _head_loss_bwd)


def chunked_head_objective(
    h_btd: Float[Array, "b t d"], w_dv: Float[Array, "d v"], targets: Int[Array, "b t"],
    mask: Float[Array, "b t"], *, z_loss: float, seq_chunk: int = 256,
) -> tuple[Float[Array, ""], tuple[Float[Array, ""], Float[Array, ""]]]:
    """The training objective of the LM head, sum(mask nll) + z_loss sum(mask log Z^2),
    and (that nll sum, that log Z^2 sum) as values only (gradients stopped).

    The same logits, chunks and precision as `chunked_token_nll_and_log_z`, but the
    gradient is formed in the forward pass: the objective's cotangents with respect to
    the logits are known there (mask and z-loss), so each chunk's logits are computed
    once and dh, dw come out of the same pass; the backward only scales them by the
    objective's cotangent. Saves the backward's recomputation of the logits and one
    write and read of them, at the price of dw ([d, vocab], float32) held from the
    forward to the backward.
    """
    if seq_chunk < 0:
        raise ValueError(f"seq_chunk must be >= 0 (0: full logits), got {seq_chunk}")
    h, tg, m = _as_chunks(seq_chunk, h_btd, targets, mask.astype(jnp.float32))
    objective, nll_sum, z_sum = _head_objective(h, w_dv, tg, m, float(z_loss))
    return objective, (jax.lax.stop_gradient(nll_sum), jax.lax.stop_gradient(z_sum))


def _as_chunks(seq_chunk: int, h_btd, *per_token):
    """[b, t, ...] -> [n, b, c, ...] chunks of `seq_chunk` positions (0: one chunk),
    zero-padded at the end of t."""
    b, t = h_btd.shape[:2]
    chunk = t if seq_chunk == 0 else min(seq_chunk, t)
    num = -(-t // chunk)

    def split(x):
        x = jnp.pad(x, ((0, 0), (0, num * chunk - t)) + ((0, 0),) * (x.ndim - 2))
        return x.reshape(b, num, chunk, *x.shape[2:]).swapaxes(0, 1)

    return tuple(split(x) for x in (h_btd, *per_token))


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _head_objective(h, w, targets, mask, z_loss: float):
    """(objective, nll sum, log Z^2 sum) of chunks h [n, b, c, d]; see
    `chunked_head_objective` (which stops the gradients of the two sums)."""
    return _head_objective_fwd(h, w, targets, mask, z_loss)[0]


def _head_objective_fwd(h, w, targets, mask, z_loss):
    w_c = w.astype(h.dtype)

    def one_chunk(carry, xs):
        dw, nll_sum, z_sum = carry
        h_c, t_c, m_c = xs
        logits = _logits(h_c, w_c)
        nll, log_z = token_nll_and_log_z(logits, t_c)
        # the objective's cotangents: mask for each nll, 2 z_loss log Z mask for each log Z
        dh_c, dw_c = _head_grads(h_c, w_c, logits, log_z, t_c, m_c,
                                 2.0 * z_loss * log_z * m_c)
        carry = (dw + dw_c, nll_sum + jnp.sum(nll * m_c),
                 z_sum + jnp.sum(jnp.square(log_z) * m_c))
        return carry, dh_c

    zero = jnp.zeros((), jnp.float32)
    (dw, nll_sum, z_sum), dh = jax.lax.scan(
        one_chunk, (jnp.zeros(w.shape, jnp.float32), zero, zero), (h, targets, mask))
    return (nll_sum + z_loss * z_sum, nll_sum, z_sum), (dh, dw.astype(w.dtype))


def _head_objective_bwd(z_loss, res, cts):
    del z_loss
    dh, dw = res
    ct = cts[0]  # the two sums reach callers only through stop_gradient: no cotangent
    return ((ct * dh.astype(jnp.float32)).astype(dh.dtype), (ct * dw).astype(dw.dtype),
            None, None)


_head_objective.defvjp(_head_objective_fwd, _head_objective_bwd)


def masked_mean(values: Float[Array, "b t"], mask: Array) -> Float[Array, ""]:
    """Mean of `values` where `mask` is true (0 if nothing is selected)."""
    mask = mask.astype(jnp.float32)
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)
