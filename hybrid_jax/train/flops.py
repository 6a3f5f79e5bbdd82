"""Model FLOPs per token and model FLOPs utilisation (MFU).

Training FLOPs per token = 3 x forward (backward = 2 x forward), forward =
    2 x (matmul parameters: every projection and the LM head, not the embedding lookup)
  + attention: 2 x 2 x n x h x (mean keys a query sees) per layer (QK^T and PV)
  + Gated DeltaNet: 2 x [C (3K + 2V) + 3 K V] per token and head (chunked form, C = 64;
    reference/gated_deltanet.md section 3).
MFU divides achieved model FLOP/s by the chips' dense bf16 peak (no sparsity).
"""

from __future__ import annotations

import jax

from hybrid_jax.models.config import ModelConfig

# Dense bf16 peak FLOP/s per chip, from vendor pages (reference/performance_anchors.md).
PEAK_FLOPS = {
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
    "TPU v6e": 918e12,
}


def matmul_params(cfg: ModelConfig) -> int:
    """Parameters that take part in matmuls (all but the embedding table and norms)."""
    d, m = cfg.d_model, cfg.mlp_dim
    n, g, h = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    attn = d * n * h * 2 + d * g * h * 2
    gn, k, v = cfg.gdn_heads, cfg.gdn_key_dim, cfg.gdn_value_dim
    gdn = d * gn * (2 * k + 2 * v + 2) + gn * v * d
    mlp = 3 * d * m
    total = sum((gdn if lt == "gdn" else attn) + mlp for lt in cfg.layer_types)
    return total + d * cfg.vocab_size  # LM head (tied or not, it is a matmul)


def forward_flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Forward FLOPs per token of a full window of `seq_len` tokens."""
    flops = 2.0 * matmul_params(cfg)
    full_keys = (seq_len + 1) / 2
    for lt in cfg.layer_types:
        if lt == "gdn":
            c, k, v = cfg.gdn_chunk_size, cfg.gdn_key_dim, cfg.gdn_value_dim
            flops += cfg.gdn_heads * 2 * (c * (3 * k + 2 * v) + 3 * k * v)
        else:
            w = cfg.sliding_window if lt == "swa" else seq_len
            keys = full_keys if w >= seq_len else w - (w * w - w) / (2 * seq_len)
            flops += 4 * cfg.n_heads * cfg.head_dim * keys
    return flops


def training_flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    return 3.0 * forward_flops_per_token(cfg, seq_len)


def peak_flops_per_device(device: jax.Device | None = None) -> float | None:
    """The device's dense bf16 peak, or None if unknown (e.g. CPU: no MFU reported)."""
    device = device or jax.devices()[0]
    kind = getattr(device, "device_kind", "")
    for name, peak in PEAK_FLOPS.items():
        if name.lower() in kind.lower():
            return peak
    return None
