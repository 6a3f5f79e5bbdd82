"""Gated delta rule, one token at a time: the ground truth for every other GDN kernel.

Per head, with state h in R^{K x V} (fla layout; the paper's S is h^T), h_0 = 0:

    h   <- exp(g_t) * h                       decay (g_t <= 0)
    u_t  = beta_t * (v_t - h^T k_t)           delta-rule correction
    h   <- h + k_t u_t^T                      write
    o_t  = h^T (scale * q_t)                  read

This equals S_t = S_{t-1} alpha_t (I - beta_t k_t k_t^T) + beta_t v_t k_t^T of the
Gated DeltaNet paper (arXiv 2412.06464, Eq. 10) and fla's
`naive_recurrent_gated_delta_rule`. q and k arrive already L2-normalised (the layer does
that); `scale` defaults to K^-0.5 as in fla. Everything is computed in float32 and the
state stays float32; outputs take the dtype of `v`.

Packed documents: where `segment_ids` changes, the state is zeroed before the token is
processed, so no document sees another's state.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hybrid_jax.segments import document_starts
from hybrid_jax.typing import (
    Array,
    Float,
    GdnBeta,
    GdnGate,
    GdnQK,
    GdnState,
    GdnV,
    SegmentIds,
)

_HI = jax.lax.Precision.HIGHEST


def default_scale(key_dim: int, scale: float | None) -> float:
    """K^-0.5 unless the caller chose a scale (fla's `scale=None` convention)."""
    return key_dim**-0.5 if scale is None else float(scale)


def check_shapes(
    q: Array, k: Array, v: Array, g: Array, beta: Array, initial_state: Array | None
) -> None:
    """Raise a ValueError naming the argument whose shape disagrees with q."""
    if q.ndim != 4:
        raise ValueError(f"q must be [b, t, n, k], got shape {q.shape}")
    b, t, n, dk = q.shape
    if k.shape != q.shape:
        raise ValueError(f"k shape {k.shape} != q shape {q.shape}")
    if v.ndim != 4 or v.shape[:3] != (b, t, n):
        raise ValueError(f"v must be [b, t, n, v] = [{b}, {t}, {n}, v], got {v.shape}")
    for name, x in (("g", g), ("beta", beta)):
        if x.shape != (b, t, n):
            raise ValueError(f"{name} must be [b, t, n] = {(b, t, n)}, got {x.shape}")
    if initial_state is not None and initial_state.shape != (b, n, dk, v.shape[-1]):
        raise ValueError(
            f"initial_state must be [b, n, k, v] = {(b, n, dk, v.shape[-1])}, "
            f"got {initial_state.shape}"
        )


def gated_delta_rule_step(
    q_bnk: Float[Array, "b n k"],
    k_bnk: Float[Array, "b n k"],
    v_bnv: Float[Array, "b n v"],
    g_bn: Float[Array, "b n"],
    beta_bn: Float[Array, "b n"],
    state_bnkv: GdnState,
    *,
    scale: float | None = None,
) -> tuple[Float[Array, "b n v"], GdnState]:
    """One token of the gated delta rule (the decode path). Returns (o, new state)."""
    f32 = jnp.float32
    scale = default_scale(q_bnk.shape[-1], scale)
    q, k, v = (x.astype(f32) for x in (q_bnk, k_bnk, v_bnv))
    g, beta = g_bn.astype(f32), beta_bn.astype(f32)
    h = state_bnkv.astype(f32) * jnp.exp(g)[..., None, None]
    kh = jnp.einsum("bnk,bnkv->bnv", k, h, precision=_HI)
    u = beta[..., None] * (v - kh)
    h = h + k[..., :, None] * u[..., None, :]
    o = jnp.einsum("bnk,bnkv->bnv", q * scale, h, precision=_HI)
    return o.astype(v_bnv.dtype), h


def gated_delta_rule_recurrent(
    q: GdnQK,
    k: GdnQK,
    v: GdnV,
    g: GdnGate,
    beta: GdnBeta,
    *,
    scale: float | None = None,
    initial_state: GdnState | None = None,
    segment_ids: SegmentIds | None = None,
) -> tuple[GdnV, GdnState]:
    """The gated delta rule over a sequence by `lax.scan` over tokens.

    Args:
      q, k: [b, t, n, k], L2-normalised per head.
      v: [b, t, n, v].
      g: [b, t, n] log decay (<= 0); beta: [b, t, n] write strength.
      scale: query scale, K^-0.5 by default.
      initial_state: [b, n, k, v] state before token 0 (zeros if None).
      segment_ids: [b, t]; the state restarts from zero at every document start.

    Returns:
      o: [b, t, n, v] in v's dtype; final state [b, n, k, v] float32.
    """
    check_shapes(q, k, v, g, beta, initial_state)
    b, t, n, dk = q.shape
    dv = v.shape[-1]
    if initial_state is None:
        initial_state = jnp.zeros((b, n, dk, dv), jnp.float32)
    if segment_ids is None:
        starts = jnp.zeros((b, t), bool)
    else:
        starts = document_starts(segment_ids)

    def body(h, xs):
        q_t, k_t, v_t, g_t, beta_t, start_t = xs
        h = jnp.where(start_t[:, None, None, None], 0.0, h)
        o_t, h = gated_delta_rule_step(q_t, k_t, v_t, g_t, beta_t, h, scale=scale)
        return h, o_t

    time_major = tuple(jnp.moveaxis(x, 1, 0) for x in (q, k, v, g, beta, starts))
    state, o = jax.lax.scan(body, initial_state.astype(jnp.float32), time_major)
    return jnp.moveaxis(o, 0, 1), state
