"""Chunked gated delta rule as Pallas kernels for NVIDIA GPUs (Triton lowering).

Why Triton and not Mosaic GPU: the work is many small (64 x 64, 64 x 128) products with
masks, exps and reductions between them, in a sequential loop over chunks that carries
a state in registers. Pallas' Triton lowering expresses exactly that (register tensors,
`fori_loop`, strided loads from whole-array refs) and lets Triton pick the MMA layouts;
Mosaic GPU wants warpgroup-sized tiles, explicit shared-memory pipelines and barriers,
much more code for this shape of problem. It is also what fla uses, so the comparison
is like for like.

Layout: the inputs stay [b, t, n, d] (no transposes); every kernel takes whole-array
refs and indexes them with its program ids. Four kernels (algebra in pallas_common.py):

    wy          grid (chunk, head, batch), parallel. Per chunk: K K^T, the (I + M)^-1
                inverse, W = A (beta d K), U = A (beta V), P = scale (Q K^T) Gam.
                Writes W, P (and, under differentiation, A [b, t, n, C]) in the input
                dtype, then U on V-blocks of `block_v_wy`, so that no [C, V] fp32 tile
                is live beside W and P (offline sm_90a compile, bf16: spills 108 B ->
                0 at K = V = 128 and 408 B -> 0 at the release's padded 128 / 256).
                With `wy_block` (opt-in) A, W, U and P are formed and stored on 16-
                or 32-row blocks (`pallas_common.blocked_wy`, no block put back
                together): a fraction of the inverse's products, but on tiles too
                small for wgmma. Correct on an H100 and slower there (see
                docs/performance.md, "Opt-in, slower"; offline sm_90a the whole-chunk
                kernel runs its inverse on wgmma with no spills, wy_block=32 falls
                back to mma.sync and spills 252 B per thread), so it is off.
    state_fwd   grid (V-block, head, batch); loops over the chunks carrying the fp32
                state block S [K, BV] in registers; writes O and the final state, and,
                under differentiation only, the states entering each chunk
                ([b, n, chunks, K, V], input dtype, as fla) and V' ([b, t, n, V]).
    state_bwd   same grid, chunks in reverse, carrying dS [K, BV]; writes dV' and dS
                after each chunk (input dtype) and dS before the first (d initial state).
    grads       two kernels, grid (chunk, head, batch), parallel, on the forward's saved
                A, V' and states. `grads_state` (through O and the state update) writes
                dq and the dk part (input dtype) and dgamma part (fp32) through P, d, e,
                c; `grads_wy` (through V' = U - W S and the inverse) adds its dk and
                dgamma parts and writes dk, dv and dbeta. `grads_state` is memory-bound
                (8 warps, 3 stages); `grads_wy` was latency-bound (Nsight Compute: 20% of
                issue slots, one program per SM waiting on loads and on a chain of small
                products), so its tail keeps few tiles live and it runs 4 warps, 2 stages:
                two programs per SM (H100, B=4 T=4096 H=32 K=V=128: both kernels 1.68 ->
                1.30 ms; bd5ac4d:benchmarks/results/h100_gdn_grads_wy.json). Both walk V in
                blocks of BV, in a loop rather than unrolled
                (`pallas_common.over_v_blocks`; offline sm_90a, bf16, at the release's
                padded 128 / 256: spills 412 / 532 B -> 104 / 212 B; at 128 / 128
                grads_wy 260 -> 132 B). Before the 4-warp grads_wy, one kernel doing both
                halves (so that dk, dgamma of the first stay on chip and the chunk's
                states are read once) was tried and is no faster: 1.656 vs 1.681 ms at
                B=4 T=4096 H=32 K=V=128, 2.608 vs 2.561 ms fwd+bwd at the release's
                heads, B=1 T=8192 (H100, 3 stages; offline sm_90a it spills 648-736 B:
                the first half's [C, K] dk is live across the second half's loop;
                04509a4:benchmarks/results/h100_gdn_fused_grads.json; with the two halves'
                V-walks split into four loops of fewer accumulators it still spilled
                460 B and took 2.1 ms). Nor were 2 to 16 chunks
                per program in a loop the pipeliner prefetches across (1.89 ms;
                3a80274:benchmarks/results/h100_gdn_grads_chunks.json), 4 / 16 warps or
                4 stages (8f03655:benchmarks/results/h100_gdn_grads_sweep.json).

V-blocks (`default_block_v`): the state passes and the gradient kernels walk V in blocks
of 64, the state passes (bf16) in 32 where batch x heads leaves fewer than 128 programs
at 64; the state passes run 4 warps for bf16. Measured on an H100 (one run, timing.py's
method; numbers in `default_block_v`): against the former defaults (128 wide, or 64
where programs were few; 8 warps), forward 1.000 -> 0.970 ms at B=4 T=4096 H=32
K=V=128, 1.697 -> 1.361 at B=1 T=16384, and the gradient kernels 2.02 -> 1.80 ms.
Writing O from a separate kernel parallel over chunks (fla's split) was slower (state
pass 1.03 ms vs 0.78 at BV = 64): the per-chunk states it must write are twice the size
of the inputs.

Memory plan: see pallas_common.py (residuals W, P, A, V', per-chunk states).
XLA does the O(t) glue: padding, the chunk-local cumsum of g (and, by autodiff, the
reverse cumsum that turns dgamma into dg), document indices, cropping.

The reverse state pass forming `grads_state`'s gradients itself (from dS on chip, so
that dS is neither written nor read; all of V in one program) was tried: at K = V = 128
it spills 2.2-3.1 KB per thread and took 4.84 ms against 0.50 + 0.53 ms
(bd5ac4d:benchmarks/results/h100_gdn_fused_state_bwd.json).

Status: correct in interpret mode on CPU (tests/kernels/test_gdn_pallas.py) and on an
H100 (the GPU cases of the same file); timed by benchmarks/gdn.py (results and ratio
tables in benchmarks/results/ and docs/performance.md).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from hybrid_jax.kernels.gdn import pallas_common as pc
from hybrid_jax.kernels.gdn.reference import check_shapes
from hybrid_jax.typing import GdnBeta, GdnGate, GdnQK, GdnState, GdnV, SegmentIds

F32 = jnp.float32


def _ids():
    return pl.program_id(0), pl.program_id(1), pl.program_id(2)


def _rows(ci, chunk: int):
    return pl.ds(pl.multiple_of(ci * chunk, chunk), chunk)


def _cols(j, width: int):
    """Columns of V-block j (a Python int, or traced inside a loop)."""
    start = j * width if isinstance(j, int) else pl.multiple_of(j * width, width)
    return pl.ds(start, width)


def _load_chunk_scalars(beta_ref, gamma_ref, rel_ref, b, rows, h):
    beta = None if beta_ref is None else beta_ref[b, rows, h]
    return beta, pc.decays(gamma_ref[b, rows, h], rel_ref[b, rows])


def _store_lower(ref, blocks, bi, rows, h):
    """Store a chunk's [C, C] matrix given by its lower blocks (`pc.BlockedWY`) into
    ref [b, t, n, C] at row blocks `rows`; the blocks above the diagonal are zeros."""
    sb = blocks[0, 0].shape[0]
    for i, r in enumerate(rows):
        for j in range(len(rows)):
            x = blocks[i, j] if j <= i else jnp.zeros((sb, sb), F32)
            ref[bi, r, h, pl.ds(j * sb, sb)] = x.astype(ref.dtype)


class _Triton:
    """The Backend of pallas_common.make_core for the Triton lowering."""

    def _call(self, kernel, cfg: pc.KernelConfig, grid, out_shape, *args,
              num_warps: int, num_stages: int = 1):
        return pl.pallas_call(
            kernel, out_shape=out_shape, grid=grid, interpret=cfg.interpret,
            compiler_params=pltriton.CompilerParams(num_warps=num_warps,
                                                    num_stages=num_stages),
        )(*args)

    # ---------------------------------------------------------------- forward
    def wy(self, cfg, q, k, v, beta, gamma, rel, *, save: bool):
        b, t, n, dk = q.shape
        dv, c = v.shape[-1], cfg.chunk
        bu = min(cfg.block_v_wy or dv, dv)

        def gdn_wy_kernel(q_ref, k_ref, v_ref, beta_ref, gamma_ref, rel_ref, w_ref, u_ref,
                          p_ref, *a_ref):
            ci, h, bi = _ids()
            if cfg.wy_block:  # on row blocks, each stored where it belongs
                rows, blocks = self._chunk_blocks(cfg, q_ref, k_ref, beta_ref, gamma_ref,
                                                  rel_ref, ci, h, bi)
                f = pc.blocked_wy(blocks, cfg, w=True, scores=True)
                for i, r in enumerate(rows):
                    w_ref[bi, r, h, :] = f.w[i].astype(w_ref.dtype)
                _store_lower(p_ref, f.p, bi, rows, h)
                if save:
                    _store_lower(a_ref[0], f.a, bi, rows, h)
                for j in range(dv // bu):
                    cols = pl.ds(j * bu, bu)
                    us = pc.blocked_values(f.a, [v_ref[bi, r, h, cols] for r in rows],
                                           [x.beta for x in blocks], cfg)
                    for r, u in zip(rows, us):
                        u_ref[bi, r, h, cols] = u.astype(u_ref.dtype)
                return
            rows = _rows(ci, c)
            beta, dec = _load_chunk_scalars(beta_ref, gamma_ref, rel_ref, bi, rows, h)
            w, p, a = pc.wy_forward(q_ref[bi, rows, h, :], k_ref[bi, rows, h, :], beta, dec,
                                    cfg)
            w_ref[bi, rows, h, :] = w.astype(w_ref.dtype)
            p_ref[bi, rows, h, :] = p.astype(p_ref.dtype)
            if save:
                a_ref[0][bi, rows, h, :] = a.astype(a_ref[0].dtype)
            for j in range(dv // bu):  # U in V-blocks: only one [C, BU] tile live at a time
                cols = pl.ds(j * bu, bu)
                u = pc.wy_values(a, v_ref[bi, rows, h, cols], beta, cfg)
                u_ref[bi, rows, h, cols] = u.astype(u_ref.dtype)

        mm = cfg.mm_dtype
        shapes = [jax.ShapeDtypeStruct((b, t, n, dk), mm),
                  jax.ShapeDtypeStruct((b, t, n, dv), mm),
                  jax.ShapeDtypeStruct((b, t, n, c), mm)]
        if save:
            shapes.append(jax.ShapeDtypeStruct((b, t, n, c), mm))
        outs = self._call(gdn_wy_kernel, cfg, (t // c, n, b), shapes,
                          q, k, v, beta, gamma, rel, num_warps=cfg.num_warps)
        return outs[0], outs[1], outs[2], (outs[3] if save else None)

    def _forward_pass(self, cfg, name: str, step, inputs, h0, *, dv: int, bv: int,
                      save: bool, num_warps: int):
        """The forward state pass shared by `state_fwd` and `fused_forward`: grid
        (V-block, head, batch), a loop over the chunks carrying the fp32 state block
        [K, BV]; writes O and the final state and, when `save`, the states entering each
        chunk and V'. `step(in_refs, bi, h, rows, cols, s) -> (O, next state, V')` is one
        chunk. Returns (O, final state, states or None, V' or None)."""
        b, t, n, dk = inputs[0].shape
        num_chunks = t // cfg.chunk
        n_in = len(inputs)

        def kernel(*refs):
            in_refs, (h0_ref, o_ref, ht_ref) = refs[:n_in], refs[n_in:n_in + 3]
            j, h, bi = _ids()
            cols = pl.ds(pl.multiple_of(j * bv, bv), bv)

            def body(ci, s):
                rows = _rows(ci, cfg.chunk)
                if save:
                    states_ref, vn_ref = refs[n_in + 3:]
                    states_ref[bi, h, ci, :, cols] = s.astype(states_ref.dtype)
                o, s, v_new = step(in_refs, bi, h, rows, cols, s)
                o_ref[bi, rows, h, cols] = o.astype(o_ref.dtype)
                if save:
                    vn_ref[bi, rows, h, cols] = v_new.astype(vn_ref.dtype)
                return s

            ht_ref[bi, h, :, cols] = lax.fori_loop(0, num_chunks, body,
                                                   h0_ref[bi, h, :, cols])

        kernel.__name__ = kernel.__qualname__ = name  # the kernel's name in profiles
        shapes = [jax.ShapeDtypeStruct((b, t, n, dv), inputs[0].dtype),
                  jax.ShapeDtypeStruct((b, n, dk, dv), F32)]
        if save:
            shapes += [jax.ShapeDtypeStruct((b, n, num_chunks, dk, dv), cfg.mm_dtype),
                       jax.ShapeDtypeStruct((b, t, n, dv), cfg.mm_dtype)]
        outs = self._call(kernel, cfg, (dv // bv, n, b), shapes, *inputs, h0,
                          num_warps=num_warps, num_stages=cfg.num_stages_state)
        return (outs[0], outs[1], *(outs[2:] if save else (None, None)))

    def state_fwd(self, cfg, q, k, w, u, p, gamma, rel, h0, *, save: bool):
        dv = u.shape[-1]

        def step(refs, bi, h, rows, cols, s):
            q_ref, k_ref, w_ref, u_ref, p_ref, gamma_ref, rel_ref = refs
            _, dec = _load_chunk_scalars(None, gamma_ref, rel_ref, bi, rows, h)
            return pc.state_forward(
                q_ref[bi, rows, h, :], k_ref[bi, rows, h, :], w_ref[bi, rows, h, :],
                u_ref[bi, rows, h, cols], p_ref[bi, rows, h, :], dec, s, cfg)

        return self._forward_pass(cfg, "gdn_state_fwd_kernel", step,
                                  (q, k, w, u, p, gamma, rel), h0, dv=dv,
                                  bv=min(cfg.block_v, dv), save=save,
                                  num_warps=cfg.num_warps_state)

    def fused_forward(self, cfg, q, k, v, beta, gamma, rel, h0, *, save: bool):
        """The forward for cfg.fused_fwd / fused_save: a kernel parallel over chunks
        reads q, k and writes A and P ([b, t, n, C] each); one state pass reads q, k, v,
        A, P and forms V' = A (beta (V - d (K S))) on chip (`pc.fused_state_forward`).
        Against `wy` + `state_fwd`: V is read once instead of twice, and W [.., K] and
        U [.., V] are neither written nor read (at B4 T4096 H32 K=V=128 bf16, 0.4 GB
        less traffic), for the same loads per chunk in the state pass (A [C, C] for
        W [C, K]). `save` (under differentiation): the state pass also writes the
        states entering each chunk and V', as `state_fwd` does. Returns (O, final
        state, A, P, states or None, V' or None). Timed against `wy` + `state_fwd`:
        benchmarks/results/h100_gdn_fused_default.json. Offline sm_90a, bf16, spill stores
        per thread under differentiation (benchmarks/results/
        offline_gdn_fused_train_compile.txt): B4 H32 K=V=128, this state pass 296 B
        (`state_fwd`: 268 B), the reverse pass reading A 764 B at its default 128-wide
        V-block (reading W: 352 B; at 64: 464 B); release heads B1, 4 / 536 B (0 /
        556 B)."""
        b, t, n, dk = q.shape
        dv, c = v.shape[-1], cfg.chunk
        bv = min(cfg.block_v_fused or cfg.block_v, dv)
        num_chunks = t // c

        def gdn_inverse_kernel(q_ref, k_ref, beta_ref, gamma_ref, rel_ref, a_ref, p_ref):
            ci, h, bi = _ids()
            if cfg.wy_block:
                rows, blocks = self._chunk_blocks(cfg, q_ref, k_ref, beta_ref, gamma_ref,
                                                  rel_ref, ci, h, bi)
                f = pc.blocked_wy(blocks, cfg, w=False, scores=True)
                _store_lower(a_ref, f.a, bi, rows, h)
                _store_lower(p_ref, f.p, bi, rows, h)
                return
            rows = _rows(ci, c)
            beta, dec = _load_chunk_scalars(beta_ref, gamma_ref, rel_ref, bi, rows, h)
            a_ref[bi, rows, h, :] = pc.chunk_inverse(k_ref[bi, rows, h, :], beta, dec,
                                                     cfg).astype(a_ref.dtype)
            p_ref[bi, rows, h, :] = pc.chunk_scores(q_ref[bi, rows, h, :],
                                                    k_ref[bi, rows, h, :], dec,
                                                    cfg).astype(p_ref.dtype)

        a, p = self._call(gdn_inverse_kernel, cfg, (num_chunks, n, b),
                          [jax.ShapeDtypeStruct((b, t, n, c), cfg.mm_dtype)] * 2,
                          q, k, beta, gamma, rel, num_warps=cfg.num_warps)

        def step(refs, bi, h, rows, cols, s):
            q_ref, k_ref, v_ref, a_ref, p_ref, beta_ref, gamma_ref, rel_ref = refs
            beta, dec = _load_chunk_scalars(beta_ref, gamma_ref, rel_ref, bi, rows, h)
            return pc.fused_state_forward(
                q_ref[bi, rows, h, :], k_ref[bi, rows, h, :], v_ref[bi, rows, h, cols],
                a_ref[bi, rows, h, :], p_ref[bi, rows, h, :], beta, dec, s, cfg)

        o, ht, states, v_new = self._forward_pass(
            cfg, "gdn_fused_fwd_kernel", step, (q, k, v, a, p, beta, gamma, rel), h0,
            dv=dv, bv=bv, save=save, num_warps=cfg.num_warps_fused or cfg.num_warps_state)
        return o, ht, a, p, states, v_new

    @staticmethod
    def _chunk_blocks(cfg, q_ref, k_ref, beta_ref, gamma_ref, rel_ref, ci, h, bi):
        """The row blocks of chunk ci (cfg.wy_block rows each): their row slices and
        their loaded q, k, beta, gamma, rel (`pc.ChunkBlock`)."""
        sb = cfg.wy_block
        rows = [pl.ds(pl.multiple_of(ci * cfg.chunk + i * sb, sb), sb)
                for i in range(cfg.chunk // sb)]
        return rows, [pc.ChunkBlock(q_ref[bi, r, h, :], k_ref[bi, r, h, :],
                                    beta_ref[bi, r, h], gamma_ref[bi, r, h], rel_ref[bi, r])
                      for r in rows]

    # --------------------------------------------------------------- backward
    def state_bwd(self, cfg, q, k, w, p, gamma, rel, do, dht, *, a=None, beta=None):
        """`w` None (after `fused_forward`): W^T dV' from A and beta instead."""
        b, t, n, dk = q.shape
        dv, c = do.shape[-1], cfg.chunk
        bv = min(cfg.block_v_state_bwd or cfg.block_v, dv)
        num_chunks = t // c
        from_a = w is None

        def gdn_state_bwd_kernel(q_ref, k_ref, w_ref, p_ref, gamma_ref, rel_ref, do_ref,
                                 dht_ref, *refs):
            # from_a: w_ref holds A [b, t, n, C] and beta comes first among the refs
            beta_ref, (dstates_ref, dvn_ref, dh0_ref) = (refs[0], refs[1:]) if from_a \
                else (None, refs)
            j, h, bi = _ids()
            cols = pl.ds(pl.multiple_of(j * bv, bv), bv)

            def body(i, ds):
                ci = num_chunks - 1 - i
                rows = _rows(ci, c)
                dstates_ref[bi, h, ci, :, cols] = ds.astype(dstates_ref.dtype)
                beta, dec = _load_chunk_scalars(beta_ref, gamma_ref, rel_ref, bi, rows, h)
                w_or_a = w_ref[bi, rows, h, :]
                dvn, ds = pc.state_backward(q_ref[bi, rows, h, :], k_ref[bi, rows, h, :],
                                            None if from_a else w_or_a,
                                            p_ref[bi, rows, h, :], dec,
                                            do_ref[bi, rows, h, cols], ds, cfg,
                                            a=w_or_a if from_a else None, beta=beta)
                dvn_ref[bi, rows, h, cols] = dvn.astype(dvn_ref.dtype)
                return ds

            ds = lax.fori_loop(0, num_chunks, body, dht_ref[bi, h, :, cols])
            dh0_ref[bi, h, :, cols] = ds

        mm = cfg.mm_dtype
        shapes = [jax.ShapeDtypeStruct((b, n, num_chunks, dk, dv), mm),
                  jax.ShapeDtypeStruct((b, t, n, dv), mm),
                  jax.ShapeDtypeStruct((b, n, dk, dv), F32)]
        return self._call(gdn_state_bwd_kernel, cfg, (dv // bv, n, b), shapes,
                          q, k, a if from_a else w, p, gamma, rel, do, dht,
                          *((beta,) if from_a else ()),
                          num_warps=cfg.num_warps_state_bwd or cfg.num_warps_state,
                          num_stages=cfg.num_stages_state)

    def grads(self, cfg, q, k, v, beta, gamma, rel, a, v_new, states, dstates, do, dvn):
        b, t, n, dk = q.shape
        dv, c = v.shape[-1], cfg.chunk
        bv = min(cfg.block_v_grads or cfg.block_v, dv)
        grid = (t // c, n, b)

        def gdn_grads_state_kernel(q_ref, k_ref, gamma_ref, rel_ref, vn_ref, s_ref, ds_ref,
                                   do_ref, dq_ref, dk_ref, dgamma_ref):
            ci, h, bi = _ids()
            rows = _rows(ci, c)

            def load(jb: int):
                cols = _cols(jb, bv)
                return (vn_ref[bi, rows, h, cols], s_ref[bi, h, ci, :, cols],
                        ds_ref[bi, h, ci, :, cols], do_ref[bi, rows, h, cols])

            dq, dk_, dgamma = pc.grads_through_state(
                q_ref[bi, rows, h, :], k_ref[bi, rows, h, :], gamma_ref[bi, rows, h],
                rel_ref[bi, rows], cfg, dv // bv, load)
            dq_ref[bi, rows, h, :] = dq.astype(dq_ref.dtype)
            dk_ref[bi, rows, h, :] = dk_.astype(dk_ref.dtype)
            dgamma_ref[bi, rows, h] = dgamma

        dq, dk_state, dgamma_state = self._call(
            gdn_grads_state_kernel, cfg, grid,
            [jax.ShapeDtypeStruct(q.shape, q.dtype), jax.ShapeDtypeStruct(k.shape, k.dtype),
             jax.ShapeDtypeStruct(gamma.shape, F32)],
            q, k, gamma, rel, v_new, states, dstates, do, num_warps=cfg.num_warps_grads,
            num_stages=cfg.num_stages_grads)

        def gdn_grads_wy_kernel(k_ref, v_ref, beta_ref, gamma_ref, rel_ref, a_ref, s_ref,
                                dvn_ref, dk_state_ref, dgamma_state_ref, dk_ref, dv_ref,
                                dbeta_ref, dgamma_ref):
            ci, h, bi = _ids()
            rows = _rows(ci, c)

            def load(jb: int):
                cols = _cols(jb, bv)
                return (v_ref[bi, rows, h, cols], s_ref[bi, h, ci, :, cols],
                        dvn_ref[bi, rows, h, cols])

            def store_dv(jb: int, x):
                dv_ref[bi, rows, h, _cols(jb, bv)] = x.astype(dv_ref.dtype)

            dk_, dbeta, dgamma = pc.grads_through_wy(
                k_ref[bi, rows, h, :], beta_ref[bi, rows, h], gamma_ref[bi, rows, h],
                rel_ref[bi, rows], a_ref[bi, rows, h, :], cfg, dv // bv, load, store_dv)
            dk_ref[bi, rows, h, :] = (dk_ + dk_state_ref[bi, rows, h, :].astype(F32)
                                      ).astype(dk_ref.dtype)
            dbeta_ref[bi, rows, h] = dbeta
            dgamma_ref[bi, rows, h] = dgamma + dgamma_state_ref[bi, rows, h]

        dk_, dv_, dbeta, dgamma = self._call(
            gdn_grads_wy_kernel, cfg, grid,
            [jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype),
             jax.ShapeDtypeStruct(beta.shape, F32), jax.ShapeDtypeStruct(gamma.shape, F32)],
            k, v, beta, gamma, rel, a, states, dvn, dk_state, dgamma_state,
            num_warps=cfg.num_warps_grads_wy or cfg.num_warps_grads,
            num_stages=cfg.num_stages_grads_wy or cfg.num_stages_grads)
        return dq, dk_, dv_, dbeta, dgamma


_BACKEND = _Triton()


def widest_block_v(dtype) -> int:
    """128 for bf16; 64 for fp32, whose 128-wide tiles overflow an H100's shared memory.
    The wy kernel forms U in V-blocks this wide."""
    return 128 if dtype == jnp.bfloat16 else 64


def default_block_v(dtype, dv: int, pad_v: int = 0, batch_heads: int | None = None) -> int:
    """The V-block of the state passes (given `batch_heads`) and of the gradient kernels
    (None): 64; for the state passes on bf16, 32 where 64 would leave fewer than 128
    programs (they are sequential over chunks, so the grid is all the parallelism they
    have; the gradient kernels are parallel over chunks). Never wider than the padded V
    or `pad_v`.

    Measured on an H100, bf16, one run (timing.py's method), H=32, K=V=128, forward /
    forward+backward ms, (V-block, warps of the state passes):
      B=4 T=4096    (128, 8) 1.000 / 3.763   (64, 4) 0.970 / 3.692
      B=2 T=8192    (64, 8)  1.114 / 3.898   (64, 4) 0.973 / 3.725   (32, 4) 0.966 / 4.096
      B=1 T=16384   (64, 8)  1.697 / 4.952   (64, 4) 1.731 / 5.290   (32, 4) 1.361 / 4.442
    and at the Olmo Hybrid 7B heads (H=30, K=96, V=192), B=1 T=4096: (64, 8) 0.515 /
    1.476, (64, 4) 0.494 / 1.515, (32, 4) 0.435 / 1.530. The gradient kernels alone
    (B=4 T=4096): 2.024 ms at 128, 1.798 at 64
    (3ff56d2:benchmarks/results/h100_gdn_tuning.json).
    """
    dvp = pc.padded_dim(dv, pad_v)
    width = min(64, dvp, pad_v or 64)
    if (batch_heads is not None and dtype == jnp.bfloat16 and width > 32
            and batch_heads * -(-dvp // width) < 128):
        width = 32
    return width


H100_SMS = 132  # the SM count assumed where no GPU is attached (interpret mode, tests)


def num_sms() -> int:
    """Streaming multiprocessors of the default device (`H100_SMS` if it is no GPU)."""
    dev = jax.devices()[0]
    return int(getattr(dev, "core_count", 0) or H100_SMS) if dev.platform == "gpu" \
        else H100_SMS


def default_block_v_state_bwd(dv: int, pad_v: int, batch_heads: int, sms: int) -> int:
    """The reverse state pass's V-block (bf16): the narrowest of 32 / 64 / 128 whose
    programs (batch x heads x V-blocks) fit in one wave of the `sms` SMs, else the
    widest that tiles the padded V. Unlike the forward pass (see `default_block_v`),
    the reverse pass runs best one program per SM. Measured on an H100 (132 SMs), bf16,
    forward + backward ms with the gradient kernels at 3 stages, (V-block, warps) of the
    reverse pass (`aa24a0c:benchmarks/results/h100_gdn_bwd_tuning.json`):
      H=32 K=V=128  B=4 T=4096   (64, 4) 3.329  (128, 8) 3.279  (64, 8) 3.430
                    B=2 T=8192   (64, 4) 3.369  (128, 8) 3.656  (64, 8) 3.452
                    B=1 T=16384  (32, 4) 4.025  (64, 8) 4.240   (128, 8) 4.954
      H=30 K=96 V=192  B=1 T=8192  (32, 4) 2.798  (64, 4) 2.568  (64, 8) 2.507
    """
    dvp = pc.padded_dim(dv, pad_v)
    widths = ([w for w in (32, 64, 128) if w <= dvp and dvp % w == 0]
              or [w for w in (16,) if dvp % w == 0] or [dvp])  # (16: e.g. V 48, pad_v 16)
    for w in widths:
        if batch_heads * (dvp // w) <= sms:
            return w
    return widths[-1]


def default_num_warps_state(dtype) -> int:
    """4 for bf16 (64- and 32-wide V-blocks: measured above); 8 for fp32 (untimed)."""
    return 4 if dtype == jnp.bfloat16 else 8


def default_pad_v(dv: int) -> int:
    """64 where padding V to a multiple of 64 is shorter than the next power of two
    (the release's V = 192 stays 192 instead of 256), else 0 (the power of two).
    Measured (H100, bf16, H=30, K=96, V=192): forward 1.328 -> 1.190 ms at B2 T4096
    and 2.299 -> 1.802 ms at B4 T4096; forward + backward 3.61 -> 3.16 and 6.13 ->
    5.33 ms (a7882c7:benchmarks/results/h100_gdn_release.json)."""
    return 64 if pc.padded_dim(dv, 64) < pc.next_pow2(dv) else 0


def gpu_config(q, k, v, *, scale: float | None, chunk: int, interpret: bool,
               block_v: int | None, **tuning: int) -> pc.KernelConfig:
    """The KernelConfig of one call on inputs already cast to `pc.compute_dtype`, with the
    V-block defaults filled in and checked."""
    dtype = q.dtype
    pad_v = tuning.setdefault("pad_v", default_pad_v(v.shape[-1]))
    dvp = pc.padded_dim(v.shape[-1], pad_v)  # checks pad_v
    widest = min(widest_block_v(dtype), pad_v) if pad_v else widest_block_v(dtype)
    if block_v is None:
        block_v = default_block_v(dtype, v.shape[-1], pad_v, q.shape[0] * q.shape[2])
    tuning.setdefault("num_warps_state", default_num_warps_state(dtype))
    # fp32 tiles on 3xTF32 products: two pipelined stages of the reverse pass's loads
    # asked for 290 KB of shared memory at K = 128 (an H100 has 227 KB).
    tuning.setdefault("num_stages_state", 1 if dtype == jnp.float32 else 2)
    wy_block = tuning.get("wy_block", 0)
    if wy_block and (wy_block < 16 or wy_block & (wy_block - 1) or wy_block > chunk):
        raise ValueError(f"wy_block must be 0 or a power of two from 16 to the chunk size "
                         f"({chunk}), got {wy_block}")
    tuning.setdefault("block_v_grads", default_block_v(dtype, v.shape[-1], pad_v))
    if dtype == jnp.bfloat16:  # fp32 keeps the forward's V-blocks (untimed)
        # Three pipelined stages of the gradient kernels' loads took 0.13-0.17 ms off
        # forward+backward at every shape measured (H100;
        # aa24a0c:benchmarks/results/h100_gdn_bwd_tuning.json; 4 stages: no faster,
        # 8f03655:benchmarks/results/h100_gdn_grads_sweep.json), and
        # their gradients match the reference on an H100 (test_gpu_backward_defaults;
        # Triton has miscompiled pipelined Hopper kernels of this kind before, fla #640).
        tuning.setdefault("num_stages_grads", 3)
        # grads_wy: 4 warps and 2 stages fit two programs on an SM, whose loads and
        # product chains overlap; gradient kernels 1.68 -> 1.31 ms with the tail
        # reordered (3 stages at 4 warps: 1.47; 8 warps: 1.45; H100, B=4 T=4096 H=32
        # K=V=128, bd5ac4d:benchmarks/results/h100_gdn_grads_wy.json).
        tuning.setdefault("num_warps_grads_wy", 4)
        tuning.setdefault("num_stages_grads_wy", 2)
        bv_bwd = tuning.setdefault("block_v_state_bwd", default_block_v_state_bwd(
            v.shape[-1], pad_v, q.shape[0] * q.shape[2], num_sms()))
        tuning.setdefault("num_warps_state_bwd", 8 if bv_bwd >= 128 else 4)
    tuning.setdefault("block_v_wy", widest)
    # Outside differentiation (scoring, evaluation) the fused forward is the default for
    # bf16: faster than wy + state_fwd at every shape timed
    # (benchmarks/results/h100_gdn_fused_default.json). Under differentiation it was
    # slower at the release heads (the reverse pass reading A), so fused_save stays
    # opt-in; fp32 is untimed, so it keeps fused_fwd=0 unless asked.
    tuning.setdefault("fused_fwd", int(dtype == jnp.bfloat16))
    for name in ("fused_fwd", "fused_save"):
        if tuning.get(name, 0) not in (0, 1):
            raise ValueError(f"{name} must be 0 or 1, got {tuning[name]}")
    widths = [("block_v", block_v), ("block_v_grads", tuning["block_v_grads"]),
              ("block_v_wy", tuning["block_v_wy"])]
    for name in ("block_v_state_bwd", "block_v_fused"):
        if tuning.get(name):
            widths.append((name, tuning[name]))
    for name, width in widths:
        if width < 16 or width & (width - 1):
            raise ValueError(f"{name} must be a power of two >= 16, got {width}")
        if min(width, dvp) != dvp and dvp % width:  # a wider block takes all of V
            raise ValueError(f"{name}={width} does not tile the padded value dim {dvp} "
                             f"(V = {v.shape[-1]}, pad_v={pad_v}): use a block that "
                             f"divides it")
    # fp32 inputs: 3xTF32 on the compiled kernels (see pallas_common's docstring); the
    # interpreter runs XLA:CPU, where HIGHEST is exact fp32.
    fp32 = lax.Precision.HIGHEST if interpret else lax.DotAlgorithmPreset.TF32_TF32_F32_X3
    return pc.make_config(q, v, scale=scale, chunk=chunk, interpret=interpret,
                          inv_precision=lax.Precision.DEFAULT, fp32_precision=fp32,
                          block_v=block_v, **tuning)


def gated_delta_rule_pallas_gpu(
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
    block_v: int | None = None,
    interpret: bool = False,
    **tuning: int,
) -> tuple[GdnV, GdnState]:
    """Gated delta rule through the Triton kernels; contract of `reference.py`.

    q, k, v: bfloat16 runs bf16 products with fp32 accumulation; any other dtype (or a
    mix) computes in float32 (3xTF32 products). g, beta: any float dtype, taken as
    float32. Head dims are zero-padded to powers of two (>= 16; V to a multiple of
    `pad_v`, by default `default_pad_v`) and T to a multiple of the chunk.
    `block_v`: width of the V-blocks of the two state passes (their grid is V-blocks x
    heads x batch); default `default_block_v`.
    `tuning`: fields of `KernelConfig`: block_v_grads (the gradient kernels' V-block;
    default 64 or less, `default_block_v`), block_v_wy (the V-block in which the wy kernel forms U;
    default `widest_block_v`), pad_v (pad V to a multiple of this rather than to a
    power of two, e.g. 64: the release's 192 stays 192; the V-blocks default to at most
    pad_v; 0: the power of two), wy_block (form the WY factors on row blocks of this
    many rows, e.g. 16, instead of whole chunks: `pallas_common.blocked_wy`), num_warps,
    num_warps_state (default `default_num_warps_state`), num_warps_grads, num_stages_state,
    num_stages_grads, block_v_state_bwd and num_warps_state_bwd (the reverse state pass
    apart from the forward's; 0: as the forward), fused_fwd (1, bf16's default: outside
    differentiation the forward is an A-and-P kernel plus one state pass that forms V'
    on chip, `_Triton.fused_forward`), fused_save (1: so is the forward under
    differentiation, which then saves A instead of W) with block_v_fused and
    num_warps_fused (its state pass; 0: as the state pass).
    `interpret=True` runs the kernels in Pallas' interpreter (CPU tests).
    """
    check_shapes(q, k, v, g, beta, initial_state)
    out_dtype = v.dtype
    dtype = pc.compute_dtype(q, k, v)
    q, k, v = (x.astype(dtype) for x in (q, k, v))
    cfg = gpu_config(q, k, v, scale=scale, chunk=chunk_size, interpret=interpret,
                     block_v=block_v, **tuning)
    b, t, n, dk = q.shape
    chunks = -(-t // chunk_size)
    states = b * n * chunks * pc.next_pow2(dk) * pc.padded_dim(v.shape[-1], cfg.pad_v)
    if states >= 2**31:
        raise ValueError(f"Pallas GDN (GPU): the per-chunk states would hold {states} "
                         "elements, past the kernels' int32 indexing; split the batch")
    o, state = pc.run(_BACKEND, cfg, q, k, v, g, beta, initial_state=initial_state,
                      segment_ids=segment_ids)
    return o.astype(out_dtype), state


__all__ = ["gated_delta_rule_pallas_gpu"]
