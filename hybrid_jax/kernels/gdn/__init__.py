"""Gated DeltaNet kernels: recurrent ground truth, chunked XLA form, Pallas kernels
(GPU Triton, TPU Mosaic), dispatcher."""

from hybrid_jax.kernels.gdn.chunked import gated_delta_rule_chunked
from hybrid_jax.kernels.gdn.dispatch import gated_delta_rule, resolve_gdn_impl
from hybrid_jax.kernels.gdn.pallas_gpu import gated_delta_rule_pallas_gpu
from hybrid_jax.kernels.gdn.pallas_tpu import gated_delta_rule_pallas_tpu
from hybrid_jax.kernels.gdn.reference import (
    gated_delta_rule_recurrent,
    gated_delta_rule_step,
)

__all__ = [
    "gated_delta_rule",
    "gated_delta_rule_chunked",
    "gated_delta_rule_pallas_gpu",
    "gated_delta_rule_pallas_tpu",
    "gated_delta_rule_recurrent",
    "gated_delta_rule_step",
    "resolve_gdn_impl",
]
