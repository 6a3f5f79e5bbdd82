"""Shared pieces of the Pallas gated-delta-rule kernels (GPU Triton and TPU Mosaic).

The two backends differ in how they walk over memory (GPU: whole-array refs indexed by
program ids, the chunk loop inside the kernel; TPU: BlockSpecs over a head-major layout,
the chunk loop as a sequential grid axis with the state in VMEM scratch). The algebra
per chunk is the same and lives here, written on loaded values with only the operations
both lowerings support (iota, where, exp, reductions, 2-D dot_general).

Notation per chunk of C tokens (reference/gated_deltanet.md section 3), gamma = the
chunk-local fp32 cumsum of g, `rel` = document index relative to the document that was
open before the chunk (0 = continues it):

    Gam_ij = exp(gamma_i - gamma_j) if j <= i and rel_i == rel_j else 0   (masked first)
    d_i    = exp(gamma_i) [rel_i == 0]                state entering the chunk reaches i
    e_j    = exp(gamma_last - gamma_j) [rel_j == rel_last]   token j reaches the exit state
    c      = exp(gamma_last) [rel_last == 0]          state carried through the chunk
    M      = strict_lower(beta_i k_i.k_j Gam_ij),  A = (I + M)^-1
    W      = A (beta d K),  U = A (beta V),  P = scale (Q K^T) Gam
    V'     = U - W S,  O = scale (d Q) S + P V',  S <- c S + (e K)^T V'

Document resets are these masks: no gate is ever set to -inf, so (with g <= 0) every
exponent is <= 0 and finite. The triangular inverse is exact block algebra
(`unit_lower_inverse`: block doubling, 2 (log2 C - 1) products of C x C on fp32 values;
no series), at the fp32 precision (below) for fp32 inputs and, for bf16 inputs, tf32 on
GPU (as fla) and HIGHEST on TPU. The large products take the input dtype (bf16
operands, fp32 accumulation), like fla. fp32 inputs run every product at the backend's
fp32 precision: HIGHEST on TPU and in interpret mode; on a compiled GPU kernel 3xTF32
(`DotAlgorithmPreset.TF32_TF32_F32_X3`, three tf32 tensor-core products, fp32-level
error), because Triton's IEEE fp32 dot is a scalar FMA loop: on an H100 one such kernel
took 69.5 s to compile (benchmarks/gdn_compile_time.py) and the GPU tests' fp32 cases
minutes each.

In the backward, dM = -A^T dA A^T takes the large products' operand dtype (A is saved
in it); for bf16 that was tf32 until it was measured (gradient kernels 1.68 -> 1.51 ms
on an H100; errors unchanged within the bf16 tolerance).

The custom_vjp (`make_core`) saves, besides the inputs, what the forward already formed
and the backward would otherwise recompute: W, P and A (the `wy` kernel writes A only
under differentiation), V' and the states entering each chunk (written by the state
pass only under differentiation), all in the input dtype. Per token and head that is
2 (K + 2 C + V) bytes plus 2 K V / C bytes of states (bf16, C = 64, K = V = 128:
1.3 KB, 1.7x the inputs q, k, v, which are saved too). The backward is then the reverse
state pass (dS, dV') and the per-chunk gradient kernels for dq, dk, dv, dbeta and
dgamma; nothing is recomputed but the chunk's decay masks and K K^T. (Measured on an
H100, B=4 T=4096 H=32 D=128 bf16: re-running the `wy` kernel in the backward, as the
first version did, cost 0.7 ms; saving V' took the gradient kernels from 2.85 to
2.40 ms.)
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
from jax import lax

from hybrid_jax.kernels.gdn.reference import default_scale
from hybrid_jax.segments import document_index

F32 = jnp.float32


@dataclasses.dataclass(frozen=True)
class KernelConfig:
    """Static choices shared by every kernel of one call (hashable: keys the core cache).

    mm_dtype: operand dtype of the large products (the input dtype; fp32 or bf16).
    mm_precision: their precision (for fp32 inputs the backend's `fp32_precision`).
    inv_precision: precision of the fp32 products inside the triangular inverse.
    """

    chunk: int
    scale: float
    mm_dtype: Any
    mm_precision: Any
    inv_precision: Any
    interpret: bool
    block_v: int
    num_warps: int = 4  # GPU: the wy kernel
    num_warps_state: int = 8  # GPU: the two sequential state passes
    num_warps_grads: int = 8  # GPU: the per-chunk gradient kernel
    num_stages_state: int = 2  # GPU: software-pipelining depth of the state passes
    num_stages_grads: int = 1  # GPU: software-pipelining depth of the gradient kernels (bf16: 3)
    num_warps_grads_wy: int = 0  # GPU: warps of grads_wy alone (0: num_warps_grads; bf16: 4)
    num_stages_grads_wy: int = 0  # GPU: its pipelining depth (0: num_stages_grads; bf16: 2)
    block_v_state_bwd: int = 0  # GPU: V-block of the reverse state pass (0: block_v)
    num_warps_state_bwd: int = 0  # GPU: its warps (0: num_warps_state)
    block_v_grads: int = 0  # GPU: V-block of the gradient kernels (0: block_v)
    block_v_wy: int = 0  # GPU: V-block in which the wy kernel forms U (0: all of V)
    pad_v: int = 0  # pad V to a multiple of this (0: to the next power of two, see padded_dim)
    wy_block: int = 0  # GPU: form A, W, U, P on row blocks of this many rows (`blocked_wy`; 0: no)
    fused_fwd: int = 0  # GPU: 1 = outside differentiation, the A-and-P kernel + one fused
    #                     state pass (`make_core`); the GPU default (`pallas_gpu.gpu_config`)
    fused_save: int = 0  # GPU: 1 = under differentiation too (saves A, P, states, V'; no W)
    block_v_fused: int = 0  # GPU: V-block of the fused state pass (0: block_v)
    num_warps_fused: int = 0  # GPU: its warps (0: num_warps_state)


def dot(a: jax.Array, b: jax.Array, *, ta: bool = False, tb: bool = False,
        dtype: Any = None, precision: Any = None) -> jax.Array:
    """2-D product with fp32 accumulation; `ta` / `tb` contract over a's rows / b's cols."""
    if dtype is not None:
        a, b = a.astype(dtype), b.astype(dtype)
    dims = (((0 if ta else 1,), (1 if tb else 0,)), ((), ()))
    return lax.dot_general(a, b, dims, precision=precision, preferred_element_type=F32)


class Decays(NamedTuple):
    """Masked decay factors of one chunk (see the module docstring)."""

    gam: jax.Array  # [C, C] Gam, lower triangle including the diagonal
    d_in: jax.Array  # [C]
    e_out: jax.Array  # [C]
    c: jax.Array  # scalar
    last: jax.Array  # [C] bool, the last position of the chunk


def masked_exp(keep: jax.Array, x: jax.Array) -> jax.Array:
    """exp(x) where `keep`, else 0, never evaluating exp outside `keep` (no inf * 0)."""
    return jnp.where(keep, jnp.exp(jnp.where(keep, x, 0.0)), 0.0)


def decays(gamma: jax.Array, rel: jax.Array) -> Decays:
    """Decay factors from the chunk-local cumsum `gamma` [C] and relative doc index `rel`."""
    c_len = gamma.shape[0]
    i = lax.broadcasted_iota(jnp.int32, (c_len, c_len), 0)
    j = lax.broadcasted_iota(jnp.int32, (c_len, c_len), 1)
    last = lax.broadcasted_iota(jnp.int32, (c_len,), 0) == c_len - 1
    gamma_last = jnp.sum(jnp.where(last, gamma, 0.0))
    rel_last = jnp.sum(jnp.where(last, rel, 0.0))
    keep = (i >= j) & (rel[:, None] == rel[None, :])
    diff = gamma[:, None] - gamma[None, :]
    gam = masked_exp(keep, diff)
    alive = rel == 0.0
    d_in = masked_exp(alive, gamma)
    reach = rel == rel_last
    e_out = masked_exp(reach, gamma_last - gamma)
    c = jnp.where(rel_last == 0.0, jnp.exp(gamma_last), 0.0)
    return Decays(gam, d_in, e_out, c, last)


def unit_lower_inverse(m: jax.Array, precision: Any) -> jax.Array:
    """(I + m)^-1 for a strictly lower-triangular fp32 m [C, C], C a power of two.

    Block doubling: with X the inverse of the diagonal blocks of size s, the inverse of
    the diagonal blocks of size 2s is X - X L X, L = the lower-left s x s corner of each
    2s block of m (for [[A, 0], [L, B]] the inverse is [[A^-1, 0], [-B^-1 L A^-1, B^-1]]).
    Exact block algebra, no series; log2(C) - 1 levels of two C x C products each.
    """
    c_len = m.shape[0]
    i = lax.broadcasted_iota(jnp.int32, (c_len, c_len), 0)
    j = lax.broadcasted_iota(jnp.int32, (c_len, c_len), 1)
    # Blocks of 2: [[1, 0], [m, 1]]^-1 = [[1, 0], [-m, 1]].
    def block(x: jax.Array, size: int) -> jax.Array:  # x // size for x >= 0
        return lax.shift_right_logical(x, size.bit_length() - 1)

    x = jnp.where(i == j, 1.0, 0.0).astype(F32) - jnp.where(block(i, 2) == block(j, 2), m, 0.0)
    size = 2
    while size < c_len:
        corner = (block(i, 2 * size) == block(j, 2 * size)) & (block(i, size) != block(j, size))
        x = x - dot(dot(x, jnp.where(corner, m, 0.0), precision=precision), x,
                    precision=precision)
        size *= 2
    return x


def _strict(c_len: int) -> jax.Array:
    i = lax.broadcasted_iota(jnp.int32, (c_len, c_len), 0)
    j = lax.broadcasted_iota(jnp.int32, (c_len, c_len), 1)
    return i > j


def _kkt_and_inverse(k: jax.Array, beta: jax.Array, dec: Decays, cfg: KernelConfig):
    kk = dot(k, k, tb=True, dtype=cfg.mm_dtype, precision=cfg.mm_precision)
    strict = _strict(k.shape[0])
    m = jnp.where(strict, beta[:, None] * kk * dec.gam, 0.0)
    return kk, strict, unit_lower_inverse(m, cfg.inv_precision)


def chunk_inverse(k: jax.Array, beta: jax.Array, dec: Decays, cfg: KernelConfig
                  ) -> jax.Array:
    """A = (I + M)^-1 [C, C] of one chunk, fp32 (the fused forward stores it)."""
    return _kkt_and_inverse(k, beta, dec, cfg)[2]


def chunk_scores(q: jax.Array, k: jax.Array, dec: Decays, cfg: KernelConfig) -> jax.Array:
    """P = scale (Q K^T) Gam [C, C] of one chunk, fp32."""
    qk = dot(q, k, tb=True, dtype=cfg.mm_dtype, precision=cfg.mm_precision)
    return cfg.scale * qk * dec.gam


def wy_forward(q: jax.Array, k: jax.Array, beta: jax.Array, dec: Decays,
               cfg: KernelConfig):
    """W [C, K], P [C, C] and A [C, C] of one chunk, fp32 (the caller stores A only
    under differentiation); U comes from `wy_values`, on as much of V as the caller
    holds at once."""
    _, _, a = _kkt_and_inverse(k, beta, dec, cfg)
    xw = k.astype(F32) * (beta * dec.d_in)[:, None]
    w = dot(a, xw, dtype=cfg.mm_dtype, precision=cfg.mm_precision)
    return w, chunk_scores(q, k, dec, cfg), a


def wy_values(a: jax.Array, v: jax.Array, beta: jax.Array, cfg: KernelConfig) -> jax.Array:
    """U = A (beta V) [C, BV] of one chunk on a V-block v [C, BV], fp32."""
    return dot(a, v.astype(F32) * beta[:, None], dtype=cfg.mm_dtype,
               precision=cfg.mm_precision)


class ChunkBlock(NamedTuple):
    """Rows i S .. (i + 1) S of one chunk, as loaded by a kernel (gamma and rel as for
    `decays`: chunk-local, so the blocks of one chunk share them)."""

    q: jax.Array | None  # [S, K] (None where no scores are formed)
    k: jax.Array  # [S, K]
    beta: jax.Array  # [S]
    gamma: jax.Array  # [S]
    rel: jax.Array  # [S]


def _block_decay(x: ChunkBlock, y: ChunkBlock, diagonal: bool) -> jax.Array:
    """Gam between the rows of block x and those of block y (x at or after y)."""
    keep = x.rel[:, None] == y.rel[None, :]
    if diagonal:
        s = x.gamma.shape[0]
        keep = keep & (lax.broadcasted_iota(jnp.int32, (s, s), 0)
                       >= lax.broadcasted_iota(jnp.int32, (s, s), 1))
    return masked_exp(keep, x.gamma[:, None] - y.gamma[None, :])


class BlockedWY(NamedTuple):
    """One chunk's factors on S x S blocks (keys (i, j), i >= j; the blocks above the
    diagonal are zero and never formed), fp32."""

    a: dict[tuple[int, int], jax.Array]  # A = (I + M)^-1
    w: list[jax.Array] | None  # W = A (beta d K), by row block [S, K]
    p: dict[tuple[int, int], jax.Array] | None  # P = scale (Q K^T) Gam


def blocked_wy(blocks: list[ChunkBlock], cfg: KernelConfig, *, w: bool,
               scores: bool) -> BlockedWY:
    """A (and W, P) of one chunk formed on its row blocks; the same matrices as
    `wy_forward`'s, for a fraction of the inverse's work.

    M's lower blocks are products S x K x S; each diagonal block is inverted by
    `unit_lower_inverse` on S x S; below the diagonal, A_ij = -A_ii sum_{j <= m < i}
    M_im A_mj (block forward substitution on the identity). W and P are formed block
    by block and nothing is put back together: the kernel stores each block where it
    belongs. At C = 64 in two blocks of 32 the inverse takes 4 levels of two 32^3
    products plus two for the corner, 18 / 8 = 2.25 of the whole chunk's 64^3 product
    against its 10 (fla's and FlashQLA's solve kernels block the same way, in 16s).
    """
    mm, prec, inv_prec = cfg.mm_dtype, cfg.mm_precision, cfg.inv_precision
    nb = len(blocks)
    strict = _strict(blocks[0].k.shape[0])
    m, p = {}, {} if scores else None
    for i in range(nb):
        for j in range(i + 1):
            gam = _block_decay(blocks[i], blocks[j], diagonal=i == j)
            kk = dot(blocks[i].k, blocks[j].k, tb=True, dtype=mm, precision=prec)
            m[i, j] = blocks[i].beta[:, None] * kk * gam
            if i == j:
                m[i, j] = jnp.where(strict, m[i, j], 0.0)
            if scores:
                p[i, j] = cfg.scale * dot(blocks[i].q, blocks[j].k, tb=True, dtype=mm,
                                          precision=prec) * gam
    a = {(i, i): unit_lower_inverse(m[i, i], inv_prec) for i in range(nb)}
    for i in range(1, nb):
        for j in range(i):
            acc = dot(m[i, j], a[j, j], precision=inv_prec)
            for mid in range(j + 1, i):
                acc += dot(m[i, mid], a[mid, j], precision=inv_prec)
            a[i, j] = -dot(a[i, i], acc, precision=inv_prec)
    w_blocks = None
    if w:
        xw = [x.k.astype(F32) * (x.beta * masked_exp(x.rel == 0.0, x.gamma))[:, None]
              for x in blocks]
        w_blocks = [_lower_times(a, xw, i, cfg) for i in range(nb)]
    return BlockedWY(a, w_blocks, p)


def _lower_times(a: dict[tuple[int, int], jax.Array], xs: list[jax.Array], i: int,
                 cfg: KernelConfig) -> jax.Array:
    """Row block i of (block-lower A) X: sum over j <= i of A_ij X_j."""
    out = dot(a[i, 0], xs[0], dtype=cfg.mm_dtype, precision=cfg.mm_precision)
    for j in range(1, i + 1):
        out = out + dot(a[i, j], xs[j], dtype=cfg.mm_dtype, precision=cfg.mm_precision)
    return out


def blocked_values(a: dict[tuple[int, int], jax.Array], vs: list[jax.Array],
                   betas: list[jax.Array], cfg: KernelConfig) -> list[jax.Array]:
    """U = A (beta V) by row block, on one V-block (vs[i]: [S, BV] of block i), fp32."""
    xu = [v.astype(F32) * beta[:, None] for v, beta in zip(vs, betas)]
    return [_lower_times(a, xu, i, cfg) for i in range(len(vs))]


def state_forward(q, k, w, u, p, dec: Decays, s: jax.Array, cfg: KernelConfig):
    """One chunk of the state pass on a V-block: (O [C, BV], next state, V' [C, BV])."""
    mm, prec = cfg.mm_dtype, cfg.mm_precision
    v_new = u.astype(F32) - dot(w, s, dtype=mm, precision=prec)
    qd = q.astype(F32) * (cfg.scale * dec.d_in)[:, None]
    o = dot(qd, s, dtype=mm, precision=prec) + dot(p, v_new, dtype=mm, precision=prec)
    ke = k.astype(F32) * dec.e_out[:, None]
    s = dec.c * s + dot(ke, v_new, ta=True, dtype=mm, precision=prec)
    return o, s, v_new


def fused_state_forward(q, k, v, a, p, beta, dec: Decays, s: jax.Array, cfg: KernelConfig):
    """One chunk of the fused forward on a V-block v [C, BV], from the chunk's A and P
    as the A-and-P kernel stored them; (O [C, BV], next state, V'). W and U are never
    formed:

        V' = U - W S = A (beta V) - A (beta d K) S = A (beta (V - d (K S)))

    (beta and d scale rows), so the chunk costs K S and one A product on [C, BV] instead
    of W = A (beta d K) on [C, K].

    Spill stores per thread, offline sm_90a (benchmarks/gdn_compile_report.py --forward;
    benchmarks/results/offline_gdn_fused_compile.txt), bf16, K = V = 128, BV 64, 4 warps:
    140 B (BV 32: 0 B; the two-kernel state pass: 120 B). Two earlier forms, measured
    the same way during development: W and U formed on chip, 1364 B; this form with P
    formed in the loop (its [C, C] decay mask on chip), 604 B."""
    mm, prec = cfg.mm_dtype, cfg.mm_precision
    ks = dot(k, s, dtype=mm, precision=prec)
    x = beta[:, None] * (v.astype(F32) - dec.d_in[:, None] * ks)
    v_new = dot(a, x, dtype=mm, precision=prec)
    qd = q.astype(F32) * (cfg.scale * dec.d_in)[:, None]
    o = dot(qd, s, dtype=mm, precision=prec)
    o = o + dot(p, v_new, dtype=mm, precision=prec)
    ke = k.astype(F32) * dec.e_out[:, None]
    s = dec.c * s + dot(ke, v_new, ta=True, dtype=mm, precision=prec)
    return o, s, v_new


def state_backward(q, k, w, p, dec: Decays, do: jax.Array, ds: jax.Array,
                   cfg: KernelConfig, *, a: jax.Array | None = None,
                   beta: jax.Array | None = None):
    """Reverse step: given dO [C, BV] and dS after the chunk, (dV' [C, BV], dS before).
    `w` None (after the fused forward, which writes no W): W^T dV' is formed from the
    chunk's A and beta as (beta d K)^T (A^T dV')."""
    mm, prec = cfg.mm_dtype, cfg.mm_precision
    ke = k.astype(F32) * dec.e_out[:, None]
    dv_new = dot(p, do, ta=True, dtype=mm, precision=prec) + dot(ke, ds, dtype=mm,
                                                                   precision=prec)
    if w is None:
        xw = k.astype(F32) * (beta * dec.d_in)[:, None]
        wt_dv = dot(xw, dot(a, dv_new, ta=True, dtype=mm, precision=prec), ta=True,
                    dtype=mm, precision=prec)
    else:
        wt_dv = dot(w, dv_new, ta=True, dtype=mm, precision=prec)
    qd = q.astype(F32) * (cfg.scale * dec.d_in)[:, None]
    ds_prev = dec.c * ds + dot(qd, do, ta=True, dtype=mm, precision=prec) - wt_dv
    return dv_new, ds_prev


def over_v_blocks(num_v_blocks: int, body: Callable, carry):
    """`carry = body(jb, carry)` for jb over the V-blocks: inline for one block, else a
    loop, so that the kernel holds one block's values at a time (unrolled, the
    compiler kept more of them live and spilled)."""
    if num_v_blocks == 1:
        return body(0, carry)
    return lax.fori_loop(0, num_v_blocks, body, carry)


def grads_through_state(q, k, gamma, rel, cfg: KernelConfig, num_v_blocks: int,
                        load_v_block: Callable[[int], tuple[jax.Array, ...]]):
    """Chunk gradients through O = scale (d Q) S + P V' and S_next = c S + (e K)^T V'.

    `load_v_block(j)` returns (V', S, dS, dO) on V-block j (V' and S as saved by the
    forward, S entering the chunk, dS the gradient of the state leaving it). Returns dq
    [C, K] (complete), and the parts of dk [C, K] and dgamma [C] that flow through P,
    d, e and c (fp32). The decays are formed after the V-block loop, so that they are
    not held (in registers) across it.
    """
    mm, prec = cfg.mm_dtype, cfg.mm_precision
    c_len, dk_len = k.shape

    def v_block(jb, acc):
        dp, do_s, vn_ds, dc = acc
        v_new, s, ds, do = load_v_block(jb)
        return (dp + dot(do, v_new, tb=True, dtype=mm, precision=prec),
                do_s + dot(do, s, tb=True, dtype=mm, precision=prec),  # dO S^T
                vn_ds + dot(v_new, ds, tb=True, dtype=mm, precision=prec),  # V' dS^T
                dc + jnp.sum(s.astype(F32) * ds.astype(F32)))

    zeros = (jnp.zeros((c_len, c_len), F32), jnp.zeros((c_len, dk_len), F32),
             jnp.zeros((c_len, dk_len), F32), jnp.zeros((), F32))
    dp, do_s, vn_ds, dc = over_v_blocks(num_v_blocks, v_block, zeros)
    dec = decays(gamma, rel)
    dp_gam = cfg.scale * dp * dec.gam
    dq = dot(dp_gam, k, dtype=mm, precision=prec) + (cfg.scale * dec.d_in)[:, None] * do_s
    dk = dot(dp_gam, q, ta=True, dtype=mm, precision=prec) + dec.e_out[:, None] * vn_ds
    h = dp_gam * dot(q, k, tb=True, dtype=mm, precision=prec)  # dGam * Gam
    de = jnp.sum(k.astype(F32) * vn_ds, axis=1) * dec.e_out
    dgamma = (jnp.sum(h, axis=1) - jnp.sum(h, axis=0) - de
              + cfg.scale * jnp.sum(q.astype(F32) * do_s, axis=1) * dec.d_in)
    dgamma += jnp.where(dec.last, jnp.sum(de) + dc * dec.c, 0.0)
    return dq, dk, dgamma


def grads_through_wy(k, beta, gamma, rel, a, cfg: KernelConfig, num_v_blocks: int,
                     load_v_block: Callable[[int], tuple[jax.Array, ...]],
                     store_dv: Callable[[int, jax.Array], None]):
    """Chunk gradients through V' = U - W S, U = A (beta V), W = A (beta d K), A = (I+M)^-1.

    a: the chunk's A. `load_v_block(j)` returns (v, S, dV') on V-block j; `store_dv`
    writes dv of that block. Returns the parts of dk [C, K] and dgamma [C] that flow
    through W, U and M, and dbeta [C] (complete; fp32).
    """
    mm, prec = cfg.mm_dtype, cfg.mm_precision
    c_len, dk_len = k.shape
    k32 = k.astype(F32)

    def v_block(jb, acc):
        da, dw, dbeta = acc
        v, s, dvn = load_v_block(jb)
        xu = v.astype(F32) * beta[:, None]
        dxu = dot(a, dvn, ta=True, dtype=mm, precision=prec)
        store_dv(jb, dxu * beta[:, None])
        return (da + dot(dvn, xu, tb=True, dtype=mm, precision=prec),
                dw - dot(dvn, s, tb=True, dtype=mm, precision=prec),
                dbeta + jnp.sum(dxu * v.astype(F32), axis=1))

    zeros = (jnp.zeros((c_len, c_len), F32), jnp.zeros((c_len, dk_len), F32),
             jnp.zeros((c_len,), F32))
    da, dw, dbeta = over_v_blocks(num_v_blocks, v_block, zeros)
    # After the loop, in an order that keeps few [C, K] / [C, C] tiles live (on GPU the
    # kernel then runs at 4 warps, two programs per SM): dW and dA are only ever product
    # operands, so they are cast to the mm dtype once; M's part of dk comes before W's.
    dec = decays(gamma, rel)
    xw = k32 * (beta * dec.d_in)[:, None]
    dw = dw.astype(mm)
    da = (da + dot(dw, xw, tb=True, dtype=mm, precision=prec)).astype(mm)
    # A = (I + M)^-1  =>  dM = -A^T dA A^T on the strict lower triangle (mm-dtype
    # operands, like the other large products; A was saved in that dtype).
    dm = -dot(dot(a, da, ta=True, dtype=mm, precision=prec), a, tb=True, dtype=mm,
              precision=prec)
    dm = jnp.where(_strict(c_len), dm, 0.0)
    kk = dot(k, k, tb=True, dtype=mm, precision=prec)
    t = dm * dec.gam
    dbeta += jnp.sum(t * kk, axis=1)
    dkk = t * beta[:, None]
    h = dkk * kk  # dGam * Gam
    dgamma = jnp.sum(h, axis=1) - jnp.sum(h, axis=0)
    dk = dot(dkk, k, dtype=mm, precision=prec) + dot(dkk, k, ta=True, dtype=mm,
                                                     precision=prec)
    dxw = dot(a, dw, ta=True, dtype=mm, precision=prec)
    dxw_k = jnp.sum(dxw * k32, axis=1)
    dk += dxw * (beta * dec.d_in)[:, None]
    dbeta += dec.d_in * dxw_k
    dgamma += beta * dxw_k * dec.d_in
    return dk, dbeta, dgamma


# ----------------------------------------------------------------------- XLA glue
def next_pow2(x: int) -> int:
    """The padded size of a head dim: the next power of two, at least 16."""
    return max(16, 1 << (x - 1).bit_length())


def padded_dim(x: int, multiple: int = 0) -> int:
    """A head dim padded for the kernels: to the next power of two (>= 16) when
    `multiple` is 0, else to a multiple of `multiple` (a power of two), never past the
    next power of two. The kernels tile V by power-of-two blocks, so V need only be a
    multiple of the widest block: the release's V = 192 in 64-wide blocks pads to 192,
    not 256 (K is loaded whole and always takes the power of two)."""
    if multiple == 0:
        return next_pow2(x)
    if multiple < 16 or multiple & (multiple - 1):
        raise ValueError(f"pad_v must be 0 or a power of two >= 16, got {multiple}")
    return min(next_pow2(x), -(-x // multiple) * multiple)


class Prepared(NamedTuple):
    q: jax.Array
    k: jax.Array
    v: jax.Array
    beta: jax.Array  # fp32
    gamma: jax.Array  # fp32 chunk-local cumsum of g
    rel: jax.Array  # [b, t] fp32 document index relative to the chunk's incoming one
    h0: jax.Array  # fp32


def prepare(q, k, v, g, beta, initial_state, segment_ids, chunk: int,
            pad_v: int = 0) -> Prepared:
    """Pad T to a multiple of `chunk` and the head dims with zeros (K to a power of two
    >= 16, V by `padded_dim(dv, pad_v)`; the state is then unchanged by the padding),
    and form gamma and rel."""
    b, t, n, dk = q.shape
    dv = v.shape[-1]
    num_chunks = -(-t // chunk)
    tp, dkp, dvp = num_chunks * chunk, next_pow2(dk), padded_dim(dv, pad_v)

    def pad(x, d_to=None):
        widths = [(0, 0), (0, tp - t)] + [(0, 0)] * (x.ndim - 2)
        if d_to is not None:
            widths[-1] = (0, d_to - x.shape[-1])
        return jnp.pad(x, widths)

    g32 = pad(g.astype(F32))
    gamma = jnp.cumsum(g32.reshape(b, num_chunks, chunk, n), axis=2).reshape(b, tp, n)
    if segment_ids is None:
        rel = jnp.zeros((b, tp), F32)
    else:
        doc = jnp.pad(document_index(segment_ids), ((0, 0), (0, tp - t)), mode="edge")
        doc = doc.reshape(b, num_chunks, chunk)
        prev = jnp.concatenate([doc[:, :1, 0], doc[:, :-1, -1]], axis=1)
        rel = (doc - prev[..., None]).astype(F32).reshape(b, tp)
    if initial_state is None:
        h0 = jnp.zeros((b, n, dkp, dvp), F32)
    else:
        h0 = jnp.pad(initial_state.astype(F32),
                     ((0, 0), (0, 0), (0, dkp - dk), (0, dvp - dv)))
    return Prepared(pad(q, dkp), pad(k, dkp), pad(v, dvp), pad(beta.astype(F32)),
                    gamma, rel, h0)


def compute_dtype(*xs: jax.Array) -> Any:
    """bfloat16 when every input is bfloat16, else float32 (fp16 would overflow)."""
    return jnp.bfloat16 if all(x.dtype == jnp.bfloat16 for x in xs) else F32


def make_config(q: jax.Array, v: jax.Array, *, scale: float | None, chunk: int,
                interpret: bool, inv_precision: Any, block_v: int,
                fp32_precision: Any = lax.Precision.HIGHEST,
                **gpu_tuning: int) -> KernelConfig:
    """Kernel config for inputs q, v (dtype policy in the module docstring):
    `inv_precision` for the inverse's products on bf16 inputs, `fp32_precision` for
    every product on fp32 inputs."""
    if chunk not in (16, 32, 64, 128):
        raise ValueError(f"chunk_size must be 16, 32, 64 or 128 for the Pallas GDN "
                         f"kernels, got {chunk}")
    if q.dtype not in (jnp.float32, jnp.bfloat16) or v.dtype != q.dtype:
        raise ValueError(f"q/k/v in the Pallas GDN kernels: one dtype of float32 or "
                         f"bfloat16 (see compute_dtype), got {q.dtype} and {v.dtype}")
    exact = q.dtype == jnp.float32
    return KernelConfig(
        chunk=chunk, scale=default_scale(q.shape[-1], scale), mm_dtype=q.dtype,
        mm_precision=fp32_precision if exact else None,
        inv_precision=fp32_precision if exact else inv_precision,
        interpret=interpret, block_v=block_v, **gpu_tuning)


class Backend(Protocol):
    """The four kernels of one platform, on that platform's layout of `Prepared`.

    wy -> (W, U, P, A or None); state_fwd -> (O, final state, states or None, V' or
    None); `save` (under differentiation) asks for the optional outputs.
    """

    def wy(self, cfg: KernelConfig, q, k, v, beta, gamma, rel, *, save: bool): ...
    def state_fwd(self, cfg: KernelConfig, q, k, w, u, p, gamma, rel, h0, *,
                  save: bool): ...
    def state_bwd(self, cfg: KernelConfig, q, k, w, p, gamma, rel, do, dht): ...
    def grads(self, cfg: KernelConfig, q, k, v, beta, gamma, rel, a, v_new, states,
              dstates, do, dvn): ...
    # Optional (GPU), for cfg.fused_fwd / fused_save: (O, final state, A, P, states or
    # None, V' or None) with no W or U in memory; after it (fused_save) state_bwd takes
    # w=None, a=, beta=.
    # def fused_forward(self, cfg, q, k, v, beta, gamma, rel, h0, *, save: bool): ...


@functools.cache
def make_core(backend: Backend, cfg: KernelConfig):
    """(q, k, v, beta, gamma, rel, h0) -> (o, final state) with a kernel backward.

    With `cfg.fused_fwd` the forward outside differentiation (scoring) is the backend's
    `fused_forward`; with `cfg.fused_save` so is the forward under differentiation: it
    saves A, P, the states and V' (no W), and the reverse state pass forms W^T dV' from A
    (`state_backward`); the gradient kernels are unchanged. custom_vjp calls `core`
    outside differentiation and `core_fwd` under it, so the two choices are independent.
    """
    if (cfg.fused_fwd or cfg.fused_save) and not hasattr(backend, "fused_forward"):
        raise ValueError(f"fused_fwd / fused_save: the {type(backend).__name__.strip('_')} "
                         "GDN kernels have no fused forward (GPU only)")

    @jax.custom_vjp
    def core(q, k, v, beta, gamma, rel, h0):
        if cfg.fused_fwd:
            return backend.fused_forward(cfg, q, k, v, beta, gamma, rel, h0, save=False)[:2]
        w, u, p, _ = backend.wy(cfg, q, k, v, beta, gamma, rel, save=False)
        o, ht, _, _ = backend.state_fwd(cfg, q, k, w, u, p, gamma, rel, h0, save=False)
        return o, ht

    def core_fwd(q, k, v, beta, gamma, rel, h0):
        if cfg.fused_save:
            o, ht, a, p, states, v_new = backend.fused_forward(cfg, q, k, v, beta, gamma,
                                                               rel, h0, save=True)
            return (o, ht), (q, k, v, beta, gamma, rel, None, p, a, states, v_new)
        w, u, p, a = backend.wy(cfg, q, k, v, beta, gamma, rel, save=True)
        o, ht, states, v_new = backend.state_fwd(cfg, q, k, w, u, p, gamma, rel, h0,
                                                 save=True)
        return (o, ht), (q, k, v, beta, gamma, rel, w, p, a, states, v_new)

    def core_bwd(res, cts):
        q, k, v, beta, gamma, rel, w, p, a, states, v_new = res
        do, dht = cts
        do = do.astype(v.dtype)
        from_a = {} if w is not None else {"a": a, "beta": beta}
        dstates, dvn, dh0 = backend.state_bwd(cfg, q, k, w, p, gamma, rel, do,
                                              dht.astype(F32), **from_a)
        dq, dk, dv, dbeta, dgamma = backend.grads(cfg, q, k, v, beta, gamma, rel, a, v_new,
                                                  states, dstates, do, dvn)
        return dq, dk, dv, dbeta, dgamma, jnp.zeros_like(rel), dh0

    core.defvjp(core_fwd, core_bwd)
    return core


def run(backend: Backend, cfg: KernelConfig, q, k, v, g, beta, *, initial_state,
        segment_ids, to_layout: Callable | None = None, from_layout: Callable | None = None):
    """Check, prepare, run the kernels and crop back to [b, t, n, v] / [b, n, k, v]."""
    b, t, n, dk = q.shape
    dv = v.shape[-1]
    prep = prepare(q, k, v, g, beta, initial_state, segment_ids, cfg.chunk, cfg.pad_v)
    args = tuple(prep)
    if to_layout is not None:
        args = to_layout(*args)
    o, ht = make_core(backend, cfg)(*args)
    if from_layout is not None:
        o = from_layout(o)
    return o[:, :t, :, :dv], ht[:, :, :dk, :dv]
