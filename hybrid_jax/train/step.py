"""The jitted training step: a pure function of (params, opt_state, batch).

The model is split once (`nnx.split`) into a static graph definition and a parameter
state; the step merges them inside `jit`, so nothing but arrays crosses the boundary,
and the old parameters and optimizer state are donated to the new ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax
from flax import nnx

from hybrid_jax.data.batch import Batch
from hybrid_jax.train.losses import masked_mean, token_nll

Metrics = dict[str, jax.Array]
StepFn = Callable[[nnx.State, optax.OptState, Batch], tuple[nnx.State, optax.OptState, Metrics]]


def batch_loss(graphdef: nnx.GraphDef, params: nnx.State, batch: Batch) -> jax.Array:
    """Mean next-token loss (nats) over the unmasked targets of a batch."""
    model = nnx.merge(graphdef, params)
    logits = model(batch.inputs, segment_ids=batch.segment_ids)
    return masked_mean(token_nll(logits, batch.targets), batch.loss_mask)


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation) -> StepFn:
    """A jitted `step(params, opt_state, batch) -> (params, opt_state, metrics)`."""

    def step(params: nnx.State, opt_state: Any, batch: Batch):
        loss, grads = jax.value_and_grad(lambda p: batch_loss(graphdef, p, batch))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics = {"loss": loss, "grad_norm": optax.global_norm(grads)}
        return params, opt_state, metrics

    return jax.jit(step, donate_argnums=(0, 1))
