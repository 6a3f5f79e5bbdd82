"""Chunked gated delta rule as Pallas kernels for TPU (Mosaic).

Same four kernels and custom_vjp as the GPU version (algebra and memory plan in
pallas_common.py), arranged the TPU way:

  * layout: head-major [b, n, t, d] (one transpose in XLA at entry and exit), so every
    block's last two dims are (chunk, head dim), the shapes the MXU and VMEM tiling
    want; the per-token scalars (beta, gamma, relative doc index) come as whole [1, t]
    rows per (batch, head) and are sliced per chunk inside the kernel; dbeta and dgamma
    leave as [1, chunk] rows of a [b, n, chunks, 1, chunk] array.
  * grids are (batch, head, chunk). `wy` and `grads` are parallel over all three. The
    two state passes mark the chunk axis "arbitrary" (sequential, in order; reversed
    through the index maps for the backward) and carry the fp32 state S [K, V], or dS,
    in a VMEM scratch buffer across grid steps: the state never leaves VMEM between
    chunks. Whole-V blocks: a [K, V] fp32 state is at most 256 KB.
  * every product inside the triangular inverse runs at HIGHEST precision (bf16 MXU
    passes would break (I + M) A = I; reference/gated_deltanet.md section 4.3).

Status: correctness is tested in interpret mode on CPU (`interpret=True`), and the
forward and gradient pass Pallas' Mosaic lowering rules (lowered for 'tpu' from CPU,
tests/kernels/test_gdn_pallas.py). Not compiled by libtpu nor run on a TPU here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from hybrid_jax.kernels.gdn import pallas_common as pc
from hybrid_jax.kernels.gdn.reference import check_shapes
from hybrid_jax.typing import GdnBeta, GdnGate, GdnQK, GdnState, GdnV, SegmentIds

F32 = jnp.float32
_PAR, _SEQ = "parallel", "arbitrary"


def _chunk_scalars(ci, chunk: int, beta_ref, gamma_ref, rel_ref):
    """beta and the decays of chunk `ci` from the [1, t] rows of one (batch, head)."""
    rows = pl.ds(pl.multiple_of(ci * chunk, chunk), chunk)
    beta = None if beta_ref is None else beta_ref[0, rows]
    return beta, pc.decays(gamma_ref[0, rows], rel_ref[0, rows])


class _Mosaic:
    """The Backend of pallas_common.make_core for TPU, on the [b, n, t, d] layout."""

    def _call(self, kernel, cfg, grid, semantics, in_specs, out_specs, out_shape, *args,
              scratch=()):
        return pl.pallas_call(
            kernel, out_shape=out_shape, grid=grid, in_specs=in_specs,
            out_specs=out_specs, scratch_shapes=scratch, interpret=cfg.interpret,
            compiler_params=pltpu.CompilerParams(dimension_semantics=semantics),
        )(*args)

    @staticmethod
    def _specs(t: int, c: int, reverse_chunks: int | None = None):
        """BlockSpec makers over grid (batch, head, chunk); `reverse_chunks` = number of
        chunks when the chunk axis runs backwards."""

        def chunk_of(ci):
            return ci if reverse_chunks is None else reverse_chunks - 1 - ci

        def tokens(d: int):
            return pl.BlockSpec((None, None, c, d), lambda b, h, ci: (b, h, chunk_of(ci), 0))

        row = pl.BlockSpec((None, None, 1, t), lambda b, h, ci: (b, h, 0, 0))
        rel_row = pl.BlockSpec((None, 1, t), lambda b, h, ci: (b, 0, 0))
        return tokens, row, rel_row, chunk_of

    # ---------------------------------------------------------------- forward
    def wy(self, cfg, q, k, v, beta, gamma, rel, *, save: bool):
        b, n, t, dk = q.shape
        dv, c = v.shape[-1], cfg.chunk
        tokens, row, rel_row, _ = self._specs(t, c)

        def gdn_wy_kernel(q_ref, k_ref, v_ref, beta_ref, gamma_ref, rel_ref, w_ref, u_ref,
                          p_ref, *a_ref):
            beta, dec = _chunk_scalars(pl.program_id(2), c, beta_ref, gamma_ref, rel_ref)
            w, p, a = pc.wy_forward(q_ref[...], k_ref[...], beta, dec, cfg)
            w_ref[...] = w.astype(w_ref.dtype)
            p_ref[...] = p.astype(p_ref.dtype)
            u_ref[...] = pc.wy_values(a, v_ref[...], beta, cfg).astype(u_ref.dtype)
            if save:
                a_ref[0][...] = a.astype(a_ref[0].dtype)

        mm = cfg.mm_dtype
        shapes = [jax.ShapeDtypeStruct((b, n, t, dk), mm),
                  jax.ShapeDtypeStruct((b, n, t, dv), mm),
                  jax.ShapeDtypeStruct((b, n, t, c), mm)]
        out_specs = [tokens(dk), tokens(dv), tokens(c)]
        if save:
            shapes.append(jax.ShapeDtypeStruct((b, n, t, c), mm))
            out_specs.append(tokens(c))
        outs = self._call(gdn_wy_kernel, cfg, (b, n, t // c), (_PAR,) * 3,
                          [tokens(dk), tokens(dk), tokens(dv), row, row, rel_row],
                          out_specs, shapes, q, k, v, beta, gamma, rel)
        return outs[0], outs[1], outs[2], (outs[3] if save else None)

    def state_fwd(self, cfg, q, k, w, u, p, gamma, rel, h0, *, save: bool):
        b, n, t, dk = q.shape
        dv, c = u.shape[-1], cfg.chunk
        num_chunks = t // c
        tokens, row, rel_row, _ = self._specs(t, c)
        whole_state = pl.BlockSpec((None, None, dk, dv), lambda b, h, ci: (b, h, 0, 0))
        per_chunk_state = pl.BlockSpec((None, None, None, dk, dv),
                                       lambda b, h, ci: (b, h, ci, 0, 0))

        def gdn_state_fwd_kernel(q_ref, k_ref, w_ref, u_ref, p_ref, gamma_ref, rel_ref,
                                 h0_ref, o_ref, ht_ref, *rest):
            *saved_refs, s_ref = rest
            ci = pl.program_id(2)

            @pl.when(ci == 0)
            def _():
                s_ref[...] = h0_ref[...]

            s = s_ref[...]
            if save:
                saved_refs[0][...] = s.astype(saved_refs[0].dtype)
            _, dec = _chunk_scalars(ci, c, None, gamma_ref, rel_ref)
            o, s, v_new = pc.state_forward(q_ref[...], k_ref[...], w_ref[...], u_ref[...],
                                           p_ref[...], dec, s, cfg)
            o_ref[...] = o.astype(o_ref.dtype)
            if save:
                saved_refs[1][...] = v_new.astype(saved_refs[1].dtype)
            s_ref[...] = s

            @pl.when(ci == num_chunks - 1)
            def _():
                ht_ref[...] = s

        shapes = [jax.ShapeDtypeStruct((b, n, t, dv), q.dtype),
                  jax.ShapeDtypeStruct((b, n, dk, dv), F32)]
        out_specs = [tokens(dv), whole_state]
        if save:
            shapes += [jax.ShapeDtypeStruct((b, n, num_chunks, dk, dv), cfg.mm_dtype),
                       jax.ShapeDtypeStruct((b, n, t, dv), cfg.mm_dtype)]
            out_specs += [per_chunk_state, tokens(dv)]
        outs = self._call(
            gdn_state_fwd_kernel, cfg, (b, n, num_chunks), (_PAR, _PAR, _SEQ),
            [tokens(dk), tokens(dk), tokens(dk), tokens(dv), tokens(c), row, rel_row,
             whole_state], out_specs, shapes, q, k, w, u, p, gamma, rel, h0,
            scratch=[pltpu.VMEM((dk, dv), F32)])
        return (outs[0], outs[1], *(outs[2:] if save else (None, None)))

    # --------------------------------------------------------------- backward
    def state_bwd(self, cfg, q, k, w, p, gamma, rel, do, dht):
        b, n, t, dk = q.shape
        dv, c = do.shape[-1], cfg.chunk
        num_chunks = t // c
        tokens, row, rel_row, chunk_of = self._specs(t, c, reverse_chunks=num_chunks)
        whole_state = pl.BlockSpec((None, None, dk, dv), lambda b, h, ci: (b, h, 0, 0))
        per_chunk_state = pl.BlockSpec((None, None, None, dk, dv),
                                       lambda b, h, ci: (b, h, chunk_of(ci), 0, 0))

        def gdn_state_bwd_kernel(q_ref, k_ref, w_ref, p_ref, gamma_ref, rel_ref, do_ref,
                                 dht_ref, dstates_ref, dvn_ref, dh0_ref, ds_ref):
            i = pl.program_id(2)

            @pl.when(i == 0)
            def _():
                ds_ref[...] = dht_ref[...]

            ds = ds_ref[...]
            dstates_ref[...] = ds.astype(dstates_ref.dtype)
            _, dec = _chunk_scalars(chunk_of(i), c, None, gamma_ref, rel_ref)
            dvn, ds = pc.state_backward(q_ref[...], k_ref[...], w_ref[...], p_ref[...],
                                        dec, do_ref[...], ds, cfg)
            dvn_ref[...] = dvn.astype(dvn_ref.dtype)
            ds_ref[...] = ds

            @pl.when(i == num_chunks - 1)
            def _():
                dh0_ref[...] = ds

        mm = cfg.mm_dtype
        shapes = [jax.ShapeDtypeStruct((b, n, num_chunks, dk, dv), mm),
                  jax.ShapeDtypeStruct((b, n, t, dv), mm),
                  jax.ShapeDtypeStruct((b, n, dk, dv), F32)]
        return self._call(
            gdn_state_bwd_kernel, cfg, (b, n, num_chunks), (_PAR, _PAR, _SEQ),
            [tokens(dk), tokens(dk), tokens(dk), tokens(c), row, rel_row, tokens(dv),
             whole_state], [per_chunk_state, tokens(dv), whole_state], shapes,
            q, k, w, p, gamma, rel, do, dht, scratch=[pltpu.VMEM((dk, dv), F32)])

    def grads(self, cfg, q, k, v, beta, gamma, rel, a, v_new, states, dstates, do, dvn):
        b, n, t, dk = q.shape
        dv, c = v.shape[-1], cfg.chunk
        tokens, row, rel_row, _ = self._specs(t, c)
        per_chunk_state = pl.BlockSpec((None, None, None, dk, dv),
                                       lambda b, h, ci: (b, h, ci, 0, 0))
        chunk_row = pl.BlockSpec((None, None, None, 1, c), lambda b, h, ci: (b, h, ci, 0, 0))

        def gdn_grads_kernel(q_ref, k_ref, v_ref, beta_ref, gamma_ref, rel_ref, a_ref,
                             vn_ref, s_ref, ds_ref, do_ref, dvn_ref, dq_ref, dk_ref, dv_ref,
                             dbeta_ref, dgamma_ref):
            rows = pl.ds(pl.multiple_of(pl.program_id(2) * c, c), c)
            beta, gamma, rel = beta_ref[0, rows], gamma_ref[0, rows], rel_ref[0, rows]

            def store_dv(_: int, x):
                dv_ref[...] = x.astype(dv_ref.dtype)

            # One kernel on TPU (VMEM is not the constraint registers are on GPU).
            q, k, a = q_ref[...], k_ref[...], a_ref[...]
            dq, dk_state, dgamma_state = pc.grads_through_state(
                q, k, gamma, rel, cfg, 1,
                lambda _: (vn_ref[...], s_ref[...], ds_ref[...], do_ref[...]))
            dk_, dbeta, dgamma = pc.grads_through_wy(
                k, beta, gamma, rel, a, cfg, 1,
                lambda _: (v_ref[...], s_ref[...], dvn_ref[...]), store_dv)
            dq_ref[...] = dq.astype(dq_ref.dtype)
            dk_ref[...] = (dk_ + dk_state).astype(dk_ref.dtype)
            dbeta_ref[0, :] = dbeta
            dgamma_ref[0, :] = dgamma + dgamma_state

        per_chunk_row = jax.ShapeDtypeStruct((b, n, t // c, 1, c), F32)
        shapes = [jax.ShapeDtypeStruct(q.shape, q.dtype),
                  jax.ShapeDtypeStruct(k.shape, k.dtype),
                  jax.ShapeDtypeStruct(v.shape, v.dtype), per_chunk_row, per_chunk_row]
        dq, dk, dv, dbeta, dgamma = self._call(
            gdn_grads_kernel, cfg, (b, n, t // c), (_PAR,) * 3,
            [tokens(dk), tokens(dk), tokens(dv), row, row, rel_row, tokens(c), tokens(dv),
             per_chunk_state, per_chunk_state, tokens(dv), tokens(dv)],
            [tokens(dk), tokens(dk), tokens(dv), chunk_row, chunk_row], shapes,
            q, k, v, beta, gamma, rel, a, v_new, states, dstates, do, dvn)
        return dq, dk, dv, dbeta.reshape(beta.shape), dgamma.reshape(gamma.shape)


_BACKEND = _Mosaic()


def _to_head_major(q, k, v, beta, gamma, rel, h0):
    """[b, t, n, d] -> [b, n, t, d]; per-token scalars [b, n, 1, t]; rel [b, 1, t]."""
    q, k, v = (jnp.swapaxes(x, 1, 2) for x in (q, k, v))
    beta, gamma = (jnp.swapaxes(x, 1, 2)[:, :, None, :] for x in (beta, gamma))
    return q, k, v, beta, gamma, rel[:, None, :], h0


def _to_time_major(o):
    return jnp.swapaxes(o, 1, 2)


def gated_delta_rule_pallas_tpu(
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
    interpret: bool = False,
) -> tuple[GdnV, GdnState]:
    """Gated delta rule through the Mosaic kernels; contract of `reference.py`.

    q, k, v: bfloat16 runs bf16 products with fp32 accumulation; any other dtype (or a
    mix) computes in float32. g, beta: any float dtype, taken as float32.
    `interpret=True` runs the kernels in Pallas' interpreter (CPU tests).
    """
    check_shapes(q, k, v, g, beta, initial_state)
    out_dtype = v.dtype
    dtype = pc.compute_dtype(q, k, v)
    q, k, v = (x.astype(dtype) for x in (q, k, v))
    cfg = pc.make_config(q, v, scale=scale, chunk=chunk_size, interpret=interpret,
                         inv_precision=lax.Precision.HIGHEST,
                         block_v=0)  # whole-V blocks on TPU
    o, state = pc.run(_BACKEND, cfg, q, k, v, g, beta, initial_state=initial_state,
                      segment_ids=segment_ids, to_layout=_to_head_major,
                      from_layout=_to_time_major)
    return o.astype(out_dtype), state


__all__ = ["gated_delta_rule_pallas_tpu"]
