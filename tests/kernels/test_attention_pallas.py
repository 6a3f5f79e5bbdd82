"""Pallas flash attention (GPU kernel, run here through the Pallas interpreter) and TPU
splash attention (interpreter too) against the plain-jnp reference: forward and
gradients of q, k, v for every mask (causal, sliding window, segment ids, both, and
segment ids without causality), lengths that are not a multiple of the blocks,
grouped-query attention, head dim 128, queries shorter than keys; the loop bounds that
skip masked blocks; the Triton lowering; the dispatcher; sharded splash.

Tolerances: float32 1e-5 (absolute and relative). bfloat16: relative Frobenius error
of the output and of each gradient <= 1e-2 against the reference on the same bf16
inputs (products of bf16 inputs accumulated in float32 on both sides; what differs is
the order of accumulation and the bf16 rounding of the probabilities).
"""

from __future__ import annotations

import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

from hybrid_jax.kernels import impl as kernel_impl
from hybrid_jax.kernels.attention import attention_mask, attention_reference, pallas_gpu
from hybrid_jax.kernels.attention.dispatch import dot_product_attention
from hybrid_jax.kernels.attention.pallas_gpu import BlockSizes, flash_attention
from hybrid_jax.kernels.attention.splash import splash_attention
from tests.conftest import with_devices

# Small blocks so that T = 75 spans several blocks of each kind and ends mid-block.
BLOCKS = BlockSizes(block_q=32, block_k=16, block_q_dkv=16, block_k_dkv=32,
                    block_q_dq=32, block_k_dq=16)
WINDOW = 20
# causal, window, segment ids
CASES = {
    "causal": (True, None, False),
    "window": (True, WINDOW, False),
    "segments": (True, None, True),
    "window+segments": (True, WINDOW, True),
    "segments, not causal": (False, None, True),
}


def qkv(seed, b=2, t=75, s=None, n=4, g=2, h=128, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    s = s or t
    q = rng.normal(size=(b, t, n, h))
    k = rng.normal(size=(b, s, g, h))
    v = rng.normal(size=(b, s, g, h))
    return [jnp.asarray(x, dtype) for x in (q, k, v)]


def segments(b, s):
    """Row 0: documents of 1, 3, 10, 30 tokens and the rest, an id reused non-adjacently
    (5 ... 5 are two documents); later rows: one document."""
    row = np.repeat([5, 2, 5, 7, 9], [1, 3, 10, 30, max(s - 44, 0)])[:s]
    return jnp.asarray(np.stack([row] + [np.full(s, 3)] * (b - 1)))


def outputs_and_grads(fn, q, k, v, seed=0):
    """fn(q, k, v) and the vjp of a random cotangent, as float32 arrays."""
    o, vjp = jax.vjp(fn, q, k, v)
    do = jnp.asarray(np.random.default_rng(seed).normal(size=o.shape), o.dtype)
    return [x.astype(jnp.float32) for x in (o, *vjp(do))]


def assert_close(got, want, dtype, names=("out", "dq", "dk", "dv")):
    for name, a, b in zip(names, got, want):
        if dtype == jnp.float32:
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5, err_msg=name)
        else:
            rel = float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))
            assert rel <= 1e-2, f"{name}: relative error {rel:.2e}"


def compare(kernel, case, *, t=75, s=None, n=4, g=2, h=128, dtype=jnp.float32, seed=0):
    causal, window, use_segments = CASES[case]
    q, k, v = qkv(seed, t=t, s=s, n=n, g=g, h=h, dtype=dtype)
    seg = segments(q.shape[0], k.shape[1]) if use_segments else None
    masks = dict(causal=causal, window=window, segment_ids=seg)
    got = outputs_and_grads(lambda q, k, v: kernel(q, k, v, **masks), q, k, v)
    want = outputs_and_grads(lambda q, k, v: attention_reference(q, k, v, **masks), q, k, v)
    assert_close(got, want, dtype)


def pallas(q, k, v, **kw):
    return flash_attention(q, k, v, block_sizes=BLOCKS, interpret=True, **kw)


def splash(q, k, v, **kw):
    return splash_attention(q, k, v, block_size=128, interpret=True, **kw)


# ---------------------------------------------------------------- Pallas (interpreter)
@pytest.mark.parametrize("case", list(CASES))
def test_pallas_matches_reference_fp32(case):
    """T = 75 (ends mid-block), GQA 4 query heads on 2 kv heads, head dim 128."""
    compare(pallas, case)


def test_pallas_bf16_mqa_head_dim_128():
    compare(pallas, "window+segments", n=4, g=1, dtype=jnp.bfloat16)


def test_pallas_queries_are_the_last_keys():
    """t < s: query i sits at key position s - t + i (a prefix already in the cache)."""
    compare(pallas, "window+segments", t=40, s=75, h=32)


def _visited(bounds_fn, n_blocks, block, other_block, st, seg):
    """Per block of one side: (lo, full_lo, full_hi, hi) on the other side's blocks."""
    start = end = None
    if seg is not None:
        _, start, end = (x[0] for x in pallas_gpu._document_bounds(seg, st.s))
    firsts = jnp.arange(n_blocks, dtype=jnp.int32) * block
    return np.asarray(jax.vmap(
        lambda p: jnp.stack(bounds_fn(p, block, other_block, st, start, end)))(firsts))


@pytest.mark.parametrize("case", list(CASES))
def test_loop_bounds_visit_exactly_the_blocks_with_visible_pairs(case):
    """Forward/dQ and dK/dV loops visit a block iff some (query, key) pair in it is
    visible, and skip the mask only where every pair is visible."""
    causal, window, use_segments = CASES[case]
    t = 75
    seg = segments(1, t) if use_segments else None
    mask = np.asarray(attention_mask(t, t, causal=causal, window=window, segment_ids=seg))[0]
    for bq, bk, side in ((32, 16, "q"), (16, 32, "k")):
        st = pallas_gpu._Static(causal=causal, window=window, segments=use_segments,
                                scale=1.0, t=t, s=t, rep=1, blocks=BLOCKS, interpret=True)
        nq, nk = -(-t // bq), -(-t // bk)
        any_vis = np.zeros((nq, nk), bool)
        all_vis = np.zeros((nq, nk), bool)
        for i in range(nq):
            for j in range(nk):
                blk = mask[i * bq:(i + 1) * bq, j * bk:(j + 1) * bk]
                any_vis[i, j], all_vis[i, j] = blk.any(), blk.all()
        if side == "q":  # each query block's key loop
            rows = _visited(pallas_gpu._key_blocks, nq, bq, bk, st, seg)
            visited, unmasked = np.zeros_like(any_vis), np.zeros_like(any_vis)
            for i, (lo, flo, fhi, hi) in enumerate(rows):
                visited[i, lo:hi], unmasked[i, flo:fhi] = True, True
        else:  # each key block's query loop
            rows = _visited(pallas_gpu._query_blocks, nk, bk, bq, st, seg)
            visited, unmasked = np.zeros_like(any_vis), np.zeros_like(any_vis)
            for j, (lo, flo, fhi, hi) in enumerate(rows):
                visited[lo:hi, j], unmasked[flo:fhi, j] = True, True
        np.testing.assert_array_equal(visited, any_vis, err_msg=f"{side} side visits")
        assert not (unmasked & ~all_vis).any(), f"{side} side skips the mask of a partial block"


def test_sliding_window_work_grows_as_t_times_w():
    """At T = 32k, W = 4096 with the default blocks, the forward visits about T·W / (bq·bk)
    blocks: 4.2x fewer than full causal (the visible-pair ratio is 4.27)."""
    t, w, blocks = 32768, 4096, BlockSizes()
    counts = {}
    for window in (None, w):
        st = pallas_gpu._Static(causal=True, window=window, segments=False, scale=1.0, t=t,
                                s=t, rep=1, blocks=blocks, interpret=False)
        rows = _visited(pallas_gpu._key_blocks, t // blocks.block_q, blocks.block_q,
                        blocks.block_k, st, None)
        counts[window] = int((rows[:, 3] - rows[:, 0]).sum())
    assert counts[w] <= (t // blocks.block_q) * (w // blocks.block_k + 2)
    assert counts[None] / counts[w] > 4.1


def test_triton_lowering_for_gpu():
    """The three kernels lower to Triton IR (export for CUDA: no GPU needed up to jax 0.10)."""
    q, k, v = qkv(0, t=300, n=8, g=2, dtype=jnp.bfloat16)
    seg = segments(2, 300)

    def fwd_bwd(q, k, v, seg):
        o, vjp = jax.vjp(lambda q, k, v: flash_attention(q, k, v, window=64,
                                                         segment_ids=seg), q, k, v)
        return o, vjp(o)

    try:
        exp = export.export(jax.jit(fwd_bwd), platforms=["cuda"], disabled_checks=[
            export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")])(q, k, v, seg)
    except RuntimeError as e:  # jax >= 0.11 compiles Triton while lowering: needs a GPU
        if "No supported GPU devices found" not in str(e):
            raise
        pytest.skip(f"this jax lowers Triton only with a GPU device: {e}")
    text = exp.mlir_module()
    for name in ("flash_attention_fwd", "flash_attention_dkv", "flash_attention_dq"):
        assert f'name = "{name}"' in text


def test_pallas_rejects_what_it_cannot_run():
    q, k, v = qkv(0, t=8, h=320)
    with pytest.raises(ValueError, match="head dim 320"):
        flash_attention(q, k, v, interpret=True)
    with pytest.raises(ValueError, match="power of two"):
        BlockSizes(block_q=48)


# ---------------------------------------------------------------- splash (interpreter)
@pytest.mark.parametrize("case", ["causal", "segments, not causal"])
def test_splash_matches_reference_fp32(case):
    """T = 200 padded to 256 (block 128), GQA, head dim 128."""
    compare(splash, case, t=200)


def test_splash_window_segments_queries_are_the_last_keys():
    """Window + segments, multi-query, t = 150 queries at the end of s = 200 keys."""
    compare(splash, "window+segments", t=150, s=200, g=1)


def test_splash_masks():
    """The lazy splash masks are the reference's masks (window of W keys, self included)."""
    from hybrid_jax.kernels.attention.splash import splash_mask

    for causal, window in ((True, None), (True, 7), (False, None)):
        got = splash_mask(40, causal=causal, window=window, rep=2)
        want = np.asarray(attention_mask(40, 40, causal=causal, window=window))[0]
        for head in range(2):
            np.testing.assert_array_equal(got[head, :, :], want)


def test_splash_sharded_over_batch_and_heads(request):
    """shard_map over a 2-device mesh, batch on `data` then heads on `tensor`."""
    if not with_devices(2, request):
        return
    from hybrid_jax.sharding import activation_sharding, make_mesh

    q, k, v = qkv(1, t=128, n=4, g=2)
    seg = segments(2, 128)
    want = attention_reference(q, k, v, window=WINDOW, segment_ids=seg)
    for shape in ({"data": 2}, {"tensor": 2}):
        mesh = make_mesh(shape)
        with activation_sharding(mesh):
            got = jax.jit(lambda q, k, v: splash(q, k, v, window=WINDOW, segment_ids=seg))(
                q, k, v)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5, err_msg=str(shape))


# ---------------------------------------------------------------- dispatcher
@pytest.mark.parametrize("impl", ["pallas", "splash"])
def test_dispatcher_runs_kernels_in_interpret_mode_off_their_hardware(impl, caplog,
                                                                    monkeypatch):
    if jax.default_backend() != "cpu":
        pytest.skip("interpret mode is what the dispatcher picks on CPU")
    # The choice is logged once per process: forget what earlier tests announced.
    monkeypatch.setattr(kernel_impl, "_announced", set())
    q, k, v = qkv(2, t=40, h=64)
    seg = segments(2, 40)
    with caplog.at_level(logging.INFO, logger="hybrid_jax.kernels"):
        got = dot_product_attention(q, k, v, window=9, segment_ids=seg, impl=impl)
    want = attention_reference(q, k, v, window=9, segment_ids=seg)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    assert f"attention: using {impl} (interpret mode on cpu" in caplog.text


def test_lm_trains_and_scores_through_the_kernels():
    """An LM with attention_impl = pallas / splash (interpreted here) gives the xla
    implementation's logits and parameter gradients, documents packed in one row."""
    from flax import nnx

    from hybrid_jax.models.lm import LM
    from hybrid_jax.models.presets import research_model

    x = jnp.asarray(np.random.default_rng(0).integers(0, 97, (2, 50)), jnp.int32)
    seg = jnp.asarray(np.repeat([[0] * 20 + [1] * 30], 2, 0))
    results = {}
    for impl in ("xla", "pallas", "splash"):
        cfg = research_model("transformer", "tiny", vocab_size=97, layer_types=("swa", "full"),
                             n_kv_heads=2, sliding_window=8, attention_impl=impl)
        model = LM(cfg, rngs=nnx.Rngs(0))
        logits = nnx.jit(lambda m, x, s: m(x, segment_ids=s))(model, x, seg)
        grads = nnx.jit(nnx.grad(lambda m, x, s: jnp.mean(m(x, segment_ids=s) ** 2)))(
            model, x, seg)
        results[impl] = (logits, jax.tree.leaves(nnx.state(grads)))
    for impl in ("pallas", "splash"):
        np.testing.assert_allclose(results[impl][0], results["xla"][0], atol=1e-5, rtol=1e-5)
        for a, b in zip(results[impl][1], results["xla"][1]):
            np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4)


# ---------------------------------------------------------------- GPU only
@pytest.mark.skipif(jax.default_backend() != "gpu", reason="compiled Triton kernel: GPU only")
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("h", [64, 128])
def test_pallas_on_gpu_bf16(case, h):
    """Default (H100) blocks, T = 1000 (not a block multiple), GQA 8 on 2 kv heads; the
    Triton forward (on Hopper the default forward is Mosaic's: test_attention_mosaic)."""
    compare(functools.partial(flash_attention, forward="triton"), case, t=1000, n=8, g=2,
            h=h, dtype=jnp.bfloat16)


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="compiled Triton kernel: GPU only")
@pytest.mark.parametrize("case", ["window+segments", "segments, not causal"])
def test_pallas_on_gpu_fp32(case):
    compare(flash_attention, case, t=300, n=4, g=2, h=128)


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="compiled Triton kernel: GPU only")
def test_auto_on_gpu_picks_pallas_for_segments():
    q, k, v = qkv(3, t=256, n=8, g=2, dtype=jnp.bfloat16)
    seg = segments(2, 256)
    got = dot_product_attention(q, k, v, window=64, segment_ids=seg)
    want = attention_reference(q, k, v, window=64, segment_ids=seg)
    assert_close([got.astype(jnp.float32)], [want.astype(jnp.float32)], jnp.bfloat16)
