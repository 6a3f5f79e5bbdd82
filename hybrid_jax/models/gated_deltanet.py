"""Gated DeltaNet layer exactly as in Olmo Hybrid (HF `OlmoHybridGatedDeltaNet`).

    q, k, v = x Wq, x Wk, x Wv                     [n*k], [n*k], [n*v]
    q, k, v = silu(conv_q(q)), silu(conv_k(k)), silu(conv_v(v))   separate width-4 convs
    q, k    = L2-normalise per head (eps 1e-6);     the kernel scales q by k^-0.5
    beta    = sigmoid(x Wb)   (x2 with negative eigenvalues: beta in (0, 2))
    g       = -exp(A_log) * softplus(x Wa + dt_bias)          float32, g <= 0
    o       = gated_delta_rule(q, k, v, g, beta)  per head
    o       = RMSNorm_eps=1e-5(o) * o_norm.weight * silu(x Wg)   per head
    y       = flatten(o) Wo

The gates are computed from the un-convolved x. A_log and dt_bias are kept in float32
whatever `param_dtype` is (the release stores them in bf16; they are upcast on load).
Documents packed in one window are independent: the convs and the recurrence restart at
each document start. `decode` / `prefill` carry a `GdnCache` for token-by-token use.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from hybrid_jax.kernels.gdn import gated_delta_rule, gated_delta_rule_step
from hybrid_jax.models.config import ModelConfig
from hybrid_jax.models.norms import GatedRMSNorm
from hybrid_jax.models.params import dense, param
from hybrid_jax.models.short_conv import ShortConv
from hybrid_jax.segments import document_index
from hybrid_jax.typing import Array, Float, GdnState, Hidden, SegmentIds


class GdnCache(NamedTuple):
    """What a GDN layer carries between decode steps."""

    conv_q: Float[Array, "b w e"]  # last width-1 pre-conv inputs of q, k, v
    conv_k: Float[Array, "b w e"]
    conv_v: Float[Array, "b w e"]
    state: GdnState  # float32 [b, n, k, v]


def l2_normalize(x: Float[Array, "... k"], eps: float = 1e-6) -> Float[Array, "... k"]:
    """x / sqrt(sum(x^2) + eps) in float32 (HF `l2norm`, fla `use_qk_l2norm_in_kernel`)."""
    x32 = x.astype(jnp.float32)
    return x32 * jax.lax.rsqrt(jnp.sum(jnp.square(x32), axis=-1, keepdims=True) + eps)


def _init_a_log(key: jax.Array, n: int) -> jax.Array:
    # A ~ U(0, 16) as in fla / HF; the floor keeps log finite.
    a = jax.random.uniform(key, (n,), jnp.float32, 0.0, 16.0)
    return jnp.log(jnp.maximum(a, 1e-4))


def _init_dt_bias(key: jax.Array, n: int) -> jax.Array:
    # dt log-uniform in [1e-3, 1e-1], floored at 1e-4; dt_bias = softplus^-1(dt).
    u = jax.random.uniform(key, (n,), jnp.float32)
    dt = jnp.exp(u * (math.log(1e-1) - math.log(1e-3)) + math.log(1e-3))
    dt = jnp.maximum(dt, 1e-4)
    return dt + jnp.log(-jnp.expm1(-dt))


class GatedDeltaNet(nnx.Module):
    """Token mixer of a "gdn" layer: [b, t, d] -> [b, t, d]."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs) -> None:
        d = cfg.d_model
        n, dk, dv = cfg.gdn_heads, cfg.gdn_key_dim, cfg.gdn_value_dim
        self.n_heads, self.key_dim, self.value_dim = n, dk, dv
        self.allow_neg_eigval = cfg.gdn_allow_neg_eigval
        self.chunk_size = cfg.gdn_chunk_size
        self.pieces = cfg.gdn_pieces
        self.impl = cfg.gdn_impl
        self.q_proj = dense(d, n * dk, ("embed", "heads"), cfg, rngs=rngs)
        self.k_proj = dense(d, n * dk, ("embed", "heads"), cfg, rngs=rngs)
        self.v_proj = dense(d, n * dv, ("embed", "heads"), cfg, rngs=rngs)
        self.g_proj = dense(d, n * dv, ("embed", "heads"), cfg, rngs=rngs)  # output gate
        self.a_proj = dense(d, n, ("embed", None), cfg, rngs=rngs)  # decay input
        self.b_proj = dense(d, n, ("embed", None), cfg, rngs=rngs)  # beta input
        conv = dict(width=cfg.gdn_conv_size, rngs=rngs, param_dtype=cfg.weight_dtype)
        self.q_conv = ShortConv(n * dk, **conv)
        self.k_conv = ShortConv(n * dk, **conv)
        self.v_conv = ShortConv(n * dv, **conv)
        self.A_log = param(_init_a_log(rngs.params(), n), (None,))
        self.dt_bias = param(_init_dt_bias(rngs.params(), n), (None,))
        self.o_norm = GatedRMSNorm(dv, eps=cfg.gdn_norm_eps, param_dtype=cfg.weight_dtype)
        self.o_proj = dense(n * dv, d, ("heads", "embed"), cfg, rngs=rngs)

    # ------------------------------------------------------------------ public API
    def __call__(self, x_btd: Hidden, *, segment_ids: SegmentIds | None = None) -> Hidden:
        y, _ = self.prefill(x_btd, segment_ids=segment_ids)
        return y

    def init_cache(self, batch: int, dtype: jnp.dtype = jnp.float32) -> GdnCache:
        """An empty cache: nothing seen yet."""
        w = self.q_conv.width - 1
        n, dk, dv = self.n_heads, self.key_dim, self.value_dim
        return GdnCache(
            conv_q=jnp.zeros((batch, w, n * dk), dtype),
            conv_k=jnp.zeros((batch, w, n * dk), dtype),
            conv_v=jnp.zeros((batch, w, n * dv), dtype),
            state=jnp.zeros((batch, n, dk, dv), jnp.float32),
        )

    def prefill(
        self,
        x_btd: Hidden,
        *,
        segment_ids: SegmentIds | None = None,
        cache: GdnCache | None = None,
    ) -> tuple[Hidden, GdnCache]:
        """Process a whole sequence, optionally continuing `cache`; return the new cache.

        The cache at the end belongs to the window's last document.
        """
        b, t, _ = x_btd.shape
        doc = None if segment_ids is None else document_index(segment_ids)
        cq, ck, cv = (None, None, None) if cache is None else cache[:3]
        q, new_cq = self.q_conv(self.q_proj(x_btd), doc_bt=doc, cache_bwe=cq)
        k, new_ck = self.k_conv(self.k_proj(x_btd), doc_bt=doc, cache_bwe=ck)
        v, new_cv = self.v_conv(self.v_proj(x_btd), doc_bt=doc, cache_bwe=cv)
        q, k, v, g, beta = self._heads_and_gates(x_btd, q, k, v)
        o, state = gated_delta_rule(
            q,
            k,
            v,
            g,
            beta,
            initial_state=None if cache is None else cache.state,
            segment_ids=segment_ids,
            chunk_size=self.chunk_size,
            impl=self.impl,
            pieces=self.pieces,
        )
        return self._output(x_btd, o), GdnCache(new_cq, new_ck, new_cv, state)

    def decode(self, x_b1d: Hidden, cache: GdnCache) -> tuple[Hidden, GdnCache]:
        """One token per row ([b, 1, d]) continuing `cache`, by the recurrent step."""
        if x_b1d.shape[1] != 1:
            raise ValueError(f"decode takes one token per row, got shape {x_b1d.shape}")
        q, new_cq = self.q_conv(self.q_proj(x_b1d), cache_bwe=cache.conv_q)
        k, new_ck = self.k_conv(self.k_proj(x_b1d), cache_bwe=cache.conv_k)
        v, new_cv = self.v_conv(self.v_proj(x_b1d), cache_bwe=cache.conv_v)
        q, k, v, g, beta = self._heads_and_gates(x_b1d, q, k, v)
        o, state = gated_delta_rule_step(
            q[:, 0], k[:, 0], v[:, 0], g[:, 0], beta[:, 0], cache.state
        )
        return self._output(x_b1d, o[:, None]), GdnCache(new_cq, new_ck, new_cv, state)

    # ------------------------------------------------------------------ pieces
    def _heads_and_gates(self, x_btd: Hidden, q: Array, k: Array, v: Array):
        b, t, _ = x_btd.shape
        n = self.n_heads
        v = v.reshape(b, t, n, self.value_dim)
        # Normalised in float32, then back to the compute dtype (as fla's in-kernel
        # l2norm does): float32 q / k beside bf16 v would run the kernels in float32.
        q = l2_normalize(q.reshape(b, t, n, self.key_dim)).astype(v.dtype)
        k = l2_normalize(k.reshape(b, t, n, self.key_dim)).astype(v.dtype)
        beta = jax.nn.sigmoid(self.b_proj(x_btd).astype(jnp.float32))
        if self.allow_neg_eigval:
            beta = 2.0 * beta
        a = self.a_proj(x_btd).astype(jnp.float32)
        a_log = self.A_log[...].astype(jnp.float32)
        dt_bias = self.dt_bias[...].astype(jnp.float32)
        g = -jnp.exp(a_log) * jax.nn.softplus(a + dt_bias)
        return q, k, v, g, beta

    def _output(self, x_btd: Hidden, o_btnv: Array) -> Hidden:
        b, t, _ = x_btd.shape
        gate = self.g_proj(x_btd).reshape(b, t, self.n_heads, self.value_dim)
        o = self.o_norm(o_btnv.astype(x_btd.dtype), gate)
        return self.o_proj(o.reshape(b, t, self.n_heads * self.value_dim))
