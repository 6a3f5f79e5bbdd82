"""The jitted training and evaluation steps: pure functions of arrays.

The model is split once (`nnx.split`) into a static graph definition and its parameter
state; the steps merge them inside `jit`, so nothing but arrays crosses the boundary.
The training step donates the old state, accumulates gradients over micro-batches,
and normalises by the number of target tokens of the whole batch, so the update does
not depend on how the batch is split across micro-batches or devices.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from hybrid_jax.data.batch import Batch
from hybrid_jax.sharding import global_from_replicated_host
from hybrid_jax.train.losses import chunked_head_objective, chunked_token_nll_and_log_z
from hybrid_jax.train.state import TrainState

Metrics = dict[str, jax.Array]


def _sums(graphdef: nnx.GraphDef, params: nnx.State, batch: Batch, z_loss: float,
          loss_chunk: int):
    """(objective sum, (nll sum, z sum, target count)) over one (micro-)batch."""
    model = nnx.merge(graphdef, params)
    h = model.hidden_states(batch.inputs, segment_ids=batch.segment_ids)
    mask = batch.loss_mask.astype(jnp.float32)
    objective, (nll_sum, z_sum) = chunked_head_objective(
        h, model.output_weights(), batch.targets, mask, z_loss=z_loss, seq_chunk=loss_chunk)
    return objective, (nll_sum, z_sum, jnp.sum(mask))


def make_train_step(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    *,
    schedule: Callable[[jax.Array], jax.Array] | None = None,
    z_loss: float = 0.0,
    microbatches: int = 1,
    loss_chunk: int = 256,
    state_sharding=None,
    batch_sharding=None,
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    """A jitted `step(state, batch) -> (state, metrics)`; `state` is donated.

    `loss_chunk`: positions per piece of the LM head's logits (`chunked_head_objective`;
    0: the full logits at once, faster where they fit).
    Metrics: loss (mean nats per target), z_loss, grad_norm, lr, tokens.
    """
    if microbatches < 1:
        raise ValueError(f"microbatches must be >= 1, got {microbatches}")
    if loss_chunk < 0:
        raise ValueError(f"loss_chunk must be >= 0 (0: full logits), got {loss_chunk}")
    grad_fn = jax.grad(lambda p, b: _sums(graphdef, p, b, z_loss, loss_chunk), has_aux=True)

    def step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        b = batch.inputs.shape[0]
        if b % microbatches:
            raise ValueError(f"batch of {b} rows does not split into {microbatches} micro-batches")
        if microbatches == 1:
            grads, (nll_sum, z_sum, count) = grad_fn(state.params, batch)
        else:
            micro = jax.tree.map(
                lambda x: x.reshape(microbatches, b // microbatches, *x.shape[1:]), batch)

            def accumulate(carry, mb):
                grads, sums = carry
                g, s = grad_fn(state.params, Batch(*mb))
                return (jax.tree.map(jnp.add, grads, g), jax.tree.map(jnp.add, sums, s)), None

            zeros = jax.tree.map(jnp.zeros_like, state.params)
            init = (zeros, (jnp.zeros(()), jnp.zeros(()), jnp.zeros(())))
            (grads, (nll_sum, z_sum, count)), _ = jax.lax.scan(accumulate, init, tuple(micro))
        denom = jnp.maximum(count, 1.0)
        grads = jax.tree.map(lambda g: g / denom, grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "loss": nll_sum / denom,
            "z_loss": z_sum / denom,
            "grad_norm": optax.global_norm(grads),
            "lr": schedule(state.step) if schedule is not None else jnp.zeros(()),
            "tokens": count,
        }
        return TrainState(state.step + 1, params, opt_state), metrics

    return jax.jit(step, donate_argnums=0, in_shardings=(state_sharding, batch_sharding),
                   out_shardings=(state_sharding, None))


def make_eval_step(graphdef: nnx.GraphDef, *, batch_sharding: NamedSharding | None = None):
    """A jitted `nll(params, batch) -> [b, t]` per-token losses in nats (unmasked).

    With `batch_sharding`, the batch is a host batch that every process holds in full
    (the eval set), and every process gets all the losses back.
    """

    def nll(params: nnx.State, batch: Batch) -> jax.Array:
        model = nnx.merge(graphdef, params)
        h = model.hidden_states(batch.inputs, segment_ids=batch.segment_ids)
        return chunked_token_nll_and_log_z(h, model.output_weights(), batch.targets)[0]

    if batch_sharding is None:
        return jax.jit(nll)
    replicated = NamedSharding(batch_sharding.mesh, PartitionSpec())
    jitted = jax.jit(nll, in_shardings=(None, batch_sharding), out_shardings=replicated)

    def global_nll(params: nnx.State, batch: Batch) -> jax.Array:
        return jitted(params, jax.tree.map(
            lambda x: global_from_replicated_host(np.asarray(x), batch_sharding), batch))

    return global_nll
