"""Flash-attention forward for Hopper GPUs (sm_90) in Pallas' Mosaic GPU backend.

The Triton forward of `pallas_gpu.py` runs at ~0.66x cuDNN on an H100: Triton's lowering
gives it neither TMA copies nor warp specialisation. This kernel has both. Each program
(CTA) owns 2 x `block_q` queries of one head and runs three warpgroups:

    warpgroup 2 (memory):  streams the K and V blocks the CTA needs, by TMA, into a ring
                           of `slots` shared-memory buffers (one barrier per slot says
                           "loaded", one "consumed by both compute warpgroups")
    warpgroups 0 and 1:    each owns block_q query rows: S = Q K^T and O += P V on wgmma,
                           the online softmax in registers (base 2, scale folded in)

Masks. Every mask of `reference.py` (causal, a left window, segment ids, key padding)
keeps, for query row i, one interval of key positions [lo_i, hi_i] (documents are
contiguous). Those bounds are computed outside the kernel (`_row_bounds`, plain XLA on
[b, t] int32), and from them each query block's visible key blocks [lo, hi) and the
ones it sees whole [full_lo, full_hi) (`_block_ranges`). A warpgroup visits only its
blocks and builds a mask only on the edge blocks; the memory warpgroup loads the union
of the two warpgroups' ranges. So a window costs O(T W) and packed documents less than
one long one, as in the Triton kernel.

Contract: that of `pallas_gpu._forward` (o and the base-2 log-sum-exp [b, n, t] of the
scaled logits, +inf for a row that sees no key), so the Triton backward runs on its
outputs. Inputs: bf16 or fp16, head dim 64 or 128, t a multiple of 2 x block_q and s
of block_k (the caller pads). Forward only; GPU only (no interpreter for Mosaic
GPU in jax 0.10), tested on the GPU machine (tests/kernels/test_attention_mosaic.py).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

_LOG2E = math.log2(math.e)


@dataclasses.dataclass(frozen=True)
class MosaicBlocks:
    """Tiles of the Mosaic forward: block_q rows per compute warpgroup (two per CTA),
    block_k keys per step, `slots` K/V buffers in flight."""

    block_q: int = 64
    block_k: int = 128
    slots: int = 2

    @property
    def q_multiple(self) -> int:
        return 2 * self.block_q


def mosaic_unsupported_reason(q: jax.Array, k: jax.Array) -> str | None:
    """Why this kernel cannot run these inputs here, or None if it can."""
    if q.dtype not in (jnp.bfloat16, jnp.float16) or k.dtype != q.dtype:
        return f"dtypes {q.dtype}/{k.dtype} (needs bfloat16 or float16, all equal)"
    if q.shape[-1] not in (64, 128):  # 256 would not fit its K/V slots in shared memory
        return f"head dim {q.shape[-1]} (needs 64 or 128)"
    dev = jax.devices()[0]
    if dev.platform != "gpu":
        return f"backend {dev.platform} (Mosaic GPU needs a GPU)"
    cc = getattr(dev, "compute_capability", None)
    if cc is None or not str(cc).startswith("9."):
        return f"compute capability {cc} (the kernel uses Hopper's wgmma: needs 9.x)"
    return None


# ----------------------------------------------------------------------- bounds (XLA)
def row_bounds(t_pad: int, s: int, offset: int, t: int, *, causal: bool,
               window: int | None, starts: jax.Array | None, ends: jax.Array | None,
               batch: int) -> tuple[jax.Array, jax.Array]:
    """Per query row (padded to t_pad), the first and last key position it may read:
    ([b, t_pad], [b, t_pad]) int32. `starts` / `ends`: [b, >= offset + t_pad] first
    position / one past the last of each position's document (None: no segments).
    Padding rows (i >= t) copy the last real row, so they widen no block range."""
    i = jnp.minimum(jnp.arange(t_pad, dtype=jnp.int32), t - 1)
    pos = jnp.broadcast_to(offset + i, (batch, t_pad))
    lo = jnp.zeros((batch, t_pad), jnp.int32)
    hi = jnp.full((batch, t_pad), s - 1, jnp.int32)
    if causal:
        hi = jnp.minimum(hi, pos)
    if window is not None:
        lo = jnp.maximum(lo, pos - window + 1)
    if starts is not None:
        lo = jnp.maximum(lo, jnp.take_along_axis(starts, pos, axis=1))
        hi = jnp.minimum(hi, jnp.take_along_axis(ends, pos, axis=1) - 1)
    return lo, hi


def block_ranges(lo: jax.Array, hi: jax.Array, bq: int, bk: int) -> jax.Array:
    """[b, t_pad // (2 bq), 10] int32 per CTA: the union range of key blocks (first,
    end) and, per warpgroup, (lo, full_lo, full_hi, hi): blocks [lo, hi) hold every key
    a row of its bq queries reads, [full_lo, full_hi) only keys that all its rows read."""
    b, tp = lo.shape
    lo_q, hi_q = lo.reshape(b, tp // bq, bq), hi.reshape(b, tp // bq, bq)
    first = jnp.min(lo_q, axis=-1) // bk
    end = (jnp.maximum(jnp.max(hi_q, axis=-1), -1) + bk) // bk
    end = jnp.maximum(end, first)
    full_lo = jnp.clip(-(-jnp.max(lo_q, axis=-1) // bk), first, end)
    full_hi = jnp.clip((jnp.min(hi_q, axis=-1) + 1) // bk, full_lo, end)
    per_q = jnp.stack([first, full_lo, full_hi, end], axis=-1)  # [b, nq, 4]
    pairs = per_q.reshape(b, tp // (2 * bq), 8)
    union = jnp.stack([jnp.minimum(pairs[..., 0], pairs[..., 4]),
                       jnp.maximum(pairs[..., 3], pairs[..., 7])], axis=-1)
    return jnp.concatenate([union, pairs], axis=-1).astype(jnp.int32)


# ----------------------------------------------------------------------- the kernel
def forward(q: jax.Array, k: jax.Array, v: jax.Array, lo: jax.Array, hi: jax.Array,
            *, scale: float, blocks: MosaicBlocks = MosaicBlocks()
            ) -> tuple[jax.Array, jax.Array]:
    """(o [b, t, n, h], lse [b, n, t] float32, base 2) of softmax(q k^T scale) v over
    the keys [lo_i, hi_i] of each query row (`row_bounds`); t % (2 block_q) == 0 and
    s % block_k == 0 (padded by the caller)."""
    import jax.experimental.pallas.mosaic_gpu as plgpu

    b, tp, n, h = q.shape
    sp, g = k.shape[1], k.shape[2]
    bq, bk, slots = blocks.block_q, blocks.block_k, blocks.slots
    if tp % (2 * bq) or sp % bk:
        raise ValueError(f"Mosaic attention: t={tp} must be a multiple of {2 * bq} and "
                         f"s={sp} of {bk} (pad first)")
    rep = n // g
    dtype = q.dtype
    c = scale * _LOG2E
    ranges = block_ranges(lo, hi, bq, bk)
    n_ctas = tp // (2 * bq)
    row = plgpu.Layout.WGMMA.reduce(1)

    def kernel(q_ref, k_ref, v_ref, lo_ref, hi_ref, rng_ref, o_ref, lse_ref, scoped):
        (qo_smem, k_smem, v_smem, lo_smem, hi_smem, lse_smem), loaded, consumed = scoped
        q_bar, lo_bar, hi_bar, k_bar, v_bar = loaded
        k_done, v_done = consumed
        bi, head = lax.axis_index("batch"), lax.axis_index("heads")
        cta = n_ctas - 1 - lax.axis_index("q_seq")  # the latest (heaviest) rows first
        wg = lax.axis_index("wg")
        first, end = rng_ref[bi, cta, 0], rng_ref[bi, cta, 1]
        n_steps = end - first

        @pl.when(wg < 2)
        def _compute():
            plgpu.set_max_registers(232, action="increase")
            r0 = cta * (2 * bq) + wg * bq
            rows = (bi, pl.ds(r0, bq), head)
            plgpu.copy_gmem_to_smem(q_ref.at[rows], qo_smem.at[wg], q_bar.at[wg])
            plgpu.copy_gmem_to_smem(lo_ref.at[bi, pl.ds(r0, bq)], lo_smem.at[wg],
                                    lo_bar.at[wg])
            plgpu.copy_gmem_to_smem(hi_ref.at[bi, pl.ds(r0, bq)], hi_smem.at[wg],
                                    hi_bar.at[wg])
            base = 2 + 4 * wg
            my_lo, my_full_lo = rng_ref[bi, cta, base], rng_ref[bi, cta, base + 1]
            my_full_hi, my_hi = rng_ref[bi, cta, base + 2], rng_ref[bi, cta, base + 3]
            plgpu.barrier_wait(q_bar.at[wg])
            plgpu.barrier_wait(lo_bar.at[wg])
            plgpu.barrier_wait(hi_bar.at[wg])
            lo_row = plgpu.load(lo_smem.at[wg], (), layout=row)
            hi_row = plgpu.load(hi_smem.at[wg], (), layout=row)
            q_smem = qo_smem.at[wg]

            def skip(j, carry):  # a step of the CTA's range outside this warpgroup's
                slot = lax.rem(j, slots)
                plgpu.barrier_wait(k_bar.at[slot])
                plgpu.barrier_arrive(k_done.at[slot])
                plgpu.barrier_wait(v_bar.at[slot])
                plgpu.barrier_arrive(v_done.at[slot])
                return carry

            def step(j, carry, *, masked: bool):
                acc, m, row_sum = carry
                slot = lax.rem(j, slots)
                plgpu.barrier_wait(k_bar.at[slot])

                def qk(acc_ref):
                    plgpu.wgmma(acc_ref, q_smem, k_smem.at[slot].transpose((1, 0)))
                    return acc_ref[...]

                s = pl.run_scoped(qk, plgpu.ACC((bq, bk), jnp.float32))
                plgpu.barrier_arrive(k_done.at[slot])
                if masked:
                    kpos = (first + j) * bk + plgpu.broadcasted_iota(
                        jnp.int32, (bq, bk), 1, layout=plgpu.Layout.WGMMA)
                    ok = ((kpos >= lax.broadcast_in_dim(lo_row, (bq, bk), [0]))
                          & (kpos <= lax.broadcast_in_dim(hi_row, (bq, bk), [0])))
                    s = jnp.where(ok, s, -jnp.inf)
                m_new = jnp.maximum(m, s.max(axis=1) * c)
                m_use = jnp.where(m_new == -jnp.inf, 0.0, m_new)  # nothing seen yet
                alpha = jnp.exp2(m - m_use)
                p = jnp.exp2(s * c - lax.broadcast_in_dim(m_use, (bq, bk), [0]))
                row_sum = row_sum * alpha + p.sum(axis=1)
                acc = acc * lax.broadcast_in_dim(alpha, acc.shape, [0])
                p16 = p.astype(dtype)
                plgpu.barrier_wait(v_bar.at[slot])

                def pv(acc_ref):
                    plgpu.wgmma(acc_ref, p16, v_smem.at[slot])

                acc = pl.run_state(pv)(plgpu.ACC.init(acc))
                plgpu.barrier_arrive(v_done.at[slot])
                return acc, m_new, row_sum

            acc = plgpu.layout_cast(jnp.zeros((bq, h), jnp.float32), plgpu.Layout.WGMMA)
            m = plgpu.layout_cast(jnp.full((bq,), -jnp.inf, jnp.float32), row)
            row_sum = plgpu.layout_cast(jnp.zeros((bq,), jnp.float32), row)
            rel = lambda x: x - first  # noqa: E731  block index -> step of the ring
            lax.fori_loop(0, rel(my_lo), skip, 0)
            carry = (acc, m, row_sum)
            carry = lax.fori_loop(rel(my_lo), rel(my_full_lo),
                                  lambda j, cr: step(j, cr, masked=True), carry)
            carry = lax.fori_loop(rel(my_full_lo), rel(my_full_hi),
                                  lambda j, cr: step(j, cr, masked=False), carry)
            carry = lax.fori_loop(rel(my_full_hi), rel(my_hi),
                                  lambda j, cr: step(j, cr, masked=True), carry)
            lax.fori_loop(rel(my_hi), n_steps, skip, 0)
            acc, m, row_sum = carry
            seen = row_sum > 0
            l_safe = jnp.where(seen, row_sum, 1.0)
            acc = acc / lax.broadcast_in_dim(l_safe, acc.shape, [0])
            q_smem[...] = acc.astype(dtype)
            lse_smem.at[wg][...] = jnp.where(seen, m + jnp.log(l_safe) * (1 / math.log(2)),
                                             jnp.inf)
            plgpu.commit_smem()
            plgpu.copy_smem_to_gmem(q_smem, o_ref.at[rows])
            plgpu.copy_smem_to_gmem(lse_smem.at[wg], lse_ref.at[bi, head, pl.ds(r0, bq)])
            plgpu.wait_smem_to_gmem(0)

        @pl.when(wg == 2)
        def _memory():
            plgpu.set_max_registers(40, action="decrease")
            kv_head = lax.div(head, jnp.int32(rep))

            def load(j, slot):
                blk = (bi, pl.ds((first + j) * bk, bk), kv_head)
                plgpu.copy_gmem_to_smem(k_ref.at[blk], k_smem.at[slot], k_bar.at[slot])
                plgpu.copy_gmem_to_smem(v_ref.at[blk], v_smem.at[slot], v_bar.at[slot])

            for i in range(slots):
                @pl.when(i < n_steps)
                def _first_loads(i=i):
                    load(i, i)

            @pl.loop(slots, jnp.maximum(n_steps, slots))
            def _refill(j):
                slot = lax.rem(j, slots)
                plgpu.barrier_wait(k_done.at[slot])
                plgpu.barrier_wait(v_done.at[slot])
                load(j, slot)

    def entry(q_ref, k_ref, v_ref, lo_ref, hi_ref, rng_ref, o_ref, lse_ref):
        tiles = (plgpu.TilingTransform((8, 64)), plgpu.SwizzleTransform(128))
        smem = (
            plgpu.SMEM((2, bq, h), dtype, transforms=tiles),
            plgpu.SMEM((slots, bk, h), dtype, transforms=tiles),
            plgpu.SMEM((slots, bk, h), dtype, transforms=tiles),
            plgpu.SMEM((2, bq), jnp.int32),
            plgpu.SMEM((2, bq), jnp.int32),
            plgpu.SMEM((2, bq), jnp.float32),
        )
        loaded = (plgpu.Barrier(num_barriers=2), plgpu.Barrier(num_barriers=2),
                  plgpu.Barrier(num_barriers=2), plgpu.Barrier(num_barriers=slots),
                  plgpu.Barrier(num_barriers=slots))
        consumed = (plgpu.Barrier(num_arrivals=2, num_barriers=slots),) * 2
        pl.run_scoped(
            lambda *scoped: kernel(q_ref, k_ref, v_ref, lo_ref, hi_ref, rng_ref, o_ref,
                                   lse_ref, scoped),
            smem, loaded, consumed, collective_axes="wg")

    o, lse = plgpu.kernel(
        entry,
        out_type=(jax.ShapeDtypeStruct(q.shape, dtype),
                  jax.ShapeDtypeStruct((b, n, tp), jnp.float32)),
        grid=(n, n_ctas, b),
        grid_names=("heads", "q_seq", "batch"),
        num_threads=3,
        thread_name="wg",
        compiler_params=plgpu.CompilerParams(approx_math=True),
    )(q, k, v, lo, hi, ranges)
    return o, lse

