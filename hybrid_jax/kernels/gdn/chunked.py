"""Gated delta rule in chunked UT/WY form: plain JAX, parallel inside chunks of 64.

Same contract as `reference.gated_delta_rule_recurrent`; fast enough to train with on
CPU and under XLA on GPU/TPU. Per chunk of C tokens (positions i, j in 0..C-1), with
gamma = cumsum(g) inside the chunk and Gamma_ij = exp(gamma_i - gamma_j) for j <= i:

    M  = strict_lower((beta * K) K^T * Gamma)          C x C
    U  = (I + M)^-1 (beta * V)                         C x V    (WY "u")
    W  = (I + M)^-1 (beta * exp(gamma) * K)            C x K    (WY "w")

and across chunks, carrying the fp32 state S (K x V):

    V' = U - W S
    O  = (Q * exp(gamma)) S + (Q K^T * Gamma) V'       (Gamma including the diagonal)
    S <- exp(gamma_last) S + (K * exp(gamma_last - gamma))^T V'

(fla `naive_chunk_gated_delta_rule`; HF `torch_chunk_gated_delta_rule`.)

Packed documents enter as a mask on every decay product: a product of decays over a
span that crosses a document start is zero. With d = document index per token,
Gamma_ij keeps [d_i == d_j], the incoming state reaches token i only if
d_i == d(before the chunk), and token j reaches the outgoing state only if
d_j == d_last. This is exactly the recurrence with the state zeroed at each start.

Numerics (reference/gated_deltanet.md section 4): gamma is an fp32 cumsum; every
gate difference is masked *before* `exp`, so no exponent is ever positive and nothing
overflows; the (I + M) system is solved by triangular substitution (no series inverse);
the state is fp32. Inputs of any float dtype are computed in fp32; outputs take v's dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hybrid_jax.kernels.gdn.reference import check_shapes, default_scale
from hybrid_jax.segments import document_index
from hybrid_jax.typing import GdnBeta, GdnGate, GdnQK, GdnState, GdnV, SegmentIds

_HI = jax.lax.Precision.HIGHEST


def _to_chunks(x: jax.Array, num_chunks: int, chunk: int) -> jax.Array:
    """[b, t, n, ...] (t = num_chunks * chunk) -> [b, n, l, c, ...]."""
    b, _, n = x.shape[:3]
    x = x.reshape(b, num_chunks, chunk, n, *x.shape[3:])
    return jnp.moveaxis(x, 3, 1)


def gated_delta_rule_chunked(
    q: GdnQK,
    k: GdnQK,
    v: GdnV,
    g: GdnGate,
    beta: GdnBeta,
    *,
    scale: float | None = None,
    initial_state: GdnState | None = None,
    segment_ids: SegmentIds | None = None,
    chunk_size: int = 64,
) -> tuple[GdnV, GdnState]:
    """Chunked gated delta rule. Arguments and returns as the recurrent reference."""
    check_shapes(q, k, v, g, beta, initial_state)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    f32 = jnp.float32
    b, t, n, dk = q.shape
    dv = v.shape[-1]
    out_dtype = v.dtype
    c = chunk_size
    num_chunks = -(-t // c)
    pad = num_chunks * c - t

    scale = default_scale(dk, scale)
    # float32 inputs: every product exact in float32. bf16 / fp16 inputs: the q k^T and
    # k k^T products take the inputs as they are (exact products, float32 sums) and the
    # products with the float32 state run at the backend's default matmul precision
    # (fla keeps its per-chunk states in the input dtype too); the triangular solve and
    # the state itself stay float32.
    exact = q.dtype == f32
    hi = _HI if exact else None
    low = f32 if exact else q.dtype
    q32 = q.astype(f32)
    k32, v32 = k.astype(f32), v.astype(f32)
    g32, beta32 = g.astype(f32), beta.astype(f32)
    if segment_ids is None:
        doc = jnp.zeros((b, t), jnp.int32)
    else:
        doc = document_index(segment_ids)

    # Zero padding at the tail (k = 0, beta = 0, g = 0) leaves the state unchanged.
    def pad_t(x: jax.Array) -> jax.Array:
        return jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))

    q32, k32, v32, g32, beta32 = (pad_t(x) for x in (q32, k32, v32, g32, beta32))
    doc = jnp.pad(doc, ((0, 0), (0, pad)), mode="edge")

    # [b, n, l, c, ...] layout; doc is shared by all heads: [b, 1, l, c].
    qc, kc, vc = (_to_chunks(x, num_chunks, c) for x in (q32, k32, v32))
    gc, betac = (_to_chunks(x, num_chunks, c) for x in (g32, beta32))
    docc = doc.reshape(b, 1, num_chunks, c)
    # Document index of the token just before each chunk (chunk 0: token 0's, i.e. 0).
    doc_prev = jnp.concatenate([docc[:, :, :1, 0], docc[:, :, :-1, -1]], axis=2)
    doc_last = docc[..., -1]

    gamma = jnp.cumsum(gc, axis=-1)  # [b, n, l, c], fp32
    gamma_last = gamma[..., -1]

    idx = jnp.arange(c)
    causal = idx[:, None] >= idx[None, :]
    strict = idx[:, None] > idx[None, :]
    same_doc = docc[..., :, None] == docc[..., None, :]  # [b, 1, l, c, c]
    keep = causal & same_doc
    # Mask before exp: only j <= i in one document ever reaches exp, so exponents <= 0.
    diff = gamma[..., :, None] - gamma[..., None, :]
    decay_ij = jnp.where(keep, jnp.exp(jnp.where(keep, diff, 0.0)), 0.0)

    alive = (docc == doc_prev[..., None]).astype(f32)  # state from before the chunk
    decay_in = jnp.exp(gamma) * alive  # [b, n, l, c]
    reaches_out = (docc == doc_last[..., None]).astype(f32)
    decay_out = jnp.exp(gamma_last[..., None] - gamma) * reaches_out  # [b, n, l, c]
    decay_chunk = jnp.exp(gamma_last) * (doc_last == doc_prev).astype(f32)  # [b, n, l]

    k_low = kc.astype(low)  # exact: k came in as `low`
    kk = jnp.einsum("bnlik,bnljk->bnlij", k_low, k_low, precision=hi,
                    preferred_element_type=f32)
    m = jnp.where(strict, betac[..., :, None] * kk * decay_ij, 0.0)
    rhs = jnp.concatenate([betac[..., None] * vc, (betac * decay_in)[..., None] * kc], -1)
    # (I + M) X = rhs by forward substitution; the unit diagonal is implied.
    x = jax.lax.linalg.triangular_solve(
        m, rhs, left_side=True, lower=True, unit_diagonal=True
    )
    u, w = x[..., :dv], x[..., dv:]
    q_low = qc.astype(low)  # exact: q came in as `low`
    qk = jnp.einsum("bnlik,bnljk->bnlij", q_low, k_low, precision=hi,
                    preferred_element_type=f32) * (scale * decay_ij)
    q_in = qc * (scale * decay_in)[..., None]
    k_out = kc * decay_out[..., None]

    def step(state, xs):
        u_l, w_l, qk_l, q_in_l, k_out_l, decay_l = xs
        v_new = u_l - jnp.einsum("bnck,bnkv->bncv", w_l, state, precision=hi)
        o_l = jnp.einsum("bnck,bnkv->bncv", q_in_l, state, precision=hi)
        o_l = o_l + jnp.einsum("bnij,bnjv->bniv", qk_l, v_new, precision=hi)
        state = decay_l[..., None, None] * state + jnp.einsum(
            "bnck,bncv->bnkv", k_out_l, v_new, precision=hi
        )
        return state, o_l

    if initial_state is None:
        state0 = jnp.zeros((b, n, dk, dv), f32)
    else:
        state0 = initial_state.astype(f32)
    chunk_major = tuple(
        jnp.moveaxis(x, 2, 0) for x in (u, w, qk, q_in, k_out, decay_chunk)
    )
    state, o = jax.lax.scan(step, state0, chunk_major)  # o: [l, b, n, c, v]
    o = jnp.transpose(o, (1, 0, 3, 2, 4)).reshape(b, num_chunks * c, n, dv)
    return o[:, :t].astype(out_dtype), state
