"""Intra-sequence parallelism for the gated delta rule: a sequence cut into pieces that
run side by side, for any GDN implementation.

A kernel's grid is batch x heads (x V-blocks): at B*H far below the GPU's SM count, a
long sequence leaves most of the card idle however fast each program is. Cut every
sequence into P pieces of L tokens. The state update is affine in the state,

    h_t = A_t h_{t-1} + beta_t k_t v_t^T,    A_t = exp(g_t) (I - beta_t k_t k_t^T),

so a piece maps its incoming state h to M h + F, with M = A_L ... A_1 (K x K) and F the
state the piece leaves from a zero start. Three steps, each over B*P sequences:

1. One run of the kernel on every piece with the values widened to [V | 0_K] and the
   initial state [0 | I_K]: its final state is [F | M] (the I columns travel through
   the transitions and receive no writes). No V-sized identity is needed, only K more
   columns.
2. The incoming states in order, h_in(p + 1) = keep(p + 1) * (M_p h_in(p) + F_p): P
   small fp32 matrix products. `keep` is 0 where a document starts exactly at a piece's
   first token (the kernels zero the state at every other document start themselves,
   which also zeroes M and F there, as it must).
3. The kernel again on every piece, started from its h_in: the outputs, and the final
   state of the last piece.

That is about 2 + K/V state passes' worth of work (and the WY part twice) for P times
the parallel programs: it pays only when B*H*(V-blocks) is several times below the SM
count (long-context scoring at batch 1, few heads). Gradients flow through the kernels'
own custom VJPs (they take the final-state cotangent and return the initial state's).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from hybrid_jax.kernels.gdn.reference import check_shapes
from hybrid_jax.typing import GdnBeta, GdnGate, GdnQK, GdnState, GdnV, SegmentIds

_HI = jax.lax.Precision.HIGHEST

GdnFn = Callable[..., tuple[GdnV, GdnState]]


def piece_length(t: int, pieces: int, chunk_size: int) -> int:
    """Tokens per piece: T / pieces rounded up to a multiple of `chunk_size`."""
    per = -(-t // pieces)
    return -(-per // chunk_size) * chunk_size


def gated_delta_rule_split(
    fn: GdnFn,
    q: GdnQK,
    k: GdnQK,
    v: GdnV,
    g: GdnGate,
    beta: GdnBeta,
    *,
    pieces: int,
    chunk_size: int = 64,
    scale: float | None = None,
    initial_state: GdnState | None = None,
    segment_ids: SegmentIds | None = None,
) -> tuple[GdnV, GdnState]:
    """`fn` (a gated_delta_rule with the usual contract, `chunk_size` bound or not) over
    each sequence cut into `pieces` pieces run in parallel (module docstring).

    The result equals `fn` on the whole sequence up to float reassociation. T need not
    divide: the tail is padded with tokens that leave the state unchanged (g = 0,
    beta = 0) and cropped from the output.
    """
    if not isinstance(pieces, int) or pieces < 1:
        raise ValueError(f"pieces must be a positive integer, got {pieces!r}")
    check_shapes(q, k, v, g, beta, initial_state)
    if pieces == 1:
        return fn(q, k, v, g, beta, scale=scale, initial_state=initial_state,
                  segment_ids=segment_ids)
    b, t, n, dk = q.shape
    dv = v.shape[-1]
    length = piece_length(t, pieces, chunk_size)
    tp = length * pieces
    def cut(x, mode="constant"):
        """[b, t, ...] -> [b * pieces, length, ...], the tail padded."""
        widths = [(0, 0), (0, tp - t)] + [(0, 0)] * (x.ndim - 2)
        x = jnp.pad(x, widths, mode=mode)
        return x.reshape(b * pieces, length, *x.shape[2:])

    qs, ks, vs, gs, betas = (cut(x) for x in (q, k, v, g, beta))
    if segment_ids is None:
        seg, keep = None, jnp.ones((b, pieces), bool)
    else:
        seg = cut(segment_ids, mode="edge")  # padding continues the last document
        # keep[:, p]: piece p continues the document the previous piece ended in
        ends = seg.reshape(b, pieces, length)
        keep = jnp.concatenate(
            [jnp.ones((b, 1), bool), ends[:, 1:, 0] == ends[:, :-1, -1]], axis=1)

    # 1. [F | M] of every piece from the state [0 | I]
    eye = jnp.broadcast_to(jnp.eye(dk, dtype=jnp.float32), (b * pieces, n, dk, dk))
    h_probe = jnp.concatenate([jnp.zeros((b * pieces, n, dk, dv), jnp.float32), eye], -1)
    v_probe = jnp.concatenate([vs, jnp.zeros((*vs.shape[:-1], dk), vs.dtype)], -1)
    _, fm = fn(qs, ks, v_probe, gs, betas, scale=scale, initial_state=h_probe,
               segment_ids=seg)
    fm = fm.reshape(b, pieces, n, dk, dv + dk)
    f, m = fm[..., :dv], fm[..., dv:]

    # 2. incoming states, piece by piece
    h0 = (jnp.zeros((b, n, dk, dv), jnp.float32) if initial_state is None
          else initial_state.astype(jnp.float32))

    def carry_on(h, xs):
        m_p, f_p, keep_p = xs
        h = jnp.where(keep_p[:, None, None, None], h, 0.0)
        return jnp.einsum("bnij,bnjv->bniv", m_p, h, precision=_HI) + f_p, h

    move = lambda x: jnp.moveaxis(x, 1, 0)  # noqa: E731  [b, P, ...] <-> [P, b, ...]
    _, h_in = jax.lax.scan(carry_on, h0, (move(m), move(f), move(keep)))
    h_in = move(h_in).reshape(b * pieces, n, dk, dv)

    # 3. the outputs from the right starts
    o, h_out = fn(qs, ks, vs, gs, betas, scale=scale, initial_state=h_in, segment_ids=seg)
    o = o.reshape(b, tp, n, dv)[:, :t]
    final = h_out.reshape(b, pieces, n, dk, dv)[:, -1]
    return o, final
