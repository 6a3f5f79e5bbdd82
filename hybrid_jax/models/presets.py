"""Presets: the study's three architectures at every size, and the two Olmo 7B releases.

The research models share one blueprint (Olmo 3's, as in the Olmo Hybrid study):
    transformer  Olmo 3 pattern: 3 sliding-window layers, then 1 full layer, repeated
    hybrid       the sliding-window layers replaced by Gated DeltaNet (GDN 3:1)
    recurrent    every layer Gated DeltaNet
Widths, depths and heads follow OLMo-core's `olmo3_{60M..1B}` ladder (d_model, layers,
heads; SwiGLU width = 256-multiple of 1.5 * 8/3 * d_model); GDN heads equal attention
heads with key dim 3/4 of the attention head dim and value dim twice the key dim, the
ratios of Olmo Hybrid 7B (128 -> 96 / 192). Parameter counts therefore differ by
architecture at one size, as in the study (OH Table 22).

`olmo3_7b` and `olmo_hybrid_7b` reproduce the released shapes exactly
(7,298,011,136 and 7,430,870,688 parameters).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hybrid_jax.models.config import ConfigError, ModelConfig, YarnConfig

ARCHITECTURES = ("transformer", "hybrid", "recurrent")
DOLMA2_VOCAB = 100_278  # allenai/dolma2-tokenizer
DOLMA2_VOCAB_PADDED = 100_352  # training vocab (multiple of 128)


@dataclasses.dataclass(frozen=True)
class Size:
    d_model: int
    n_layers: int
    n_heads: int
    mlp_dim: int
    sliding_window: int = 4096
    vocab_size: int = DOLMA2_VOCAB_PADDED


def _olmo_mlp_dim(d_model: int, multiplier: float = 1.5, multiple_of: int = 256) -> int:
    hidden = int(multiplier * int(8 * d_model / 3))
    return multiple_of * -(-hidden // multiple_of)


def _size(d_model: int, n_layers: int, n_heads: int) -> Size:
    return Size(d_model, n_layers, n_heads, _olmo_mlp_dim(d_model))


SIZES: dict[str, Size] = {
    # CPU size: a training step in well under a second; window small enough to matter.
    "tiny": Size(d_model=64, n_layers=4, n_heads=4, mlp_dim=192, sliding_window=32,
                 vocab_size=512),
    "60m": _size(384, 8, 8),
    "100m": _size(512, 12, 8),
    "190m": _size(768, 12, 12),
    "370m": _size(1024, 16, 16),
    "600m": _size(1280, 16, 16),
    "760m": _size(1536, 16, 16),
    "1b": _size(2048, 16, 16),
}


def layer_pattern(arch: str, n_layers: int) -> tuple[str, ...]:
    """Layer types of `arch`: every 4th layer (3, 7, ...) full attention, except recurrent."""
    if arch not in ARCHITECTURES:
        raise ConfigError(f"arch={arch!r} is not one of {ARCHITECTURES}")
    if arch == "recurrent":
        return ("gdn",) * n_layers
    local = "swa" if arch == "transformer" else "gdn"
    return tuple("full" if i % 4 == 3 else local for i in range(n_layers))


def research_model(arch: str, size: str, **overrides: Any) -> ModelConfig:
    """`arch` in transformer | hybrid | recurrent at `size` in tiny | 60m | ... | 1b."""
    if size not in SIZES:
        raise ConfigError(f"size={size!r} is not one of {tuple(SIZES)}")
    s = SIZES[size]
    head_dim = s.d_model // s.n_heads
    gdn_key_dim = max(1, (3 * head_dim) // 4)
    fields: dict[str, Any] = dict(
        vocab_size=s.vocab_size,
        d_model=s.d_model,
        layer_types=layer_pattern(arch, s.n_layers),
        n_heads=s.n_heads,
        n_kv_heads=s.n_heads,
        head_dim=head_dim,
        mlp_dim=s.mlp_dim,
        sliding_window=s.sliding_window,
        rope_theta=500_000.0,
        gdn_heads=s.n_heads,
        gdn_key_dim=gdn_key_dim,
        gdn_value_dim=2 * gdn_key_dim,
    )
    fields.update(overrides)
    return ModelConfig(**fields)


OLMO3_YARN = YarnConfig(
    factor=8.0,
    original_max_position=8192,
    beta_fast=32.0,
    beta_slow=1.0,
    attention_factor=1.2079441541679836,
)


def olmo3_7b(**overrides: Any) -> ModelConfig:
    """allenai/Olmo-3-1025-7B: 32 layers (S,S,S,F)x8, SWA 4096, YaRN on full layers."""
    fields: dict[str, Any] = dict(
        vocab_size=DOLMA2_VOCAB,
        d_model=4096,
        layer_types=layer_pattern("transformer", 32),
        n_heads=32,
        n_kv_heads=32,
        head_dim=128,
        mlp_dim=11008,
        norm_eps=1e-6,
        sliding_window=4096,
        rope_theta=500_000.0,
        yarn=OLMO3_YARN,
    )
    fields.update(overrides)
    return ModelConfig(**fields)


def olmo_hybrid_7b(**overrides: Any) -> ModelConfig:
    """allenai/Olmo-Hybrid-7B: 24 GDN + 8 full NoPE attention layers (G,G,G,F)x8."""
    fields: dict[str, Any] = dict(
        vocab_size=DOLMA2_VOCAB_PADDED,
        d_model=3840,
        layer_types=layer_pattern("hybrid", 32),
        n_heads=30,
        n_kv_heads=30,
        head_dim=128,
        mlp_dim=11008,
        norm_eps=1e-6,
        rope_theta=None,
        gdn_heads=30,
        gdn_key_dim=96,
        gdn_value_dim=192,
        gdn_conv_size=4,
        gdn_allow_neg_eigval=True,
        gdn_norm_eps=1e-5,
    )
    fields.update(overrides)
    return ModelConfig(**fields)


RELEASES = {"olmo3_7b": olmo3_7b, "olmo_hybrid_7b": olmo_hybrid_7b}


def get_model_config(name: str, **overrides: Any) -> ModelConfig:
    """A preset by name: 'olmo3_7b', 'olmo_hybrid_7b', or '<arch>_<size>' (e.g. hybrid_60m)."""
    if name in RELEASES:
        return RELEASES[name](**overrides)
    arch, _, size = name.rpartition("_")
    if arch in ARCHITECTURES and size in SIZES:
        return research_model(arch, size, **overrides)
    known = list(RELEASES) + [f"{a}_{s}" for a in ARCHITECTURES for s in SIZES]
    raise ConfigError(f"unknown model preset {name!r}; known: {', '.join(known)}")
