"""SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

from __future__ import annotations

import jax
from flax import nnx

from hybrid_jax.models.config import ModelConfig
from hybrid_jax.models.params import dense
from hybrid_jax.typing import Hidden


class SwiGLU(nnx.Module):
    """gate, up: [d, m]; down: [m, d]; no biases (Olmo 3 / Olmo Hybrid)."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs) -> None:
        d, m = cfg.d_model, cfg.mlp_dim
        self.gate_proj = dense(d, m, ("embed", "mlp"), cfg, rngs=rngs)
        self.up_proj = dense(d, m, ("embed", "mlp"), cfg, rngs=rngs)
        self.down_proj = dense(m, d, ("mlp", "embed"), cfg, rngs=rngs)

    def __call__(self, x_btd: Hidden) -> Hidden:
        return self.down_proj(jax.nn.silu(self.gate_proj(x_btd)) * self.up_proj(x_btd))
