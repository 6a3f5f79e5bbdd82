"""`TrainState`: everything a training step updates, as one pytree."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx


class TrainState(NamedTuple):
    step: jax.Array  # int32 scalar: optimizer updates completed
    params: nnx.State
    opt_state: Any

    @classmethod
    def create(cls, params: nnx.State, tx: optax.GradientTransformation) -> TrainState:
        return cls(jnp.zeros((), jnp.int32), params, tx.init(params))
