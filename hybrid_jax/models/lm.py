"""`LM`: one decoder-only language model class for every architecture.

    tokens -> embed -> blocks (one per `cfg.layer_types` entry) -> final RMSNorm -> lm_head

Inputs may be packed windows: `segment_ids` keep documents apart in every layer and
positions restart at each document (derived from the segment ids unless given).
Logits come out in float32 (the head accumulates in fp32 whatever the compute dtype).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hybrid_jax.models.blocks import make_block
from hybrid_jax.models.config import ModelConfig
from hybrid_jax.models.norms import RMSNorm
from hybrid_jax.models.params import normal_init, param
from hybrid_jax.segments import positions_from_segments
from hybrid_jax.typing import Hidden, Logits, Positions, SegmentIds, Tokens


class LM(nnx.Module):
    """Decoder-only LM built from `cfg.layer_types` ("swa", "full", "gdn")."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs) -> None:
        self.cfg = cfg
        embed = normal_init(cfg.init_std)(rngs.params(), (cfg.vocab_size, cfg.d_model),
                                          cfg.weight_dtype)
        self.embed = param(embed, ("vocab", "embed"))
        self.layers = nnx.List([make_block(cfg, lt, rngs=rngs) for lt in cfg.layer_types])
        self.final_norm = RMSNorm(
            cfg.d_model, eps=cfg.norm_eps, axis="embed", param_dtype=cfg.weight_dtype
        )
        if cfg.tie_embeddings:
            self.lm_head = None
        else:
            head = normal_init(cfg.init_std)(rngs.params(), (cfg.d_model, cfg.vocab_size),
                                             cfg.weight_dtype)
            self.lm_head = param(head, ("embed", "vocab"))

    def __call__(
        self,
        tokens: Tokens,
        *,
        segment_ids: SegmentIds | None = None,
        positions: Positions | None = None,
    ) -> Logits:
        """Next-token logits [b, t, vocab] float32 for every position."""
        return self.logits(self.hidden_states(tokens, segment_ids=segment_ids,
                                              positions=positions))

    def hidden_states(
        self,
        tokens: Tokens,
        *,
        segment_ids: SegmentIds | None = None,
        positions: Positions | None = None,
    ) -> Hidden:
        """Final-normed hidden states [b, t, d] in the compute dtype."""
        check_tokens(tokens, self.cfg.vocab_size)
        if positions is None:
            if segment_ids is None:
                positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
            else:
                positions = positions_from_segments(segment_ids)
        x = jnp.take(self.embed[...], tokens, axis=0).astype(self.cfg.compute_dtype)

        def apply(block: nnx.Module, x: Hidden) -> Hidden:
            return block(x, positions=positions, segment_ids=segment_ids)

        if self.cfg.remat:
            apply = nnx.remat(apply)
        for block in self.layers:
            x = apply(block, x)
        return self.final_norm(x)

    def output_weights(self) -> jax.Array:
        """The [d, vocab] output projection (the transposed embedding when tied)."""
        return self.embed[...].T if self.lm_head is None else self.lm_head[...]

    def logits(self, h_btd: Hidden) -> Logits:
        """Project hidden states to the vocabulary, accumulating in float32."""
        return jnp.einsum(
            "btd,dv->btv",
            h_btd,
            self.output_weights().astype(h_btd.dtype),
            preferred_element_type=jnp.float32,
        )


def check_tokens(tokens: Tokens, vocab_size: int) -> None:
    """Raise a ValueError if tokens are not [b, t] integers in [0, vocab_size).

    Values are checked only when concrete (eager calls, host-side data); inside `jit`
    the shape and dtype are still checked.
    """
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [batch, seq], got shape {tokens.shape}")
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise ValueError(f"tokens must be integers, got dtype {tokens.dtype}")
    if isinstance(tokens, jax.core.Tracer):
        return
    arr = np.asarray(tokens)
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        raise ValueError(
            f"token ids must lie in [0, vocab_size={vocab_size}); got min {arr.min()}, "
            f"max {arr.max()} (is the tokenizer's vocabulary larger than the model's?)"
        )


def count_params(model: nnx.Module) -> int:
    """Number of parameter scalars (works on abstract models from `nnx.eval_shape`)."""
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    return int(sum(np.prod(x.shape) for x in leaves))


def abstract_lm(cfg: ModelConfig) -> LM:
    """The model's structure with shapes only: no memory, no compute (for 7B counts)."""
    return nnx.eval_shape(lambda: LM(cfg, rngs=nnx.Rngs(0)))
