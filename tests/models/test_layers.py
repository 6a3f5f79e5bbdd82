"""Layers against numpy oracles and hand-computed values: norms, RoPE/YaRN, the short
convolution, the attention and Gated DeltaNet layers (packing, decode)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hybrid_jax.models.attention import Attention
from hybrid_jax.models.config import YarnConfig
from hybrid_jax.models.gated_deltanet import GatedDeltaNet
from hybrid_jax.models.norms import GatedRMSNorm, RMSNorm
from hybrid_jax.models.presets import research_model
from hybrid_jax.models.rope import Rope, inverse_frequencies
from hybrid_jax.models.short_conv import ShortConv
from hybrid_jax.segments import document_index, positions_from_segments

RNG = np.random.default_rng(0)


def perturb(module: nnx.Module, seed: int, scale: float = 0.1) -> None:
    """Add noise to every parameter so that norms and gates are not at their init."""
    rng = np.random.default_rng(seed)
    for _, p in nnx.iter_graph(module):
        if isinstance(p, nnx.Param):
            p[...] = p[...] + scale * jnp.asarray(rng.normal(size=p.shape), p.dtype)


def test_segments_helpers():
    seg = jnp.asarray([[7, 7, 7, 2, 2, 7, 7], [1, 1, 1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(document_index(seg), [[0, 0, 0, 1, 1, 2, 2], [0] * 7])
    np.testing.assert_array_equal(positions_from_segments(seg),
                                  [[0, 1, 2, 0, 1, 0, 1], [0, 1, 2, 3, 4, 5, 6]])


def test_rmsnorm_matches_numpy():
    norm = RMSNorm(6, eps=1e-6, axis="embed")
    norm.weight[...] = jnp.arange(1.0, 7.0)
    x = RNG.normal(size=(2, 3, 6)).astype(np.float32)
    want = x / np.sqrt(np.mean(x**2, -1, keepdims=True) + 1e-6) * np.arange(1.0, 7.0)
    np.testing.assert_allclose(norm(jnp.asarray(x)), want, rtol=1e-5)
    y16 = norm(jnp.asarray(x, jnp.bfloat16))
    assert y16.dtype == jnp.bfloat16


def test_gated_rmsnorm_matches_numpy():
    norm = GatedRMSNorm(4, eps=1e-5)
    norm.weight[...] = jnp.asarray([0.5, 1.0, 1.5, 2.0])
    x, gate = RNG.normal(size=(3, 4)), RNG.normal(size=(3, 4))
    silu = gate / (1 + np.exp(-gate))
    want = x / np.sqrt(np.mean(x**2, -1, keepdims=True) + 1e-5) * [0.5, 1, 1.5, 2] * silu
    np.testing.assert_allclose(norm(jnp.asarray(x, jnp.float32), jnp.asarray(gate)), want,
                               rtol=1e-5, atol=1e-6)


def test_yarn_inverse_frequencies_hand_computed():
    # head_dim 8, theta 1e4: plain inv_freq = 1, 0.1, 0.01, 0.001. Correction dims for
    # 32 / 1 rotations over 16 positions: 8 ln(16/(64 pi)) / (2 ln 1e4) = -1.10 -> 0 and
    # 8 ln(16/(2 pi)) / (2 ln 1e4) = 0.41 -> 1, so the ramp is [0, 1, 1, 1]: dim 0 keeps
    # its frequency, dims 1..3 are divided by the factor 4.
    yarn = YarnConfig(factor=4.0, original_max_position=16, beta_fast=32, beta_slow=1)
    np.testing.assert_allclose(inverse_frequencies(8, 1e4, yarn),
                               [1.0, 0.025, 0.0025, 0.00025], rtol=1e-12)
    np.testing.assert_allclose(inverse_frequencies(8, 1e4, None), [1, 0.1, 0.01, 0.001])
    assert yarn.scale == pytest.approx(0.1 * np.log(4.0) + 1.0)
    assert YarnConfig(8.0, 8192, attention_factor=1.2079441541679836).scale == 1.2079441541679836


def test_rope_rotation_hand_computed_and_relative():
    rope = Rope.build(4, 100.0)  # inv_freq = [1, 0.1]
    x = jnp.asarray([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 1, 4)
    got = rope(x, jnp.asarray([[2]]))[0, 0, 0]
    c1, s1, c2, s2 = np.cos(2.0), np.sin(2.0), np.cos(0.2), np.sin(0.2)
    # pairs (x0, x2) and (x1, x3) rotate by angles 2 and 0.2.
    want = [1 * c1 - 3 * s1, 2 * c2 - 4 * s2, 3 * c1 + 1 * s1, 4 * c2 + 2 * s2]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # q.k depends only on the position difference.
    q = jnp.asarray(RNG.normal(size=(1, 1, 1, 4)), jnp.float32)
    k = jnp.asarray(RNG.normal(size=(1, 1, 1, 4)), jnp.float32)
    dot = lambda i, j: float(jnp.sum(rope(q, jnp.asarray([[i]])) * rope(k, jnp.asarray([[j]]))))
    assert dot(7, 3) == pytest.approx(dot(104, 100), rel=1e-4)


def test_short_conv_matches_numpy_and_restarts_per_document():
    conv = ShortConv(3, 4, rngs=nnx.Rngs(0), param_dtype=jnp.float32)
    w = np.asarray(conv.weight[...])  # [taps, channels]
    x = RNG.normal(size=(1, 12, 3)).astype(np.float32)
    seg = np.array([[1] * 5 + [2] * 7])

    def oracle(x):  # y[t] = silu(sum_i w[i] x[t - 3 + i]), zeros before the start
        xp = np.concatenate([np.zeros((3, 3)), x])
        y = np.stack([sum(w[i] * xp[t + i] for i in range(4)) for t in range(len(x))])
        return y / (1 + np.exp(-y))

    y, _ = conv(jnp.asarray(x))
    np.testing.assert_allclose(y[0], oracle(x[0]), rtol=1e-5, atol=1e-6)
    y, cache = conv(jnp.asarray(x), doc_bt=document_index(jnp.asarray(seg)))
    np.testing.assert_allclose(y[0, :5], oracle(x[0, :5]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y[0, 5:], oracle(x[0, 5:]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cache[0], x[0, -3:])
    # The cache continues the sequence: two halves equal the whole.
    y1, c1 = conv(jnp.asarray(x[:, :7]))
    y2, _ = conv(jnp.asarray(x[:, 7:]), cache_bwe=c1)
    np.testing.assert_allclose(jnp.concatenate([y1, y2], 1)[0], oracle(x[0]), rtol=1e-5,
                               atol=1e-6)


CFG = research_model("hybrid", "tiny", sliding_window=6)
PACKED_SEG = np.array([[3] * 9 + [4] * 75 + [3] * 16])  # the middle doc crosses a chunk


def _check_packed_equals_separate(apply, d_model, atol=2e-5):
    x = jnp.asarray(RNG.normal(size=(1, PACKED_SEG.shape[1], d_model)), jnp.float32)
    packed = apply(x, jnp.asarray(PACKED_SEG))
    starts = np.flatnonzero(np.diff(PACKED_SEG[0], prepend=-1))
    bounds = list(zip(starts, list(starts[1:]) + [PACKED_SEG.shape[1]]))
    assert len(bounds) == 3
    for lo, hi in bounds:
        alone = apply(x[:, lo:hi], None)
        np.testing.assert_allclose(packed[:, lo:hi], alone, atol=atol, rtol=atol)


@pytest.mark.parametrize("layer_type", ["swa", "full"])
def test_attention_layer_packed_equals_separate(layer_type):
    attn = Attention(CFG.replace(n_kv_heads=2, rope_theta=1e4), layer_type, rngs=nnx.Rngs(1))
    perturb(attn, 1)

    def apply(x, seg):
        if seg is None:
            pos = jnp.arange(x.shape[1])[None]
        else:
            pos = positions_from_segments(seg)
        return attn(x, positions=pos, segment_ids=seg)

    _check_packed_equals_separate(jax.jit(apply), CFG.d_model)


def test_gdn_layer_packed_equals_separate():
    gdn = GatedDeltaNet(CFG, rngs=nnx.Rngs(2))
    perturb(gdn, 2)
    _check_packed_equals_separate(jax.jit(lambda x, seg: gdn(x, segment_ids=seg)), CFG.d_model)


def test_gdn_layer_decode_and_prefill_continue_the_sequence():
    gdn = GatedDeltaNet(CFG, rngs=nnx.Rngs(3))
    perturb(gdn, 3)
    x = jnp.asarray(RNG.normal(size=(2, 80, CFG.d_model)), jnp.float32)
    full = gdn(x)
    # Prefill 70 tokens in two pieces, then decode the rest one token at a time.
    y1, cache = gdn.prefill(x[:, :33])
    y2, cache = gdn.prefill(x[:, 33:70], cache=cache)
    decode = jax.jit(lambda x, c: gdn.decode(x, c))
    steps = []
    for i in range(70, 80):
        y, cache = decode(x[:, i : i + 1], cache)
        steps.append(y)
    got = jnp.concatenate([y1, y2, *steps], axis=1)
    np.testing.assert_allclose(got, full, atol=2e-5, rtol=2e-5)
    # From an empty cache, decoding every token equals the full pass too.
    cache = gdn.init_cache(2)
    outs = []
    for i in range(20):
        y, cache = decode(x[:, i : i + 1], cache)
        outs.append(y)
    np.testing.assert_allclose(jnp.concatenate(outs, 1), gdn(x[:, :20]), atol=2e-5, rtol=2e-5)


def test_gdn_gates_follow_olmo_hybrid_formulas():
    """beta = 2 sigmoid(b), g = -exp(A_log) softplus(a + dt_bias), q/k unit norm."""
    gdn = GatedDeltaNet(CFG, rngs=nnx.Rngs(4))
    perturb(gdn, 4)
    x = jnp.asarray(RNG.normal(size=(1, 5, CFG.d_model)), jnp.float32)
    qkv = [jnp.asarray(RNG.normal(size=(1, 5, gdn.n_heads * d)), jnp.float32)
           for d in (gdn.key_dim, gdn.key_dim, gdn.value_dim)]
    q, k, _, g, beta = gdn._heads_and_gates(x, *qkv)
    xa = np.asarray(x[0]) @ np.asarray(gdn.a_proj.kernel[...])
    xb = np.asarray(x[0]) @ np.asarray(gdn.b_proj.kernel[...])
    a_log, dt_bias = np.asarray(gdn.A_log[...]), np.asarray(gdn.dt_bias[...])
    np.testing.assert_allclose(g[0], -np.exp(a_log) * np.log1p(np.exp(xa + dt_bias)),
                               rtol=1e-5)
    np.testing.assert_allclose(beta[0], 2 / (1 + np.exp(-xb)), rtol=1e-5)
    np.testing.assert_allclose(jnp.linalg.norm(q, axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(jnp.linalg.norm(k, axis=-1), 1.0, rtol=1e-5)
    assert float(beta.max()) > 1.0  # negative eigenvalues reachable


def test_gdn_layer_hands_the_kernel_one_compute_dtype(monkeypatch):
    """bf16 compute: q, k (normalised in fp32) reach the kernel in bf16 beside v, so the
    Pallas kernels run their bf16 path (a float32 q / k made them compute in float32,
    ~69 s of Triton compile per kernel on an H100); gates stay float32."""
    import hybrid_jax.models.gated_deltanet as gdn_module

    seen = {}
    real = gdn_module.gated_delta_rule

    def spy(q, k, v, g, beta, **kw):
        seen.update(q=q.dtype, k=k.dtype, v=v.dtype, g=g.dtype, beta=beta.dtype)
        return real(q, k, v, g, beta, **kw)

    monkeypatch.setattr(gdn_module, "gated_delta_rule", spy)
    cfg = research_model("hybrid", "tiny", dtype="bfloat16")
    gdn = GatedDeltaNet(cfg, rngs=nnx.Rngs(5))
    x = jnp.asarray(RNG.normal(size=(1, 8, cfg.d_model)), jnp.bfloat16)
    y = gdn(x)
    assert seen == dict(q=jnp.bfloat16, k=jnp.bfloat16, v=jnp.bfloat16, g=jnp.float32,
                        beta=jnp.float32)
    assert y.dtype == jnp.bfloat16
