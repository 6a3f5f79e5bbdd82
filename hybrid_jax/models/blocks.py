"""Residual blocks: Olmo 3's post-norm attention block and Olmo Hybrid's pre-norm GDN block.

    AttentionBlock ("swa", "full"), norms inside the residual, no input norm
    (HF `Olmo2DecoderLayer`; OLMo-core `reordered_norm`):
        h = x + attn_norm(Attention(x))
        y = h + mlp_norm(MLP(h))

    GdnBlock ("gdn"), classic pre-norm (HF `OlmoHybridLinearAttentionDecoderLayer`):
        h = x + GatedDeltaNet(attn_norm(x))
        y = h + MLP(mlp_norm(h))
"""

from __future__ import annotations

from flax import nnx

from hybrid_jax.models.attention import Attention
from hybrid_jax.models.config import ModelConfig
from hybrid_jax.models.gated_deltanet import GatedDeltaNet
from hybrid_jax.models.mlp import SwiGLU
from hybrid_jax.models.norms import RMSNorm
from hybrid_jax.typing import Hidden, Positions, SegmentIds


def _norm(cfg: ModelConfig) -> RMSNorm:
    return RMSNorm(cfg.d_model, eps=cfg.norm_eps, axis="embed", param_dtype=cfg.weight_dtype)


class AttentionBlock(nnx.Module):
    """Post-norm block around sliding-window or full attention."""

    def __init__(self, cfg: ModelConfig, layer_type: str, *, rngs: nnx.Rngs) -> None:
        self.layer_type = layer_type
        self.attn = Attention(cfg, layer_type, rngs=rngs)
        self.attn_norm = _norm(cfg)  # post-attention
        self.mlp = SwiGLU(cfg, rngs=rngs)
        self.mlp_norm = _norm(cfg)  # post-feedforward

    def __call__(
        self, x: Hidden, *, positions: Positions, segment_ids: SegmentIds | None
    ) -> Hidden:
        h = x + self.attn_norm(self.attn(x, positions=positions, segment_ids=segment_ids))
        return h + self.mlp_norm(self.mlp(h))


class GdnBlock(nnx.Module):
    """Pre-norm block around a Gated DeltaNet layer."""

    layer_type = "gdn"

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs) -> None:
        self.attn_norm = _norm(cfg)  # pre-mixer ("input_layernorm")
        self.gdn = GatedDeltaNet(cfg, rngs=rngs)
        self.mlp_norm = _norm(cfg)  # pre-MLP ("post_attention_layernorm" in HF)
        self.mlp = SwiGLU(cfg, rngs=rngs)

    def __call__(
        self, x: Hidden, *, positions: Positions, segment_ids: SegmentIds | None
    ) -> Hidden:
        del positions  # GDN is position-free
        h = x + self.gdn(self.attn_norm(x), segment_ids=segment_ids)
        return h + self.mlp(self.mlp_norm(h))


def make_block(cfg: ModelConfig, layer_type: str, *, rngs: nnx.Rngs) -> nnx.Module:
    """The block for one entry of `cfg.layer_types`."""
    if layer_type == "gdn":
        return GdnBlock(cfg, rngs=rngs)
    if layer_type in ("swa", "full"):
        return AttentionBlock(cfg, layer_type, rngs=rngs)
    raise ValueError(f"unknown layer type {layer_type!r}")
