"""Loading a parameter checkpoint (trained here or converted from HF) for scoring."""

from __future__ import annotations

import os

from flax import nnx
from jax.sharding import Mesh

from hybrid_jax.convert.checkpoint import load_checkpoint_config, restore_state
from hybrid_jax.models.config import ModelConfig
from hybrid_jax.models.lm import abstract_lm
from hybrid_jax.sharding import DEFAULT_RULES, Rules, param_sharding_fn


def load_for_scoring(
    checkpoint: str | os.PathLike,
    *,
    mesh: Mesh,
    dtype: str | None = None,
    rules: Rules = DEFAULT_RULES,
) -> tuple[ModelConfig, nnx.GraphDef, nnx.State]:
    """(config, graphdef, params) with every parameter read straight into its shard.

    `dtype` overrides the compute and parameter dtype (e.g. bfloat16 scoring of an fp32
    checkpoint); A_log / dt_bias stay float32.
    """
    cfg = load_checkpoint_config(checkpoint)
    if dtype is not None:
        cfg = cfg.replace(dtype=dtype, param_dtype=dtype)
    params = restore_state(checkpoint, cfg, sharding=param_sharding_fn(mesh, rules))
    graphdef, _ = nnx.split(abstract_lm(cfg), nnx.Param)
    return cfg, graphdef, params
