"""Attention reference against a per-query numpy oracle and jax's own XLA attention;
mask semantics (causal, sliding window, documents) and the implementation dispatcher."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybrid_jax.kernels.attention import (
    attention_reference,
    dot_product_attention,
    resolve_attention_impl,
)
from hybrid_jax.kernels.impl import AttentionImpl


def qkv(seed, b=2, t=37, n=4, g=2, h=16, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(b, t, n, h))
    k = rng.normal(size=(b, t, g, h))
    v = rng.normal(size=(b, t, g, h))
    return [jnp.asarray(x, dtype) for x in (q, k, v)]


def numpy_oracle(q, k, v, *, window=None, segments=None):
    """One query at a time, visible keys listed explicitly: float64 numpy."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    b, t, n, h = q.shape
    rep = n // k.shape[2]
    out = np.zeros_like(q)
    for bi, i, hi in itertools.product(range(b), range(t), range(n)):
        keys = [j for j in range(i + 1)
                if (window is None or j > i - window)
                and (segments is None or segments[bi, j] == segments[bi, i])]
        logits = np.array([q[bi, i, hi] @ k[bi, j, hi // rep] for j in keys]) / np.sqrt(h)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        out[bi, i, hi] = sum(pj * v[bi, j, hi // rep] for pj, j in zip(p, keys))
    return out


SEGMENTS = np.array([[1] * 10 + [2] * 20 + [3] * 7, [4] * 37])


@pytest.mark.parametrize("window,use_segments,g", [
    (None, False, 4), (None, False, 2), (5, False, 2), (None, True, 1), (8, True, 2),
    (1, False, 4),
])
def test_reference_matches_numpy_oracle(window, use_segments, g):
    q, k, v = qkv(window or 0, g=g)
    segments = SEGMENTS if use_segments else None
    got = attention_reference(q, k, v, window=window,
                              segment_ids=None if segments is None else jnp.asarray(segments))
    want = numpy_oracle(q, k, v, window=window, segments=segments)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("window", [None, 6])
def test_reference_matches_jax_xla_attention(window):
    """jax.nn.dot_product_attention's local_window_size=(W-1, 0) is our window of W keys."""
    q, k, v = qkv(3, t=40)
    got = attention_reference(q, k, v, window=window)
    want = jax.nn.dot_product_attention(
        q, k, v, is_causal=True, implementation="xla",
        local_window_size=None if window is None else (window - 1, 0))
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_sliding_window_reach():
    """Query t is unaffected by keys <= t - W and affected by key t - W + 1."""
    w, t0 = 6, 30
    q, k, v = qkv(4, b=1)
    base = attention_reference(q, k, v, window=w)
    for j, affects in ((t0 - w, False), (t0 - w - 3, False), (t0 - w + 1, True)):
        k2, v2 = k.at[:, j].add(1.0), v.at[:, j].add(1.0)
        out = attention_reference(q, k2, v2, window=w)
        changed = not np.allclose(out[:, t0], base[:, t0], atol=1e-6)
        assert changed == affects, f"key {j} for query {t0} with window {w}"


def test_bf16_output_dtype_and_accuracy():
    q, k, v = qkv(5, dtype=jnp.bfloat16)
    got = attention_reference(q, k, v, window=9)
    assert got.dtype == jnp.bfloat16
    want = numpy_oracle(q.astype(jnp.float32), k.astype(jnp.float32), v.astype(jnp.float32),
                        window=9)
    np.testing.assert_allclose(got.astype(np.float32), want, atol=2e-2, rtol=2e-2)


def test_gradients_match_jax_xla_attention():
    q, k, v = qkv(6, t=24)
    f_ref = lambda q, k, v: jnp.sum(jnp.sin(attention_reference(q, k, v, window=7)))
    f_jax = lambda q, k, v: jnp.sum(jnp.sin(jax.nn.dot_product_attention(
        q, k, v, is_causal=True, local_window_size=(6, 0), implementation="xla")))
    for a, b in zip(jax.grad(f_ref, (0, 1, 2))(q, k, v), jax.grad(f_jax, (0, 1, 2))(q, k, v)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_dispatch_choices():
    q16, k16, _ = qkv(0, dtype=jnp.bfloat16)
    q32, k32, _ = qkv(0)
    seg = jnp.asarray(SEGMENTS)
    pick = lambda impl, q, k, seg=None, backend="gpu": resolve_attention_impl(
        impl, q, k, causal=True, segment_ids=seg, backend=backend)
    assert pick("auto", q16, k16) is AttentionImpl.CUDNN
    assert pick("auto", q16, k16, seg) is AttentionImpl.PALLAS  # cuDNN has no document mask
    assert pick("auto", q32, k32) is AttentionImpl.PALLAS  # cuDNN needs bf16 / fp16
    assert pick("auto", q16, k16, backend="cpu") is AttentionImpl.XLA
    assert pick("auto", q16, k16, seg, backend="cpu") is AttentionImpl.XLA
    assert pick("auto", q16, k16, backend="tpu") is AttentionImpl.SPLASH
    assert pick("pallas", q16, k16, seg, backend="cpu") is AttentionImpl.PALLAS  # interpreter
    assert pick("splash", q16, k16, backend="cpu") is AttentionImpl.SPLASH  # interpreter
    q96, k96, _ = qkv(0, h=96, dtype=jnp.bfloat16)
    assert pick("auto", q96, k96, seg) is AttentionImpl.PALLAS  # head dim padded to 128
    q320, k320, _ = qkv(0, h=320, dtype=jnp.bfloat16)
    assert pick("auto", q320, k320, seg) is AttentionImpl.XLA  # neither cuDNN nor Pallas
    with pytest.raises(ValueError, match="segment ids"):
        pick("cudnn", q16, k16, seg)
    with pytest.raises(ValueError, match="needs a GPU"):
        pick("cudnn", q16, k16, backend="cpu")
    with pytest.raises(ValueError, match="head dim 320"):
        pick("pallas", q320, k320)
    with pytest.raises(ValueError, match="attention_impl='flash' is not one of"):
        pick("flash", q16, k16)


def test_bad_shapes_are_named():
    q, k, v = qkv(0, n=3, g=2)
    with pytest.raises(ValueError, match="not divisible"):
        dot_product_attention(q, k, v)
    q, k, v = qkv(0)
    with pytest.raises(ValueError, match="window must be >= 1"):
        dot_product_attention(q, k, v, window=0)
    with pytest.raises(ValueError, match="only defined for causal"):
        dot_product_attention(q, k, v, causal=False, window=4)


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN attention needs an NVIDIA GPU")
@pytest.mark.parametrize("window", [None, 64])
def test_cudnn_matches_reference_on_gpu(window):
    q, k, v = qkv(8, b=2, t=256, n=8, g=4, h=128, dtype=jnp.bfloat16)
    got = dot_product_attention(q, k, v, window=window, impl="cudnn")
    want = attention_reference(q, k, v, window=window)
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32),
                               atol=2e-2, rtol=2e-2)
