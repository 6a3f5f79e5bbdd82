"""Parameter creation with logical axis names on every array.

Model code names axes logically; `hybrid_jax.sharding` maps them onto mesh axes with
one rules table. Parameters are created unsharded here (`eager_sharding=False`), so a
model can be built anywhere; sharded creation jits the constructor with the shardings
these names resolve to, and nothing is ever materialised unsharded on a mesh.

Logical axes:
    vocab     vocabulary rows of embeddings and the LM head
    embed     model width d
    heads     query heads x head dim (attention), GDN heads x key/value dim
    kv_heads  key/value heads x head dim of grouped-query attention
    mlp       SwiGLU hidden width
    None      small or odd-sized axes that stay replicated (conv taps, per-head scalars)
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from hybrid_jax.models.config import ModelConfig

Axes = tuple[str | None, ...]


def param(value: jax.Array, axes: Sequence[str | None]) -> nnx.Param:
    """An `nnx.Param` holding `value` with logical axis names `axes` (one per dim)."""
    axes = tuple(axes)
    if len(axes) != value.ndim:
        raise ValueError(f"{len(axes)} axis names {axes} for a {value.ndim}-d parameter")
    return nnx.Param(value, out_sharding=axes, eager_sharding=False)


def normal_init(std: float) -> nnx.Initializer:
    """Truncated normal at +-3 std, the OLMo-core "normal" init."""
    return nnx.initializers.truncated_normal(stddev=std, lower=-3.0, upper=3.0)


def dense(
    in_features: int,
    out_features: int,
    axes: Sequence[str | None],
    cfg: ModelConfig,
    *,
    rngs: nnx.Rngs,
    std: float | None = None,
) -> nnx.Linear:
    """A bias-free `nnx.Linear` (kernel [in, out]) computing in `cfg.dtype`."""
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=False,
        dtype=cfg.compute_dtype,
        param_dtype=cfg.weight_dtype,
        kernel_init=normal_init(cfg.init_std if std is None else std),
        kernel_metadata={"out_sharding": tuple(axes), "eager_sharding": False},
        rngs=rngs,
    )
