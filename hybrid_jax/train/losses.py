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


def masked_mean(values: Float[Array, "b t"], mask: Array) -> Float[Array, ""]:
    """Mean of `values` where `mask` is true (0 if nothing is selected)."""
    mask = mask.astype(jnp.float32)
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)
