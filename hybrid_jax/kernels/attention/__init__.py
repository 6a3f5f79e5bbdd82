"""Attention kernels: masked plain-jnp reference, Pallas flash attention for GPUs, splash
attention for TPUs, and the implementation dispatcher."""

from hybrid_jax.kernels.attention.dispatch import (
    dot_product_attention,
    resolve_attention_impl,
)
from hybrid_jax.kernels.attention.pallas_gpu import flash_attention
from hybrid_jax.kernels.attention.reference import attention_mask, attention_reference
from hybrid_jax.kernels.attention.splash import splash_attention

__all__ = [
    "attention_mask",
    "attention_reference",
    "dot_product_attention",
    "flash_attention",
    "resolve_attention_impl",
    "splash_attention",
]
