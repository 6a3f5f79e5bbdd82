"""Attention kernels: masked plain-jnp reference and the implementation dispatcher."""

from hybrid_jax.kernels.attention.dispatch import (
    dot_product_attention,
    resolve_attention_impl,
)
from hybrid_jax.kernels.attention.reference import attention_mask, attention_reference

__all__ = [
    "attention_mask",
    "attention_reference",
    "dot_product_attention",
    "resolve_attention_impl",
]
