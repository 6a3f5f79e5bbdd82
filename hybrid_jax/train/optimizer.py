"""AdamW with linear warmup and cosine decay, gradient clipping, no decay on norms."""

from __future__ import annotations

import jax
import optax


def decay_mask(params):
    """Weight-decay only matrices (embeddings, projections), not norms or gate scalars."""
    return jax.tree.map(lambda x: x.ndim >= 2, params)


def make_optimizer(
    *,
    learning_rate: float,
    steps: int,
    warmup_steps: int,
    weight_decay: float = 0.1,
    grad_clip: float = 1.0,
    b1: float = 0.9,
    b2: float = 0.95,
) -> optax.GradientTransformation:
    """clip(global norm) -> AdamW, lr warming up linearly then cosine-decaying to 10%."""
    if steps < 1 or warmup_steps < 0:
        raise ValueError(f"steps must be >= 1 and warmup_steps >= 0, got {steps}, {warmup_steps}")
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=learning_rate,
        warmup_steps=min(warmup_steps, steps),
        decay_steps=max(steps, warmup_steps + 1),
        end_value=0.1 * learning_rate,
    )
    return optax.chain(
        optax.clip_by_global_norm(grad_clip),
        optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay, mask=decay_mask),
    )
