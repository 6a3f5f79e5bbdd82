"""RMSNorm (float32 compute) and the gated RMSNorm of the GDN output."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hybrid_jax.models.params import param
from hybrid_jax.typing import Array, Float


def _normalize(x32: jax.Array, eps: float) -> jax.Array:
    return x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + eps)


class RMSNorm(nnx.Module):
    """y = weight * x / sqrt(mean(x^2) + eps), computed in float32, cast to x's dtype.

    Matches HF `Olmo2RMSNorm`: `(weight * x_hat).to(input_dtype)`.
    """

    def __init__(
        self,
        dim: int,
        *,
        eps: float,
        axis: str | None,
        param_dtype: jnp.dtype = jnp.float32,
    ) -> None:
        self.eps = eps
        self.weight = param(jnp.ones((dim,), param_dtype), (axis,))

    def __call__(self, x: Float[Array, "... d"]) -> Float[Array, "... d"]:
        y = _normalize(x.astype(jnp.float32), self.eps)
        return (self.weight[...].astype(jnp.float32) * y).astype(x.dtype)


class GatedRMSNorm(nnx.Module):
    """y = weight * RMSNorm(x) * silu(gate), float32 compute: norm first, then gate.

    The per-head output norm of Gated DeltaNet (fla `FusedRMSNormGated`, HF
    `OlmoHybridRMSNormGated`); Olmo Hybrid uses eps 1e-5 here, not the model's 1e-6.
    """

    def __init__(self, dim: int, *, eps: float, param_dtype: jnp.dtype = jnp.float32) -> None:
        self.eps = eps
        self.weight = param(jnp.ones((dim,), param_dtype), (None,))

    def __call__(
        self, x: Float[Array, "... v"], gate: Float[Array, "... v"]
    ) -> Float[Array, "... v"]:
        y = _normalize(x.astype(jnp.float32), self.eps) * self.weight[...].astype(jnp.float32)
        return (y * jax.nn.silu(gate.astype(jnp.float32))).astype(x.dtype)
