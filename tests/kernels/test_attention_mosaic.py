"""The Mosaic GPU flash-attention forward (`attention/mosaic_gpu.py`).

On CPU: the per-row key intervals that carry every mask equal the reference mask row by
row; the per-CTA block ranges visit exactly the key blocks with a visible pair and skip
the mask only on blocks that every row sees whole; the kernel lowers to a Mosaic GPU
custom call for CUDA (no GPU needed to lower). On a Hopper GPU: forward and gradients
(Triton backward on the Mosaic forward's residuals) against the reference for every
mask, and the forward's (o, lse) against the Triton forward's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybrid_jax.kernels.attention import (
    attention_mask,
    attention_reference,
    mosaic_gpu,
    pallas_gpu,
)
from hybrid_jax.kernels.attention.pallas_gpu import flash_attention
from tests.kernels.test_attention_pallas import (
    CASES,
    assert_close,
    outputs_and_grads,
    qkv,
    segments,
)

ON_HOPPER = (jax.default_backend() == "gpu"
             and str(getattr(jax.devices()[0], "compute_capability", "")).startswith("9."))


def _bounds(case, t, s, t_pad, b=2):
    causal, window, use_segments = CASES[case]
    seg = segments(b, s) if use_segments else None
    starts = ends = None
    if seg is not None:
        _, starts, ends = pallas_gpu._document_bounds(seg, max(s, s - t + t_pad))
    lo, hi = mosaic_gpu.row_bounds(t_pad, s, s - t, t, causal=causal, window=window,
                                   starts=starts, ends=ends, batch=b)
    mask = np.asarray(attention_mask(t, s, causal=causal, window=window, segment_ids=seg))
    return np.asarray(lo), np.asarray(hi), np.broadcast_to(mask, (b, t, s))


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("t,s", [(75, 75), (40, 75)])
def test_row_bounds_are_the_mask(case, t, s):
    """Each query row reads exactly the keys [lo_i, hi_i]; padding rows copy the last row."""
    lo, hi, mask = _bounds(case, t, s, t_pad=128)
    keys = np.arange(s)
    for bi in range(mask.shape[0]):
        for i in range(t):
            interval = (keys >= lo[bi, i]) & (keys <= hi[bi, i])
            np.testing.assert_array_equal(interval, mask[bi, i], err_msg=f"row {bi},{i}")
    assert (lo[:, t:] == lo[:, t - 1:t]).all() and (hi[:, t:] == hi[:, t - 1:t]).all()


@pytest.mark.parametrize("case", list(CASES))
def test_block_ranges_visit_exactly_the_blocks_with_visible_pairs(case):
    t = s = 75
    bq, bk, t_pad = 16, 16, 96
    lo, hi, mask = _bounds(case, t, s, t_pad)
    ranges = np.asarray(mosaic_gpu.block_ranges(jnp.asarray(lo), jnp.asarray(hi), bq, bk))
    assert ranges.shape == (2, t_pad // (2 * bq), 10)
    nk = -(-s // bk)
    for bi in range(2):
        for cta in range(ranges.shape[1]):
            first, end = ranges[bi, cta, :2]
            for w in range(2):
                b_lo, b_flo, b_fhi, b_hi = ranges[bi, cta, 2 + 4 * w: 6 + 4 * w]
                assert first <= b_lo <= b_flo <= b_fhi <= b_hi <= end
                r0 = (2 * cta + w) * bq
                rows = mask[bi, r0:min(r0 + bq, t)]
                for j in range(nk):
                    blk = rows[:, j * bk:(j + 1) * bk]
                    if not len(rows):  # padding rows only: they repeat the last row
                        continue
                    assert (b_lo <= j < b_hi) == blk.any(), (bi, cta, w, j)
                    if b_flo <= j < b_fhi:
                        assert blk.all(), f"mask skipped on a partial block {(bi, cta, w, j)}"


def test_mosaic_lowers_for_cuda(monkeypatch):
    """Forward on the Mosaic kernel, backward on Triton, lowered for CUDA on any host."""
    monkeypatch.setattr(mosaic_gpu, "mosaic_unsupported_reason", lambda q, k: None)
    q, k, v = qkv(0, t=300, n=8, g=2, h=128, dtype=jnp.bfloat16)
    seg = segments(2, 300)

    def fwd(q, k, v, seg):
        return flash_attention(q, k, v, window=64, segment_ids=seg, forward="mosaic")

    text = jax.jit(fwd).trace(q, k, v, seg).lower(lowering_platforms=("cuda",)).as_text()
    assert "mosaic_gpu" in text and "flash_attention_fwd" not in text


def test_forward_choice_is_checked():
    q, k, v = qkv(0, t=8, h=32)
    with pytest.raises(ValueError, match="forward must be"):
        flash_attention(q, k, v, forward="cuda", interpret=True)
    with pytest.raises(ValueError, match="Mosaic GPU forward cannot run"):
        flash_attention(q, k, v, forward="mosaic", interpret=True)


# ---------------------------------------------------------------- Hopper GPU only
@pytest.mark.skipif(not ON_HOPPER, reason="Mosaic GPU kernel: needs a Hopper GPU")
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("h", [64, 128])
def test_mosaic_on_gpu_bf16(case, h):
    """T = 1000 (not a block multiple), GQA 8 on 2 kv heads; gradients via Triton."""
    causal, window, use_segments = CASES[case]
    q, k, v = qkv(1, t=1000, n=8, g=2, h=h, dtype=jnp.bfloat16)
    seg = segments(2, 1000) if use_segments else None
    masks = dict(causal=causal, window=window, segment_ids=seg)
    got = outputs_and_grads(lambda q, k, v: flash_attention(q, k, v, forward="mosaic",
                                                            **masks), q, k, v)
    want = outputs_and_grads(lambda q, k, v: attention_reference(q, k, v, **masks), q, k, v)
    assert_close(got, want, jnp.bfloat16)


@pytest.mark.skipif(not ON_HOPPER, reason="Mosaic GPU kernel: needs a Hopper GPU")
@pytest.mark.parametrize("case", ["window+segments", "segments, not causal"])
def test_mosaic_lse_equals_triton(case):
    """The residuals the Triton backward reads: o and the base-2 log-sum-exp, t < s."""
    causal, window, use_segments = CASES[case]
    q, k, v = qkv(2, t=384, s=640, n=4, g=4, h=128, dtype=jnp.bfloat16)
    seg = segments(2, 640) if use_segments else None
    outs = {}
    for mosaic in (False, True):
        st = pallas_gpu._Static(causal=causal, window=window, segments=use_segments,
                                scale=128**-0.5, t=384, s=640, rep=1,
                                blocks=pallas_gpu.BlockSizes(), interpret=False,
                                mosaic=mosaic)
        docs = pallas_gpu._document_bounds(seg, 640) if use_segments else ()
        outs[mosaic] = [np.asarray(x, np.float32) for x in
                        jax.jit(pallas_gpu._forward, static_argnums=4)(q, k, v, docs, st)]
    np.testing.assert_allclose(outs[True][1], outs[False][1], atol=2e-3, rtol=1e-4)
    rel = np.linalg.norm(outs[True][0] - outs[False][0]) / np.linalg.norm(outs[False][0])
    assert rel < 1e-2, rel
