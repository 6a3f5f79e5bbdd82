"""Rotary position embeddings (rotate-half convention) with optional YaRN scaling.

`Rope` holds the inverse frequencies and the cos/sin multiplier of one attention layer.
Olmo 3 uses plain RoPE (theta 500000) on sliding-window layers and YaRN on full layers;
Olmo Hybrid's attention has no positions at all (NoPE, `rope_theta=None`).
cos and sin are computed in float32 from integer positions, so long contexts keep their
precision in bf16 models.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from hybrid_jax.models.config import YarnConfig
from hybrid_jax.typing import Array, Float, Positions


def _yarn_correction_dim(rotations: float, dim: int, base: float, max_pos: int) -> float:
    """Dimension index whose wavelength makes `rotations` turns over `max_pos` tokens."""
    return dim * math.log(max_pos / (rotations * 2 * math.pi)) / (2 * math.log(base))


def inverse_frequencies(head_dim: int, theta: float, yarn: YarnConfig | None) -> np.ndarray:
    """inv_freq [head_dim / 2] in float64 numpy (cast to fp32 by the caller).

    Plain RoPE: theta^(-2i/d). YaRN (arXiv 2309.00071; HF `_compute_yarn_parameters`):
    a linear ramp between the high-frequency dims kept as they are (extrapolation) and
    the low-frequency dims divided by `factor` (interpolation), the ramp running between
    the dims that turn beta_fast and beta_slow times over the original context.
    """
    exponents = np.arange(0, head_dim, 2, dtype=np.float64) / head_dim
    inv_freq = 1.0 / theta**exponents
    if yarn is None:
        return inv_freq
    low = _yarn_correction_dim(yarn.beta_fast, head_dim, theta, yarn.original_max_position)
    high = _yarn_correction_dim(yarn.beta_slow, head_dim, theta, yarn.original_max_position)
    if yarn.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, head_dim - 1)
    if low == high:
        high += 0.001  # avoid a zero-width ramp
    ramp = np.clip((np.arange(head_dim // 2, dtype=np.float64) - low) / (high - low), 0, 1)
    extrapolate = 1.0 - ramp  # 1 where the original frequency is kept
    return inv_freq / yarn.factor * (1.0 - extrapolate) + inv_freq * extrapolate


@dataclasses.dataclass(frozen=True)
class Rope:
    """RoPE of one layer: `inv_freq` [h/2] and `scale` applied to both cos and sin."""

    inv_freq: tuple[float, ...]
    scale: float = 1.0

    @classmethod
    def build(cls, head_dim: int, theta: float, yarn: YarnConfig | None = None) -> Rope:
        inv = inverse_frequencies(head_dim, theta, yarn)
        return cls(tuple(float(x) for x in inv), 1.0 if yarn is None else yarn.scale)

    def __call__(
        self, x: Float[Array, "b t n h"], positions: Positions
    ) -> Float[Array, "b t n h"]:
        """Rotate x by its positions: x cos + rotate_half(x) sin, rotate_half = [-x2, x1]."""
        inv_freq = jnp.asarray(self.inv_freq, jnp.float32)
        angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [b, t, h/2]
        angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]
        cos = jnp.cos(angles) * self.scale
        sin = jnp.sin(angles) * self.scale
        x32 = x.astype(jnp.float32)
        x1, x2 = jnp.split(x32, 2, axis=-1)
        rotated = jnp.concatenate([-x2, x1], axis=-1)
        return (x32 * cos + rotated * sin).astype(x.dtype)
