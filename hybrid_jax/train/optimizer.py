"""AdamW with gradient clipping; weight decay on matrices but not embeddings or norms.

OLMo 2/3 exclude embeddings and every norm / gate scalar from weight decay; all other
weights (2-d projections, the LM head) decay. Optimizer state follows the parameters'
dtype (float32 master weights).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import optax
from flax import nnx


def decay_mask(params: nnx.State) -> nnx.State:
    """True for parameters that take weight decay: >= 2-d and not the input embedding."""

    def decays(path, x) -> bool:
        return x.ndim >= 2 and path[0] != "embed"

    return jax.tree_util.tree_map_with_path(
        lambda path, x: decays(tuple(getattr(k, "key", getattr(k, "idx", k)) for k in path), x),
        params,
    )


def make_optimizer(
    schedule: Callable[[int], float],
    *,
    weight_decay: float = 0.1,
    grad_clip: float = 1.0,
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
) -> optax.GradientTransformation:
    """clip(global grad norm) -> AdamW(schedule); `grad_clip <= 0` disables clipping."""
    adamw = optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                        mask=decay_mask)
    if grad_clip <= 0:
        return adamw
    return optax.chain(optax.clip_by_global_norm(grad_clip), adamw)
