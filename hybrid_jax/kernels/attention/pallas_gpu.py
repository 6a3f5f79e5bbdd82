"""Flash attention in Pallas (Triton lowering) for GPUs, with causal, sliding-window and
document masks, grouped-query attention, forward and backward.

Semantics are those of `reference.py` (queries are the last t of the s keys; a window
of W keys includes the query; segment ids keep packed documents apart). This kernel
exists for what cuDNN cannot run without a dense mask: segment ids, alone or combined
with a causal mask or a sliding window.

Work skipping. Each program owns one block of queries (forward, dQ) or keys (dK/dV)
and loops over the blocks of the other side that it can see. The loop bounds come from
the block's positions, the window and, with segment ids, the first and last position
of the documents at the block's edges (documents are contiguous, so a query sees no key
before the start of its document and no key after its end):

    forward / dQ, query block [p0, p1]:
        keys   from max(p0 - W + 1, doc_start(p0))   to min(p1, doc_end(p1) - 1)
    dK / dV, key block [k0, k1]:
        queries from max(k0, doc_start(k0))          to min(k1 + W - 1, doc_end(k1) - 1)

Fully masked blocks are never visited, so a window of W costs O(T·W), not O(T²), and
packing several documents in a row costs less than one long document. Inside that
range the blocks that every query of the block sees whole (below the diagonal, inside
the window, inside one document) run without building a mask; only the blocks on the
diagonal, the window's edge or a document boundary evaluate the mask. So each program
runs three loops: masked edge, unmasked interior, masked edge.

Memory. Nothing of size T × S is materialised: the forward keeps a [block_q, h] fp32
accumulator plus the running max and sum of each query row; it saves the output and
the log-sum-exp (fp32, [b, n, t]) for the backward, which recomputes the probabilities
block by block (FlashAttention-2). Grouped-query attention reads each key/value head
in place for all query heads of its group (the kernels index the kv head, K and V are
never repeated); the dK/dV kernel loops over the group's query heads and accumulates
their contributions in registers. Sequences that are not a multiple of the block sizes
are zero-padded to one (a copy of q, k, v), and the padding is masked or discarded;
head dims that are not a power of two (48, 80, 96) are zero-padded in the same copy
(`kernel_head_dim`; exact, see `flash_attention`).

Numerics: q·k and p·v products take the inputs' dtype (bf16 / fp16 on the tensor cores,
float32 inputs at full float32 precision, never TF32) and accumulate in float32; the
softmax runs in float32 in base 2 (exp2 of logits scaled by log2(e)).

`interpret=True` runs the same kernels through the Pallas interpreter on any backend
(CPU tests); the dispatcher turns it on when the backend is not a GPU.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from hybrid_jax.kernels.attention import mosaic_gpu
from hybrid_jax.kernels.attention.reference import check_attention_args
from hybrid_jax.kernels.impl import announce
from hybrid_jax.segments import document_index, positions_from_segments
from hybrid_jax.typing import Array, AttentionOut, Keys, Queries, SegmentIds, Values

_LOG2E = math.log2(math.e)
_DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)


@dataclasses.dataclass(frozen=True)
class BlockSizes:
    """Tile sizes (powers of two) and Triton launch parameters of the three kernels.

    forward: block_q queries per program, block_k keys per loop step.
    dK/dV:   block_k_dkv keys per program, block_q_dkv queries per loop step.
    dQ:      block_q_dq queries per program, block_k_dq keys per loop step.
    Defaults from `benchmarks/attention.py --sweep` on an H100 (bf16, B=4 T=4096 H=32
    D=128, causal; wide blocks on the side each program owns, narrower steps on the
    side it loops over): forward 128 x 64 with 8 warps and 3 stages was within the
    sweep's run-to-run noise (~5%) of the best of 15 variants (1.63-1.70 ms); backward
    64-query steps over 128-key blocks and 128-query blocks over 64-key steps took
    6.25 ms fwd+bwd against 6.71 for the 32 / 32 steps of Triton's tutorial.
    """

    block_q: int = 128
    block_k: int = 64
    block_q_dkv: int = 64
    block_k_dkv: int = 128
    block_q_dq: int = 128
    block_k_dq: int = 64
    num_warps: int = 8
    num_stages: int = 3
    num_warps_bwd: int = 8
    num_stages_bwd: int = 3

    def __post_init__(self) -> None:
        for f in ("block_q", "block_k", "block_q_dkv", "block_k_dkv", "block_q_dq",
                  "block_k_dq"):
            b = getattr(self, f)
            if b < 16 or b & (b - 1):
                raise ValueError(f"BlockSizes.{f} must be a power of two >= 16, got {b}")

    @property
    def q_multiple(self) -> int:
        """Query padding unit: a multiple of every query block."""
        return max(self.block_q, self.block_q_dkv, self.block_q_dq)

    @property
    def k_multiple(self) -> int:
        """Key padding unit: a multiple of every key block."""
        return max(self.block_k, self.block_k_dkv, self.block_k_dq)


def default_block_sizes(dtype: Any, head_dim: int) -> BlockSizes:
    """Tiles that fit an H100's 227 KiB of shared memory without register spills.

    `BlockSizes()` for 2-byte inputs with h <= 128. Float32 tiles take twice the memory
    and run on CUDA cores (no fp32 tensor-core path without TF32), and h = 256 doubles
    every row: both get half the keys per step and two pipeline stages (h = 256 also
    halves the query blocks). Checked with `benchmarks/attention_compile_report.py`.
    """
    if head_dim > 128:
        return BlockSizes(block_q=64, block_k=32, block_q_dkv=16, block_k_dkv=64,
                          block_q_dq=64, block_k_dq=16, num_stages=2, num_stages_bwd=2)
    if jnp.dtype(dtype) == jnp.float32:
        return BlockSizes(block_k=32, block_q_dkv=16, block_k_dq=16, num_stages=2,
                          num_stages_bwd=2)
    return BlockSizes()


MAX_HEAD_DIM = 256


def kernel_head_dim(h: int) -> int:
    """The head dim the kernels run at for inputs of head dim h: the next power of two,
    at least 16 (Triton's tiles are powers of two, its dots at least 16 deep; the
    Mosaic forward's are 64 or 128 wide). 48 -> 64, 80 and 96 -> 128, 64 -> 64."""
    if not 1 <= h <= MAX_HEAD_DIM:
        raise ValueError(f"head dim {h} is outside 1..{MAX_HEAD_DIM}")
    return max(16, 1 << (h - 1).bit_length())


def pallas_unsupported_reason(q: Queries, k: Keys) -> str | None:
    """Why this kernel cannot run these inputs, or None if it can."""
    if q.dtype not in _DTYPES or k.dtype != q.dtype:
        return f"dtypes {q.dtype}/{k.dtype} (needs float32, bfloat16 or float16, all equal)"
    h = q.shape[-1]
    if h > MAX_HEAD_DIM:
        return f"head dim {h} (the Pallas kernel takes at most {MAX_HEAD_DIM})"
    return None


@dataclasses.dataclass(frozen=True)
class _Static:
    """Everything static about one call; hashable, so it can key jit and custom_vjp."""

    causal: bool
    window: int | None
    segments: bool
    scale: float
    t: int  # real queries
    s: int  # real keys; query i sits at position s - t + i
    rep: int  # query heads per kv head
    blocks: BlockSizes
    interpret: bool
    mosaic: bool = False  # forward on the Mosaic GPU kernel (mosaic_gpu.py), Hopper only

    @property
    def offset(self) -> int:
        return self.s - self.t


# ------------------------------------------------------------------------ loop bounds
def _i32(x: Any) -> jax.Array:
    return jnp.asarray(x, jnp.int32)


def _clamp_range(
    lo: jax.Array, full_lo: jax.Array, full_hi: jax.Array, hi: jax.Array
) -> tuple[jax.Array, ...]:
    """Order the block indices lo <= full_lo <= full_hi <= hi (empty ranges allowed)."""
    hi = jnp.maximum(hi, lo)
    full_lo = jnp.clip(full_lo, lo, hi)
    full_hi = jnp.clip(full_hi, full_lo, hi)
    return lo, full_lo, full_hi, hi


def _key_blocks(
    p0: jax.Array, bq: int, bk: int, st: _Static, start_ref: Any, end_ref: Any
) -> tuple[jax.Array, ...]:
    """Key blocks a query block at positions [p0, p0 + bq) visits.

    Returns (lo, full_lo, full_hi, hi): blocks [lo, hi) hold every visible key, and
    [full_lo, full_hi) those that all queries of the block see unmasked.
    """
    last = st.s - 1
    p0c, p1c = jnp.minimum(p0, last), jnp.minimum(p0 + bq - 1, last)
    vis_lo, full_lo = _i32(0), _i32(0)
    vis_hi, full_hi = (p1c, p0c) if st.causal else (_i32(last), _i32(last))
    if st.window is not None:
        vis_lo = jnp.maximum(vis_lo, p0c - st.window + 1)
        full_lo = jnp.maximum(full_lo, p1c - st.window + 1)
    if st.segments:
        vis_lo = jnp.maximum(vis_lo, start_ref[p0c])
        full_lo = jnp.maximum(full_lo, start_ref[p1c])
        vis_hi = jnp.minimum(vis_hi, end_ref[p1c] - 1)
        full_hi = jnp.minimum(full_hi, end_ref[p0c] - 1)
    lo = lax.div(vis_lo, bk)
    hi = lax.div(jnp.maximum(vis_hi + 1, 0) + bk - 1, bk)
    full_lo = lax.div(full_lo + bk - 1, bk)
    full_hi = lax.div(jnp.maximum(full_hi + 1, 0), bk)
    return _clamp_range(lo, full_lo, full_hi, hi)


def _query_blocks(
    k0: jax.Array, bk: int, bq: int, st: _Static, start_ref: Any, end_ref: Any
) -> tuple[jax.Array, ...]:
    """Query blocks (indices into the t queries) a key block [k0, k0 + bk) visits.

    Same contract as `_key_blocks`, seen from the keys.
    """
    last, off = st.s - 1, st.offset
    k0c, k1c = jnp.minimum(k0, last), jnp.minimum(k0 + bk - 1, last)
    if st.causal:
        vis_lo, full_lo = jnp.maximum(k0, off), jnp.maximum(k1c, off)
    else:
        vis_lo, full_lo = _i32(off), _i32(off)
    vis_hi, full_hi = _i32(last), _i32(last)
    if st.window is not None:
        vis_hi = jnp.minimum(vis_hi, k1c + st.window - 1)
        full_hi = jnp.minimum(full_hi, k0c + st.window - 1)
    if st.segments:
        vis_lo = jnp.maximum(vis_lo, start_ref[k0c])
        full_lo = jnp.maximum(full_lo, start_ref[k1c])
        vis_hi = jnp.minimum(vis_hi, end_ref[k1c] - 1)
        full_hi = jnp.minimum(full_hi, end_ref[k0c] - 1)
    lo = lax.div(vis_lo - off, bq)
    hi = lax.div(jnp.maximum(vis_hi + 1 - off, 0) + bq - 1, bq)
    full_lo = lax.div(full_lo - off + bq - 1, bq)
    full_hi = lax.div(jnp.maximum(full_hi + 1 - off, 0), bq)
    return _clamp_range(lo, full_lo, full_hi, hi)


def _three_loops(
    bounds: tuple[jax.Array, ...], body: Callable[..., Any], carry: Any
) -> Any:
    """Masked blocks [lo, full_lo), unmasked [full_lo, full_hi), masked [full_hi, hi)."""
    lo, full_lo, full_hi, hi = bounds
    carry = lax.fori_loop(lo, full_lo, functools.partial(body, masked=True), carry)
    carry = lax.fori_loop(full_lo, full_hi, functools.partial(body, masked=False), carry)
    return lax.fori_loop(full_hi, hi, functools.partial(body, masked=True), carry)


# ------------------------------------------------------------------------ kernel pieces
def _dot(a: jax.Array, b: jax.Array, *, tb: bool = False) -> jax.Array:
    """a @ b (or a @ b^T) accumulated in float32; float32 inputs exactly (never TF32)."""
    precision = lax.Precision.HIGHEST if a.dtype == jnp.float32 else lax.Precision.DEFAULT
    dims = (((1,), (1 if tb else 0,)), ((), ()))
    return lax.dot_general(a, b, dims, precision=(precision, precision),
                           preferred_element_type=jnp.float32)


def _mask(
    q_pos: jax.Array, k_pos: jax.Array, q_doc: jax.Array | None, k_doc: jax.Array | None,
    st: _Static,
) -> jax.Array:
    """[bq, bk] True where the query may read the key (for edge blocks only)."""
    qi, kj = q_pos[:, None], k_pos[None, :]
    if st.causal:
        ok = kj <= qi
    else:
        ok = jnp.broadcast_to(kj < st.s, (q_pos.shape[0], k_pos.shape[0]))
    if st.window is not None:
        ok &= kj > qi - st.window
    if q_doc is not None:
        ok &= q_doc[:, None] == k_doc[None, :]
    return ok


def _split_refs(refs: tuple[Any, ...], segments: bool, n_out: int) -> tuple[Any, ...]:
    """(doc, start, end, *outputs) with None for the three document refs when absent."""
    if segments:
        return refs
    return (None, None, None, *refs[-n_out:])


# ------------------------------------------------------------------------ forward
def _fwd_kernel(q_ref, k_ref, v_ref, *refs, st: _Static):
    doc_ref, start_ref, end_ref, o_ref, lse_ref = _split_refs(refs, st.segments, 2)
    bq, bk = st.blocks.block_q, st.blocks.block_k
    nq = pl.num_programs(2)
    qb = nq - 1 - pl.program_id(2)  # heaviest (latest) query blocks first
    p0 = st.offset + qb * bq
    q_pos = p0 + jnp.arange(bq, dtype=jnp.int32)
    q_doc = doc_ref[pl.ds(p0, bq)] if st.segments else None
    q = q_ref[...]
    c = st.scale * _LOG2E

    def body(kb, carry, *, masked: bool):
        acc, m, row_sum = carry
        ks = pl.ds(kb * bk, bk)
        s = _dot(q, k_ref[ks, :], tb=True)  # unscaled: c is folded into exp2's argument
        if masked:
            k_doc = doc_ref[ks] if st.segments else None
            s = jnp.where(_mask(q_pos, kb * bk + jnp.arange(bk, dtype=jnp.int32),
                                q_doc, k_doc, st), s, -jnp.inf)
        m_new = jnp.maximum(m, s.max(axis=1) * c)  # c > 0: max commutes with scaling
        m_use = jnp.where(m_new == -jnp.inf, 0.0, m_new)  # rows with nothing seen yet
        alpha = jnp.exp2(m - m_use)
        p = jnp.exp2(s * c - m_use[:, None])  # one fused multiply-add per score
        row_sum = row_sum * alpha + p.sum(axis=1)
        v = v_ref[ks, :]
        acc = acc * alpha[:, None] + _dot(p.astype(v.dtype), v)
        return acc, m_new, row_sum

    h = q.shape[-1]
    carry = (jnp.zeros((bq, h), jnp.float32), jnp.full((bq,), -jnp.inf, jnp.float32),
             jnp.zeros((bq,), jnp.float32))
    bounds = _key_blocks(p0, bq, bk, st, start_ref, end_ref)
    acc, m, row_sum = _three_loops(bounds, body, carry)
    seen = row_sum > 0
    o_ref[...] = (acc / jnp.where(seen, row_sum, 1.0)[:, None]).astype(o_ref.dtype)
    # +inf for a row that saw nothing: the backward's exp2(s - lse) is then 0.
    lse_ref[...] = jnp.where(seen, m + jnp.log2(jnp.where(seen, row_sum, 1.0)), jnp.inf)


def _doc_specs(length: int) -> list[pl.BlockSpec]:
    """BlockSpecs of the three [b, L] document arrays; the batch is grid axis 0."""
    spec = pl.BlockSpec((None, length), lambda b, h, i: (b, 0))
    return [spec, spec, spec]


def _compiler_params(num_warps: int, num_stages: int) -> pltriton.CompilerParams:
    return pltriton.CompilerParams(num_warps=num_warps, num_stages=num_stages)


def _forward(
    q: jax.Array, k: jax.Array, v: jax.Array, docs: tuple[jax.Array, ...], st: _Static
) -> tuple[jax.Array, jax.Array]:
    if st.mosaic:
        return _mosaic_forward(q, k, v, docs, st)
    b, tp, n, h = q.shape
    sp = k.shape[1]
    bq = st.blocks.block_q
    rep = st.rep
    nq = tp // bq
    # The query-block axis is the slowest-varying one of the grid (the GPU starts low
    # program ids first) and runs backwards: the latest, heaviest blocks of every
    # (batch, head) start first and the light ones fill in at the end.
    in_specs = [
        pl.BlockSpec((None, bq, None, h), lambda bi, hi, i: (bi, nq - 1 - i, hi, 0)),
        pl.BlockSpec((None, sp, None, h), lambda bi, hi, i: (bi, 0, hi // rep, 0)),
        pl.BlockSpec((None, sp, None, h), lambda bi, hi, i: (bi, 0, hi // rep, 0)),
    ]
    if st.segments:
        in_specs += _doc_specs(docs[0].shape[1])
    out_specs = [
        pl.BlockSpec((None, bq, None, h), lambda bi, hi, i: (bi, nq - 1 - i, hi, 0)),
        pl.BlockSpec((None, None, bq), lambda bi, hi, i: (bi, hi, nq - 1 - i)),
    ]
    out_shape = [jax.ShapeDtypeStruct(q.shape, q.dtype),
                 jax.ShapeDtypeStruct((b, n, tp), jnp.float32)]
    o, lse = pl.pallas_call(
        functools.partial(_fwd_kernel, st=st),
        grid=(b, n, nq),
        in_specs=in_specs,
        out_specs=out_specs,
        out_shape=out_shape,
        compiler_params=_compiler_params(st.blocks.num_warps, st.blocks.num_stages),
        interpret=st.interpret,
        name="flash_attention_fwd",
    )(q, k, v, *docs)
    return o, lse


def _mosaic_forward(
    q: jax.Array, k: jax.Array, v: jax.Array, docs: tuple[jax.Array, ...], st: _Static
) -> tuple[jax.Array, jax.Array]:
    """The same (o, lse) from the warp-specialised Mosaic GPU kernel: the masks become
    one interval of keys per query row (`mosaic_gpu.row_bounds`)."""
    starts, ends = (docs[1], docs[2]) if st.segments else (None, None)
    lo, hi = mosaic_gpu.row_bounds(q.shape[1], st.s, st.offset, st.t, causal=st.causal,
                                   window=st.window, starts=starts, ends=ends,
                                   batch=q.shape[0])
    return mosaic_gpu.forward(q, k, v, lo, hi, scale=st.scale)


# ------------------------------------------------------------------------ backward
def _dkv_kernel(q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, *refs, st: _Static):
    doc_ref, start_ref, end_ref, dk_ref, dv_ref = _split_refs(refs, st.segments, 2)
    bq, bk = st.blocks.block_q_dkv, st.blocks.block_k_dkv
    k0 = pl.program_id(2) * bk
    k_pos = k0 + jnp.arange(bk, dtype=jnp.int32)
    k_doc = doc_ref[pl.ds(k0, bk)] if st.segments else None
    k, v = k_ref[...], v_ref[...]
    c = st.scale * _LOG2E
    bounds = _query_blocks(k0, bk, bq, st, start_ref, end_ref)

    def head(r, carry):
        # Scores are formed transposed, [keys, queries], so that every product below
        # takes its register operand untransposed (what the tensor cores want).
        def body(qb, carry, *, masked: bool):
            dk, dv = carry
            qs = pl.ds(qb * bq, bq)
            q, do = q_ref[qs, r, :], do_ref[qs, r, :]
            p_t = jnp.exp2(_dot(k, q, tb=True) * c - lse_ref[r, qs][None, :])
            if masked:
                p0 = st.offset + qb * bq
                q_doc = doc_ref[pl.ds(p0, bq)] if st.segments else None
                q_pos = p0 + jnp.arange(bq, dtype=jnp.int32)
                p_t = jnp.where(_mask(q_pos, k_pos, q_doc, k_doc, st).T, p_t, 0.0)
            dv = dv + _dot(p_t.astype(do.dtype), do)
            ds_t = p_t * (_dot(v, do, tb=True) - delta_ref[r, qs][None, :])
            dk = dk + _dot(ds_t.astype(q.dtype), q)
            return dk, dv

        return _three_loops(bounds, body, carry)

    h = k.shape[-1]
    zeros = jnp.zeros((bk, h), jnp.float32)
    dk, dv = lax.fori_loop(0, st.rep, head, (zeros, zeros))
    dk_ref[...] = (dk * st.scale).astype(dk_ref.dtype)
    dv_ref[...] = dv.astype(dv_ref.dtype)


def _dq_kernel(q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, *refs, st: _Static):
    doc_ref, start_ref, end_ref, dq_ref = _split_refs(refs, st.segments, 1)
    bq, bk = st.blocks.block_q_dq, st.blocks.block_k_dq
    nq = pl.num_programs(2)
    qb = nq - 1 - pl.program_id(2)
    p0 = st.offset + qb * bq
    q_pos = p0 + jnp.arange(bq, dtype=jnp.int32)
    q_doc = doc_ref[pl.ds(p0, bq)] if st.segments else None
    q, do = q_ref[...], do_ref[...]
    lse, delta = lse_ref[...], delta_ref[...]
    c = st.scale * _LOG2E

    def body(kb, dq, *, masked: bool):
        ks = pl.ds(kb * bk, bk)
        k = k_ref[ks, :]
        p = jnp.exp2(_dot(q, k, tb=True) * c - lse[:, None])
        if masked:
            k_doc = doc_ref[ks] if st.segments else None
            p = jnp.where(_mask(q_pos, kb * bk + jnp.arange(bk, dtype=jnp.int32),
                                q_doc, k_doc, st), p, 0.0)
        ds = p * (_dot(do, v_ref[ks, :], tb=True) - delta[:, None])
        return dq + _dot(ds.astype(k.dtype), k)

    bounds = _key_blocks(p0, bq, bk, st, start_ref, end_ref)
    dq = _three_loops(bounds, body, jnp.zeros(q.shape, jnp.float32))
    dq_ref[...] = (dq * st.scale).astype(dq_ref.dtype)


def _backward(
    q: jax.Array, k: jax.Array, v: jax.Array, docs: tuple[jax.Array, ...],
    o: jax.Array, lse: jax.Array, do: jax.Array, st: _Static,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    b, tp, n, h = q.shape
    sp, g = k.shape[1], k.shape[2]
    rep = st.rep
    # delta_i = sum_h o_ih do_ih, the softmax-backward row term: [b, n, t_pad] float32.
    delta = jnp.einsum("btnh,btnh->bnt", o.astype(jnp.float32), do.astype(jnp.float32))
    params = _compiler_params(st.blocks.num_warps_bwd, st.blocks.num_stages_bwd)
    doc_specs = _doc_specs(docs[0].shape[1]) if st.segments else []

    bq, bk = st.blocks.block_q_dkv, st.blocks.block_k_dkv
    group = pl.BlockSpec((None, tp, rep, h), lambda bi, gi, j: (bi, 0, gi, 0))
    group_rows = pl.BlockSpec((None, rep, tp), lambda bi, gi, j: (bi, gi, 0))
    kv_block = pl.BlockSpec((None, bk, None, h), lambda bi, gi, j: (bi, j, gi, 0))
    dk, dv = pl.pallas_call(
        functools.partial(_dkv_kernel, st=st),
        grid=(b, g, sp // bk),
        in_specs=[group, kv_block, kv_block, group, group_rows, group_rows, *doc_specs],
        out_specs=[kv_block, kv_block],
        out_shape=[jax.ShapeDtypeStruct(k.shape, k.dtype),
                   jax.ShapeDtypeStruct(v.shape, v.dtype)],
        compiler_params=params,
        interpret=st.interpret,
        name="flash_attention_dkv",
    )(q, k, v, do, lse, delta, *docs)

    bq, bk = st.blocks.block_q_dq, st.blocks.block_k_dq
    nq = tp // bq
    q_block = pl.BlockSpec((None, bq, None, h), lambda bi, hi, i: (bi, nq - 1 - i, hi, 0))
    row_block = pl.BlockSpec((None, None, bq), lambda bi, hi, i: (bi, hi, nq - 1 - i))
    kv_full = pl.BlockSpec((None, sp, None, h), lambda bi, hi, i: (bi, 0, hi // rep, 0))
    dq = pl.pallas_call(
        functools.partial(_dq_kernel, st=st),
        grid=(b, n, nq),
        in_specs=[q_block, kv_full, kv_full, q_block, row_block, row_block, *doc_specs],
        out_specs=q_block,
        out_shape=jax.ShapeDtypeStruct(q.shape, q.dtype),
        compiler_params=params,
        interpret=st.interpret,
        name="flash_attention_dq",
    )(q, k, v, do, lse, delta, *docs)
    return dq, dk, dv


# ------------------------------------------------------------------------ custom vjp
@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _flash(q, k, v, docs, st: _Static):
    return _forward(q, k, v, docs, st)[0]


def _flash_fwd(q, k, v, docs, st: _Static):
    o, lse = _forward(q, k, v, docs, st)
    return o, (q, k, v, docs, o, lse)


def _flash_bwd(st: _Static, res, do):
    q, k, v, docs, o, lse = res
    dq, dk, dv = _backward(q, k, v, docs, o, lse, do, st)
    return dq, dk, dv, None


_flash.defvjp(_flash_fwd, _flash_bwd)


# ------------------------------------------------------------------------ entry point
def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def _document_bounds(segment_ids: SegmentIds, length: int) -> tuple[jax.Array, ...]:
    """(doc index, first position of the doc, one past its last position), [b, length].

    Positions past the keys repeat the last key's values (padding rows, discarded).
    """
    doc = document_index(segment_ids)
    b, s = doc.shape
    pos = jnp.broadcast_to(jnp.arange(s, dtype=jnp.int32), (b, s))
    start = pos - positions_from_segments(segment_ids)
    ends_here = jnp.concatenate([doc[:, 1:] != doc[:, :-1], jnp.ones((b, 1), bool)], axis=1)
    end = lax.cummin(jnp.where(ends_here, pos + 1, s), axis=1, reverse=True)
    pad = ((0, 0), (0, length - s))
    return tuple(jnp.pad(x.astype(jnp.int32), pad, mode="edge") for x in (doc, start, end))


def _use_mosaic(forward: str, q: Any, k: Any, interpret: bool) -> bool:
    """Whether the forward runs on the Mosaic kernel; q, k at the kernels' head dim."""
    if forward not in ("auto", "triton", "mosaic"):
        raise ValueError(f"forward must be 'auto', 'triton' or 'mosaic', got {forward!r}")
    if forward == "triton":
        return False
    why_not = "interpret mode (no Mosaic GPU interpreter)" if interpret else \
        mosaic_gpu.mosaic_unsupported_reason(q, k)
    if forward == "mosaic" and why_not is not None:
        raise ValueError(f"the Mosaic GPU forward cannot run these inputs: {why_not}")
    if not interpret:
        announce("flash attention forward", "triton" if why_not else "mosaic",
                 why_not or "Hopper GPU, bf16/fp16, kernel head dim 64 or 128")
    return why_not is None


def flash_attention(
    q: Queries,
    k: Keys,
    v: Values,
    *,
    causal: bool = True,
    window: int | None = None,
    segment_ids: SegmentIds | None = None,
    scale: float | None = None,
    block_sizes: BlockSizes | None = None,
    interpret: bool = False,
    forward: str = "auto",
) -> AttentionOut:
    """softmax(q k^T * scale + mask) v with the masks of `reference.py`, differentiable.

    Args:
      q: [b, t, n, h]; k, v: [b, s, g, h], s >= t, n % g == 0, h <= 256.
      segment_ids: [b, s] document ids of the keys (the queries are the last t keys).
      scale: default h^-0.5 of the inputs' head dim h.
      block_sizes: tiles and launch parameters (defaults: `default_block_sizes`).
      interpret: run through the Pallas interpreter (any backend; slow, for tests).
      forward: the forward kernel: "triton" (this module's), "mosaic" (the warp-
        specialised Hopper kernel of `mosaic_gpu.py`: bf16 / fp16, kernel head dim 64
        or 128, compiled for a GPU of compute capability 9.x) or "auto" (mosaic where
        it can run, else triton). The backward is always this module's Triton kernels.
    Returns:
      [b, t, n, h] in q's dtype.

    Head dims that are not a power of two (the ladder's 48, 80, 96) are zero-padded to
    `kernel_head_dim(h)` in the same copy that pads the sequence: zero columns of q and
    k leave every q.k unchanged, those of v give output columns that are sliced off,
    and the scale stays h^-0.5. Gradients flow back through the pad and the slice, so
    they are exact too. The cost is the kernels' work at the padded dim (48 -> 64:
    4/3 of the products), one copy of q, k, v and do, and residuals at the padded dim;
    what it replaces at h = 48 was the dense-mask XLA reference. The kernels cannot
    take 48 as it is: Pallas' Triton lowering wants every array a power of two, and
    the Mosaic forward's 128-byte swizzled rows want 64 or 128.
    """
    check_attention_args(q, k, v, causal, window, segment_ids)
    why_not = pallas_unsupported_reason(q, k)
    if why_not is not None:
        raise ValueError(f"Pallas flash attention cannot run these inputs: {why_not}")
    b, t, n, h = q.shape
    s, g = k.shape[1], k.shape[2]
    if scale is not None and not scale > 0:
        raise ValueError(f"Pallas flash attention needs scale > 0 (the kernels fold it "
                         f"into the running max), got {scale}")
    hp = kernel_head_dim(h)
    if hp != h and not interpret:
        announce("flash attention head dim", f"{h} zero-padded to {hp}",
                 "the kernels' tiles are powers of two; exact, the scale stays h^-0.5")
    blocks = block_sizes or default_block_sizes(q.dtype, hp)
    mosaic = _use_mosaic(forward, jax.ShapeDtypeStruct((b, t, n, hp), q.dtype),
                         jax.ShapeDtypeStruct((b, s, g, hp), k.dtype), interpret)
    st = _Static(
        causal=causal, window=window, segments=segment_ids is not None,
        scale=float(h**-0.5 if scale is None else scale), t=t, s=s, rep=n // g,
        blocks=blocks, interpret=interpret, mosaic=mosaic,
    )
    q_mult, k_mult = blocks.q_multiple, blocks.k_multiple
    if mosaic:  # powers of two: the larger is a multiple of both
        mb = mosaic_gpu.MosaicBlocks()
        q_mult, k_mult = max(q_mult, mb.q_multiple), max(k_mult, mb.block_k)
    tp, sp = _round_up(t, q_mult), _round_up(s, k_mult)
    docs: tuple[Array, ...] = ()
    if segment_ids is not None:
        docs = _document_bounds(segment_ids, max(sp, s - t + tp))
    pad = lambda x, new: jnp.pad(x, ((0, 0), (0, new - x.shape[1]), (0, 0), (0, hp - h)))
    o = _flash(pad(q, tp), pad(k, sp), pad(v, sp), docs, st)
    return o[:, :t, :, :h]
