"""Gated DeltaNet kernels: recurrent ground truth, chunked XLA form, dispatcher."""

from hybrid_jax.kernels.gdn.chunked import gated_delta_rule_chunked
from hybrid_jax.kernels.gdn.dispatch import gated_delta_rule, resolve_gdn_impl
from hybrid_jax.kernels.gdn.reference import (
    gated_delta_rule_recurrent,
    gated_delta_rule_step,
)

__all__ = [
    "gated_delta_rule",
    "gated_delta_rule_chunked",
    "gated_delta_rule_recurrent",
    "gated_delta_rule_step",
    "resolve_gdn_impl",
]
