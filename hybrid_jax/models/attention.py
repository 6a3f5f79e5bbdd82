"""Softmax attention layer of Olmo 3 / Olmo Hybrid: GQA, QK-norm, RoPE/YaRN/NoPE, windows.

    q = RMSNorm_q(x Wq)  over the full n*h width (not per head), then heads, then RoPE
    k = RMSNorm_k(x Wk)  over the full g*h width
    v = x Wv
    o = softmax(q k^T / sqrt(h) + mask) v, heads flattened, then Wo

"swa" layers see a window of `sliding_window` keys (the query included) with plain RoPE;
"full" layers see every earlier key, with YaRN when the config has it. `rope_theta=None`
gives NoPE (Olmo Hybrid). Documents packed in one window never attend to each other.
"""

from __future__ import annotations

from flax import nnx

from hybrid_jax.kernels.attention import dot_product_attention
from hybrid_jax.models.config import ModelConfig
from hybrid_jax.models.norms import RMSNorm
from hybrid_jax.models.params import dense
from hybrid_jax.models.rope import Rope
from hybrid_jax.typing import Hidden, Positions, SegmentIds


class Attention(nnx.Module):
    """Multi-head / grouped-query self-attention for layer type "swa" or "full"."""

    def __init__(self, cfg: ModelConfig, layer_type: str, *, rngs: nnx.Rngs) -> None:
        if layer_type not in ("swa", "full"):
            raise ValueError(f"Attention layer_type must be 'swa' or 'full', got {layer_type!r}")
        d, n, g, h = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.n_heads, self.n_kv_heads, self.head_dim = n, g, h
        self.window = cfg.sliding_window if layer_type == "swa" else None
        self.impl = cfg.attention_impl
        if cfg.rope_theta is None:
            self.rope = None
        else:
            yarn = cfg.yarn if layer_type == "full" else None
            self.rope = Rope.build(h, cfg.rope_theta, yarn)
        self.q_proj = dense(d, n * h, ("embed", "heads"), cfg, rngs=rngs)
        self.k_proj = dense(d, g * h, ("embed", "kv_heads"), cfg, rngs=rngs)
        self.v_proj = dense(d, g * h, ("embed", "kv_heads"), cfg, rngs=rngs)
        self.o_proj = dense(n * h, d, ("heads", "embed"), cfg, rngs=rngs)
        if cfg.qk_norm:
            kw = dict(eps=cfg.norm_eps, param_dtype=cfg.weight_dtype)
            self.q_norm = RMSNorm(n * h, axis="heads", **kw)
            self.k_norm = RMSNorm(g * h, axis="kv_heads", **kw)
        else:
            self.q_norm = self.k_norm = None

    def __call__(
        self,
        x_btd: Hidden,
        *,
        positions: Positions,
        segment_ids: SegmentIds | None = None,
    ) -> Hidden:
        b, t, _ = x_btd.shape
        q, k, v = self.q_proj(x_btd), self.k_proj(x_btd), self.v_proj(x_btd)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q_btnh = q.reshape(b, t, self.n_heads, self.head_dim)
        k_btgh = k.reshape(b, t, self.n_kv_heads, self.head_dim)
        v_btgh = v.reshape(b, t, self.n_kv_heads, self.head_dim)
        if self.rope is not None:
            q_btnh, k_btgh = self.rope(q_btnh, positions), self.rope(k_btgh, positions)
        o_btnh = dot_product_attention(
            q_btnh,
            k_btgh,
            v_btgh,
            causal=True,
            window=self.window,
            segment_ids=segment_ids,
            impl=self.impl,
        )
        return self.o_proj(o_btnh.reshape(b, t, self.n_heads * self.head_dim))
