"""Pallas gated-delta-rule kernels (GPU Triton, TPU Mosaic) against the per-token recurrence.

On CPU both kernels run in Pallas' interpret mode at tiny shapes (chunk 16/32, a few
cases: interpret mode is slow); the GPU tests at realistic shapes run only where
jax.default_backend() == 'gpu'.

Errors are norm-relative, ||x - ref|| / ||ref||, per output and per gradient:
  float32 inputs: <= 1e-4 (every product at HIGHEST precision);
  bfloat16 inputs: <= 2e-2 (bf16 operands for the large products and bf16 per-chunk
  intermediates, as fla; on GPU the triangular inverse runs in tf32).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybrid_jax.kernels.gdn import (
    gated_delta_rule,
    gated_delta_rule_pallas_gpu,
    gated_delta_rule_pallas_tpu,
    gated_delta_rule_recurrent,
    resolve_gdn_impl,
)
from hybrid_jax.kernels.gdn import pallas_common as pc
from hybrid_jax.kernels.gdn.dispatch import PALLAS_INTERPRET_ENV
from hybrid_jax.kernels.gdn.pallas_gpu import (
    default_block_v,
    default_block_v_state_bwd,
    default_pad_v,
    gpu_config,
)
from hybrid_jax.kernels.gdn.split import gated_delta_rule_split
from hybrid_jax.kernels.impl import GdnImpl
from tests.kernels.test_gdn import make_inputs

ON_GPU = jax.default_backend() == "gpu"
TOL = {jnp.float32: 1e-4, jnp.bfloat16: 2e-2}
NAMES = ("q", "k", "v", "g", "beta", "h0")


def _kernel(kind: str, chunk: int, **extra):
    fn = gated_delta_rule_pallas_gpu if kind == "gpu" else gated_delta_rule_pallas_tpu
    interpret = not (kind == "gpu" and ON_GPU)

    def call(q, k, v, g, beta, **kw):
        return fn(q, k, v, g, beta, chunk_size=chunk, interpret=interpret, **extra, **kw)

    return call


def _rel(x, ref) -> float:
    x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(x - ref) / max(np.linalg.norm(ref), 1e-30))


def _packed(b: int, t: int, seed: int) -> jax.Array:
    """Segment ids with documents of random lengths (some shorter than a chunk)."""
    rng = np.random.default_rng(seed)
    starts = np.zeros((b, t), bool)
    starts[:, 1:] = rng.random((b, t - 1)) < 0.06
    return jnp.asarray(np.cumsum(starts, axis=1) % 3, jnp.int32)


def _check(fn, inputs, h0, seg, dtype, *, grads=True):
    """Forward and gradients wrt (q, k, v, g, beta, h0) of a random linear loss."""
    q, k, v, g, beta = inputs
    ref_inputs = [x.astype(jnp.float32) for x in (q, k, v, beta)]
    o_ref, s_ref = gated_delta_rule_recurrent(*ref_inputs[:3], g, ref_inputs[3],
                                              initial_state=h0, segment_ids=seg)
    o, s = fn(q, k, v, g, beta, initial_state=h0, segment_ids=seg)
    assert o.dtype == v.dtype and s.dtype == jnp.float32
    assert o.shape == v.shape and s.shape == s_ref.shape
    tol = TOL[dtype]
    errors = {"o": _rel(o, o_ref), "state": _rel(s, s_ref)}
    if grads:
        rng = np.random.default_rng(0)
        w_o = jnp.asarray(rng.normal(size=o.shape), jnp.float32)
        w_s = jnp.asarray(rng.normal(size=s.shape), jnp.float32)

        def loss(f, q, k, v, g, beta, h0):
            o, s = f(q, k, v, g, beta, initial_state=h0, segment_ids=seg)
            return jnp.sum(o.astype(jnp.float32) * w_o) + jnp.sum(s * w_s)

        got = jax.grad(lambda *a: loss(fn, *a), tuple(range(6)))(q, k, v, g, beta, h0)
        ref = jax.grad(lambda *a: loss(gated_delta_rule_recurrent, *a), tuple(range(6)))(
            *ref_inputs[:3], g, ref_inputs[3], h0)
        for name, x, r in zip(NAMES, got, ref):
            assert x.dtype == {"g": g.dtype, "h0": h0.dtype}.get(name, q.dtype), name
            errors[f"d{name}"] = _rel(x, r)
    bad = {key: err for key, err in errors.items() if not err <= tol}
    assert not bad, f"errors over {tol}: {bad} (all: {errors})"
    return errors


# --------------------------------------------------------------- CPU (interpret mode)
@pytest.mark.parametrize("kind", ["gpu", "tpu"])
@pytest.mark.parametrize("t,chunk,dk,dv,packed", [
    (45, 16, 8, 12, True),  # T not a multiple of the chunk; docs; padded head dims
    (64, 32, 16, 32, False),  # T a multiple of the chunk, two V-blocks of 16 (GPU)
])
def test_interpret_fp32_forward_and_grads(kind, t, chunk, dk, dv, packed):
    inputs, h0 = make_inputs(t + dk, b=2, t=t, n=2, dk=dk, dv=dv)
    seg = _packed(2, t, t) if packed else None
    # GPU: the reverse state pass in other V-blocks than the forward's (32: all of V)
    blocks = ({"block_v": 16, "block_v_grads": 16, "block_v_wy": 16, "block_v_state_bwd": 32}
              if kind == "gpu" else {})
    _check(_kernel(kind, chunk, **blocks),
           inputs, h0, seg, jnp.float32)


@pytest.mark.parametrize("kind", ["gpu", "tpu"])
def test_interpret_bf16_forward_and_grads(kind):
    inputs, h0 = make_inputs(3, b=1, t=40, n=2, dk=16, dv=16, dtype=jnp.bfloat16)
    _check(_kernel(kind, 16), inputs, h0, _packed(1, 40, 3), jnp.bfloat16)


def test_interpret_default_chunk_gpu():
    """Chunk 64 (the default) exercises the two-level triangular inverse."""
    inputs, h0 = make_inputs(4, b=1, t=70, n=1, dk=8, dv=8)
    _check(_kernel("gpu", 64), inputs, h0, None, jnp.float32)


@pytest.mark.parametrize("kind,g_range,beta_lo,beta_hi", [
    ("gpu", (-1e-6, -1e-7), 0.0, 1e-6),  # no decay, nearly no writes
    ("gpu", (-1e-6, -1e-7), 2.0 - 1e-6, 2.0),  # no decay, beta at 2 (eigenvalue -1)
    ("gpu", (-20.0, -19.0), 0.0, 2.0),  # near-total decay every step
    ("tpu", (-1e-6, -1e-7), 2.0 - 1e-6, 2.0),  # same algebra: the hardest case only
])
def test_interpret_stress(kind, g_range, beta_lo, beta_hi):
    (q, k, v, g, _), h0 = make_inputs(5, b=1, t=40, n=2, dk=8, dv=8, g_range=g_range)
    rng = np.random.default_rng(0)
    beta = jnp.asarray(rng.uniform(beta_lo, beta_hi, size=g.shape), jnp.float32)
    fn = _kernel(kind, 16)
    o, s = fn(q, k, v, g, beta, initial_state=h0)
    grads = jax.grad(lambda *a: jnp.sum(fn(*a[:5], initial_state=a[5])[0]),
                     tuple(range(6)))(q, k, v, g, beta, h0)
    for x in (o, s, *grads):
        assert np.isfinite(np.asarray(x)).all()
    o_ref, s_ref = gated_delta_rule_recurrent(q, k, v, g, beta, initial_state=h0)
    # Without decay and beta near 2 the state grows: relative to the largest magnitude.
    for got, ref in ((o, o_ref), (s, s_ref)):
        scale = float(jnp.max(jnp.abs(ref)))
        np.testing.assert_allclose(got / scale, ref / scale, atol=1e-5)


def test_dispatch(monkeypatch):
    (q, k, v, g, beta), _ = make_inputs(1, b=1, t=20, n=1, dk=8, dv=8)
    monkeypatch.delenv(PALLAS_INTERPRET_ENV, raising=False)
    if jax.default_backend() == "cpu":
        assert resolve_gdn_impl("auto") is GdnImpl.XLA
        monkeypatch.setenv(PALLAS_INTERPRET_ENV, "cuda")
        with pytest.raises(ValueError, match=f"{PALLAS_INTERPRET_ENV}='cuda'"):
            gated_delta_rule(q, k, v, g, beta, impl="pallas")
        monkeypatch.setenv(PALLAS_INTERPRET_ENV, "tpu")  # unset: the GPU kernel
    else:
        assert resolve_gdn_impl("auto") is GdnImpl.PALLAS
    o, s = gated_delta_rule(q, k, v, g, beta, impl="pallas", chunk_size=16)
    o_ref, s_ref = gated_delta_rule_recurrent(q, k, v, g, beta)
    assert _rel(o, o_ref) < 1e-4 and _rel(s, s_ref) < 1e-4
    # pallas_fused: the GPU kernels' fused forward (in the interpreter off GPU)
    o, s = gated_delta_rule(q, k, v, g, beta, impl="pallas_fused", chunk_size=16)
    assert _rel(o, o_ref) < 1e-4 and _rel(s, s_ref) < 1e-4
    from hybrid_jax.kernels.gdn import dispatch
    monkeypatch.setattr(dispatch, "platform", lambda: "tpu")
    for impl in ("pallas_fused", "pallas_unfused"):
        with pytest.raises(ValueError, match=f"'{impl}' is a GPU .Triton. kernel"):
            gated_delta_rule(q, k, v, g, beta, impl=impl)


@pytest.mark.parametrize("kind,target", [("gpu", "cuda"), ("tpu", "tpu")])
def test_lowers_for_real_backends(kind, target):
    """Forward and gradient lower through Pallas' Triton / Mosaic lowering rules on CPU
    (no device compile): every primitive in the kernels has a rule on that backend."""
    fn = gated_delta_rule_pallas_gpu if kind == "gpu" else gated_delta_rule_pallas_tpu
    b, t, n, dk, dv = 1, 128, 2, 96, 192
    bf16 = jnp.bfloat16
    avals = [jax.ShapeDtypeStruct(s, d) for s, d in (
        ((b, t, n, dk), bf16), ((b, t, n, dk), bf16), ((b, t, n, dv), bf16),
        ((b, t, n), jnp.float32), ((b, t, n), bf16), ((b, n, dk, dv), jnp.float32),
        ((b, t), jnp.int32))]

    def loss(q, k, v, g, beta, h0, seg):
        o, s = fn(q, k, v, g, beta, initial_state=h0, segment_ids=seg)
        return jnp.sum(o.astype(jnp.float32)) + jnp.sum(s)

    grad = jax.jit(jax.grad(loss, tuple(range(6))))
    try:
        text = grad.trace(*avals).lower(lowering_platforms=(target,)).as_text()
    except RuntimeError as e:  # jax >= 0.11 asks for a (possibly abstract) GPU device
        if "No supported GPU devices found" not in str(e):
            raise
        pytest.skip(f"this jax lowers Triton only with a GPU device: {e}")
    assert text.count("tpu_custom_call" if kind == "tpu" else "triton") >= 4


@pytest.mark.parametrize("dtype,dk,dv,pad_v", [
    (jnp.float32, 24, 48, 16),  # V = 48 stays 48 (three 16-wide blocks), not 64
    (jnp.bfloat16, 96, 192, 64),  # the release's head dims: V 192 in 64-wide blocks
])
def test_interpret_pad_v_to_block_multiple(dtype, dk, dv, pad_v):
    """V padded to a multiple of its blocks instead of a power of two: same results."""
    assert pc.padded_dim(dv, pad_v) == dv < pc.next_pow2(dv)
    t = 45 if dtype == jnp.float32 else 40
    inputs, h0 = make_inputs(dv, b=1, t=t, n=2, dk=dk, dv=dv, dtype=dtype)
    fn = _kernel("gpu", 16, pad_v=pad_v)
    _check(fn, inputs, h0, _packed(1, t, 4), dtype, grads=dtype == jnp.float32)
    # The kernels really ran on V = dv: the state pass writes [.., dv] outputs.
    text = str(jax.make_jaxpr(lambda *a: fn(*a, initial_state=h0))(*inputs))
    assert f",{dv}]" in text.replace(" ", "") and f",{pc.next_pow2(dv)}]" not in text


@pytest.mark.parametrize("kind,dk,dv", [
    ("gpu", 36, 72),  # the 60m preset's GDN heads: padded to 64 / 128
    ("gpu", 48, 96),  # 100m..370m: padded to 64 / 128
    ("tpu", 36, 72),
])
def test_interpret_ladder_head_dims(kind, dk, dv):
    """The presets' GDN head dims (3/4 and 3/2 of the attention head dim) are zero-padded
    to the kernels' sizes; forward, final state and gradients stay the recurrence's
    (a scale taken from the padded K, or padding that leaked, would fail here)."""
    assert (pc.next_pow2(dk), pc.padded_dim(dv, default_pad_v(dv))) == (64, 128)
    inputs, h0 = make_inputs(dk + dv, b=1, t=40, n=2, dk=dk, dv=dv)
    _check(_kernel(kind, 16), inputs, h0, _packed(1, 40, dk), jnp.float32)


def _record_forward_calls(monkeypatch) -> list[str]:
    """The names of the GPU backend's forward kernels (wy, state_fwd, fused_forward), in
    the order they are called from now on."""
    from hybrid_jax.kernels.gdn import pallas_gpu

    calls: list[str] = []
    for name in ("wy", "state_fwd", "fused_forward"):
        method = getattr(pallas_gpu._Triton, name)
        monkeypatch.setattr(pallas_gpu._Triton, name,
                            lambda self, *a, _m=method, _n=name, **kw:
                            calls.append(_n) or _m(self, *a, **kw))
    return calls


@pytest.mark.parametrize("dtype,t,chunk,dk,dv,extra", [
    # T not a multiple of the chunk, docs, padded K and V, two 16-wide fused V-blocks
    (jnp.float32, 45, 16, 8, 24, {"block_v_fused": 16, "pad_v": 16}),
    # the two-level inverse (chunk 32), all of V in one fused block, 8 warps asked
    (jnp.float32, 64, 32, 16, 32, {"block_v_fused": 32, "num_warps_fused": 8}),
    # the inverse on 16-row sub-blocks
    (jnp.float32, 48, 32, 16, 16, {"wy_block": 16}),
    (jnp.bfloat16, 40, 16, 24, 48, {"pad_v": 16}),
])
def test_interpret_fused_forward(dtype, t, chunk, dk, dv, extra, monkeypatch):
    """fused_fwd=1, fused_save=1: the forward (A-and-P kernel + fused state pass) is the
    recurrence's and the two-kernel forward's, and so are the gradients through it (its
    residuals: A, P, states, V'; the reverse state pass forms W^T dV' from A)."""
    calls = _record_forward_calls(monkeypatch)
    inputs, h0 = make_inputs(t + dv, b=2, t=t, n=2, dk=dk, dv=dv, dtype=dtype)
    seg = _packed(2, t, dk)
    fused = _kernel("gpu", chunk, fused_fwd=1, fused_save=1, **extra)
    o1, s1 = fused(*inputs, initial_state=h0, segment_ids=seg)
    assert calls == ["fused_forward"]  # W, U, P never written
    calls.clear()
    _check(fused, inputs, h0, seg, dtype, grads=chunk == 16 or "wy_block" in extra)
    assert set(calls) == {"fused_forward"}, calls
    two = {key: val for key, val in extra.items() if key not in ("block_v_fused",
                                                                  "num_warps_fused")}
    calls.clear()
    o2, s2 = _kernel("gpu", chunk, fused_fwd=0, **two)(*inputs, initial_state=h0,
                                                       segment_ids=seg)
    assert calls == ["wy", "state_fwd"]
    tight = 1e-5 if dtype == jnp.float32 else 1e-2
    assert _rel(o1, o2) < tight and _rel(s1, s2) < tight, (_rel(o1, o2), _rel(s1, s2))


@pytest.mark.parametrize("dtype,impl,primal,under_grad", [
    # the defaults: bf16 scores through the fused forward, trains through wy + state_fwd
    (jnp.bfloat16, "pallas", ["fused_forward"], ["wy", "state_fwd"]),
    (jnp.float32, "pallas", ["wy", "state_fwd"], ["wy", "state_fwd"]),  # fp32: untimed
    (jnp.bfloat16, "pallas_fused", ["fused_forward"], ["fused_forward"]),
    (jnp.bfloat16, "pallas_unfused", ["wy", "state_fwd"], ["wy", "state_fwd"]),
])
def test_interpret_fused_forward_defaults(dtype, impl, primal, under_grad, monkeypatch):
    """Which forward each GPU variant runs outside and under differentiation (custom_vjp
    calls the primal outside, the saving forward under it), and both give the
    recurrence's values."""
    calls = _record_forward_calls(monkeypatch)
    monkeypatch.delenv(PALLAS_INTERPRET_ENV, raising=False)  # the GPU kernels
    inputs, h0 = make_inputs(7, b=1, t=40, n=2, dk=16, dv=16, dtype=dtype)
    fn = functools.partial(gated_delta_rule, impl=impl, chunk_size=16)
    fn(*inputs, initial_state=h0)
    assert calls == primal
    calls.clear()
    jax.grad(lambda v: jnp.sum(fn(*inputs[:2], v, *inputs[3:], initial_state=h0)[0]
                               .astype(jnp.float32)))(inputs[2])
    assert calls == under_grad
    _check(fn, inputs, h0, _packed(1, 40, 7), dtype, grads=dtype == jnp.bfloat16)


def test_fused_forward_is_checked():
    (q, k, v, g, beta), _ = make_inputs(1, b=1, t=20, n=1, dk=8, dv=32)
    with pytest.raises(ValueError, match="fused_fwd must be 0 or 1, got 2"):
        gated_delta_rule_pallas_gpu(q, k, v, g, beta, fused_fwd=2, interpret=True)
    with pytest.raises(ValueError, match="fused_save must be 0 or 1, got -1"):
        gated_delta_rule_pallas_gpu(q, k, v, g, beta, fused_save=-1, interpret=True)
    with pytest.raises(ValueError, match="block_v_fused must be a power of two"):
        gated_delta_rule_pallas_gpu(q, k, v, g, beta, fused_fwd=1, block_v_fused=24,
                                    interpret=True)
    from hybrid_jax.kernels.gdn import pallas_tpu
    cfg = pc.make_config(q, v, scale=None, chunk=16, interpret=True,
                         inv_precision=jax.lax.Precision.HIGHEST, block_v=0, fused_fwd=1)
    with pytest.raises(ValueError, match="the Mosaic GDN kernels have no fused forward"):
        pc.make_core(pallas_tpu._BACKEND, cfg)


def test_padded_dim():
    assert [pc.padded_dim(x) for x in (8, 48, 96, 192)] == [16, 64, 128, 256]
    assert [pc.padded_dim(x, 64) for x in (8, 48, 96, 192, 200)] == [16, 64, 128, 192, 256]
    assert [pc.padded_dim(x, 16) for x in (8, 40, 100)] == [16, 48, 112]
    with pytest.raises(ValueError, match="pad_v must be 0 or a power of two"):
        pc.padded_dim(192, 48)


def test_rejects_bad_tiling():
    (q, k, v, g, beta), _ = make_inputs(1, b=1, t=20, n=1, dk=8, dv=8)
    with pytest.raises(ValueError, match="chunk_size must be 16, 32, 64 or 128"):
        gated_delta_rule_pallas_gpu(q, k, v, g, beta, chunk_size=48, interpret=True)
    with pytest.raises(ValueError, match="block_v must be a power of two"):
        gated_delta_rule_pallas_gpu(q, k, v, g, beta, block_v=48, interpret=True)
    (q, k, v, g, beta), _ = make_inputs(1, b=1, t=20, n=1, dk=8, dv=48)
    with pytest.raises(ValueError, match="block_v_wy=32 does not tile the padded value dim 48"):
        gated_delta_rule_pallas_gpu(q, k, v, g, beta, pad_v=16, block_v_wy=32, interpret=True)


# ------------------------------------------------------------- GPU, realistic shapes
@pytest.mark.skipif(not ON_GPU, reason="needs a GPU (Triton kernels compiled for real)")
@pytest.mark.parametrize("dtype,dk,dv,packed", [
    (jnp.bfloat16, 128, 128, False),
    (jnp.float32, 128, 128, True),
    (jnp.bfloat16, 96, 192, True),  # the release's head dims, padded to 128 / 256
    (jnp.float32, 64, 64, False),
    (jnp.bfloat16, 36, 72, True),  # the 60m preset's heads, padded to 64 / 128
])
def test_gpu_realistic(dtype, dk, dv, packed):
    b, t, n = 2, 1000, 4
    inputs, h0 = make_inputs(dk + dv, b=b, t=t, n=n, dk=dk, dv=dv, dtype=dtype)
    seg = _packed(b, t, 1) if packed else None
    errors = _check(_kernel("gpu", 64), inputs, h0, seg, dtype)
    print(f"gpu {jnp.dtype(dtype).name} dk={dk} dv={dv} packed={packed}: "
          + " ".join(f"{key}={err:.2e}" for key, err in errors.items()))


@pytest.mark.skipif(not ON_GPU, reason="needs a GPU (Triton kernels compiled for real)")
@pytest.mark.parametrize("dtype,dk,dv,pieces", [
    (jnp.bfloat16, 128, 128, 4),
    (jnp.float32, 64, 64, 3),
    (jnp.bfloat16, 96, 192, 8),  # the release's heads
])
def test_gpu_split(dtype, dk, dv, pieces):
    """Intra-sequence parallelism (kernels/gdn/split.py) over the compiled kernel: packed
    documents (some starting inside a piece), an initial state, forward and gradients."""
    b, t, n = 1, 2000, 2
    inputs, h0 = make_inputs(dk + dv + pieces, b=b, t=t, n=n, dk=dk, dv=dv, dtype=dtype)
    seg = _packed(b, t, 3)
    kernel = _kernel("gpu", 64)

    def split(*args, **kw):
        return gated_delta_rule_split(kernel, *args, pieces=pieces, chunk_size=64, **kw)

    errors = _check(split, inputs, h0, seg, dtype)
    print(f"gpu split@{pieces} {jnp.dtype(dtype).name} dk={dk} dv={dv}: "
          + " ".join(f"{key}={err:.2e}" for key, err in errors.items()))


@pytest.mark.skipif(not ON_GPU, reason="needs a GPU (Triton kernels compiled for real)")
@pytest.mark.parametrize("dtype,dk,dv,packed,extra", [
    (jnp.bfloat16, 128, 128, False, {}),
    (jnp.bfloat16, 128, 128, True, {"block_v_fused": 32}),
    (jnp.bfloat16, 96, 192, True, {}),  # the release's heads (V in 64-wide blocks)
    (jnp.float32, 64, 64, True, {}),
    (jnp.bfloat16, 128, 128, True, {"wy_block": 32}),  # A and P stored by row blocks
    # the two-kernel forward, which bf16 no longer runs outside differentiation
    (jnp.bfloat16, 128, 128, True, {"fused_fwd": 0, "fused_save": 0}),
])
def test_gpu_fused_forward(dtype, dk, dv, packed, extra):
    """The fused forward (fused_fwd=1, fused_save=1) compiled for real: forward and
    gradients through it against the recurrence."""
    b, t, n = 2, 1000, 4
    inputs, h0 = make_inputs(dk + dv + 1, b=b, t=t, n=n, dk=dk, dv=dv, dtype=dtype)
    seg = _packed(b, t, 2) if packed else None
    errors = _check(_kernel("gpu", 64, **{"fused_fwd": 1, "fused_save": 1, **extra}),
                    inputs, h0, seg, dtype)
    print(f"gpu fused {jnp.dtype(dtype).name} dk={dk} dv={dv} packed={packed} {extra}: "
          + " ".join(f"{key}={err:.2e}" for key, err in errors.items()))


@pytest.mark.skipif(not ON_GPU, reason="needs a GPU (Triton kernels compiled for real)")
@pytest.mark.parametrize("b,n,dk,dv", [
    (2, 40, 128, 128),  # 80 heads: the reverse state pass in 128-wide V-blocks, 8 warps
    (1, 30, 96, 192),  # the release's heads at B=1: 64-wide blocks (three of them)
])
@pytest.mark.parametrize("launch", ["default", "one_stage_8_warps"])
def test_gpu_backward_defaults(b, n, dk, dv, launch):
    """bf16's reverse state pass on `default_block_v_state_bwd`'s blocks, and the
    gradient kernels at their default launch (grads_state 3 pipeline stages, grads_wy 4
    warps and 2 stages) and at one stage and 8 warps, against the recurrent reference."""
    inputs, h0 = make_inputs(n + dv, b=b, t=256, n=n, dk=dk, dv=dv, dtype=jnp.bfloat16)
    cfg = gpu_config(*inputs[:3], scale=None, chunk=64, interpret=False, block_v=None)
    assert cfg.block_v_state_bwd == (128 if n == 40 else 64)
    tuning = {} if launch == "default" else {
        "num_stages_grads": 1, "num_warps_grads_wy": 8, "num_stages_grads_wy": 1}
    errors = _check(_kernel("gpu", 64, **tuning), inputs, h0, _packed(b, 256, 3),
                    jnp.bfloat16)
    print(f"gpu backward defaults b={b} n={n} dk={dk} dv={dv} {launch}: "
          + " ".join(f"{key}={err:.2e}" for key, err in errors.items()))


@pytest.mark.skipif(not ON_GPU, reason="needs a GPU (Triton kernels compiled for real)")
@pytest.mark.parametrize("wy_block,dtype,dk,dv", [
    (16, jnp.bfloat16, 128, 128),
    (32, jnp.bfloat16, 128, 128),
    (32, jnp.bfloat16, 96, 192),
    (16, jnp.float32, 64, 64),
])
def test_gpu_wy_block(wy_block, dtype, dk, dv):
    b, t, n = 2, 1000, 4
    inputs, h0 = make_inputs(dk + dv + wy_block, b=b, t=t, n=n, dk=dk, dv=dv, dtype=dtype)
    errors = _check(_kernel("gpu", 64, wy_block=wy_block), inputs, h0, _packed(b, t, 2),
                    dtype)
    print(f"gpu wy_block={wy_block} {jnp.dtype(dtype).name} dk={dk} dv={dv}: "
          + " ".join(f"{key}={err:.2e}" for key, err in errors.items()))


@pytest.mark.skipif(not ON_GPU, reason="needs a GPU (Triton kernels compiled for real)")
@pytest.mark.parametrize("wy_block", [0, 16, 32])
def test_gpu_stress_finite(wy_block):
    fn = _kernel("gpu", 64, wy_block=wy_block)
    for g_range, beta_lo, beta_hi in (((-1e-6, -1e-7), 1.99, 2.0), ((-20.0, -19.0), 0.0, 2.0)):
        (q, k, v, g, _), h0 = make_inputs(9, b=1, t=300, n=4, dk=128, dv=128,
                                          g_range=g_range, dtype=jnp.bfloat16)
        beta = jnp.asarray(np.random.default_rng(0).uniform(beta_lo, beta_hi, g.shape),
                           jnp.bfloat16)
        out = fn(q, k, v, g, beta, initial_state=h0)
        grads = jax.grad(lambda *a: jnp.sum(fn(*a[:5], initial_state=a[5])[0]
                                            .astype(jnp.float32)), tuple(range(6)))(
            q, k, v, g, beta, h0)
        for x in (*out, *grads):
            assert np.isfinite(np.asarray(x, np.float32)).all()


# ------------------------------------------- WY factors on row blocks (GPU option)
@pytest.mark.parametrize("c,sb", [(64, 16), (64, 32), (32, 16), (16, 16)])
def test_blocked_wy_equals_the_whole_chunk(c, sb):
    """pc.blocked_wy's blocks are those of the whole chunk's A = (I + M)^-1, W and P
    (documents included), and its U those of A (beta V)."""
    dk, dv = 32, 24
    rng = np.random.default_rng(c + sb)
    q, k = (rng.normal(size=(c, dk)) / np.sqrt(dk) for _ in range(2))
    v = rng.normal(size=(c, dv))
    beta = rng.uniform(0, 2, c)
    gamma = np.cumsum(rng.uniform(-0.3, 0, c))
    rel = np.cumsum(rng.random(c) < 0.05).astype(np.float32)  # a few documents start
    cfg = pc.KernelConfig(chunk=c, scale=0.7, mm_dtype=jnp.float32,
                          mm_precision=jax.lax.Precision.HIGHEST,
                          inv_precision=jax.lax.Precision.HIGHEST, interpret=True, block_v=16)
    as32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    dec = pc.decays(as32(gamma), as32(rel))
    w_whole, p_whole, a_whole = pc.wy_forward(as32(q), as32(k), as32(beta), dec, cfg)
    u_whole = pc.wy_values(a_whole, as32(v), as32(beta), cfg)
    nb = c // sb
    part = lambda x, i: as32(x[i * sb:(i + 1) * sb])  # noqa: E731
    blocks = [pc.ChunkBlock(*(part(x, i) for x in (q, k, beta, gamma, rel)))
              for i in range(nb)]
    f = pc.blocked_wy(blocks, cfg, w=True, scores=True)
    us = pc.blocked_values(f.a, [part(v, i) for i in range(nb)],
                           [x.beta for x in blocks], cfg)
    whole = lambda d: np.block([[np.asarray(d[i, j]) if j <= i else np.zeros((sb, sb))  # noqa: E731
                                 for j in range(nb)] for i in range(nb)])
    a = whole(f.a)
    for got, want in ((a, a_whole), (whole(f.p), p_whole), (np.concatenate(f.w), w_whole),
                      (np.concatenate(us), u_whole)):
        np.testing.assert_allclose(got, np.asarray(want), rtol=0, atol=1e-5)
    # and A really inverts I + M (M by its definition, in float64)
    m = np.tril(beta[:, None] * (k @ k.T) * np.asarray(dec.gam, np.float64), -1)
    np.testing.assert_allclose(a @ (np.eye(c) + m), np.eye(c), atol=1e-5)
    assert pc.blocked_wy(blocks, cfg, w=False, scores=False)[1:] == (None, None)


@pytest.mark.parametrize("t,chunk,wy_block,dtype,packed", [
    (100, 64, 16, jnp.float32, True),  # four sub-blocks; docs; T not a multiple of 64
    (64, 32, 16, jnp.float32, False),  # two sub-blocks
    (70, 64, 32, jnp.bfloat16, True),
])
def test_interpret_wy_block_forward_and_grads(t, chunk, wy_block, dtype, packed):
    inputs, h0 = make_inputs(t + wy_block, b=1, t=t, n=2, dk=16, dv=32, dtype=dtype)
    seg = _packed(1, t, t) if packed else None
    fn = _kernel("gpu", chunk, wy_block=wy_block, block_v=16, block_v_grads=16,
                 block_v_wy=16)
    _check(fn, inputs, h0, seg, dtype)


def test_wy_block_is_checked():
    (q, k, v, g, beta), _ = make_inputs(1, b=1, t=20, n=1, dk=8, dv=8)
    with pytest.raises(ValueError, match="wy_block must be 0 or a power of two"):
        gated_delta_rule_pallas_gpu(q, k, v, g, beta, chunk_size=32, wy_block=64,
                                    interpret=True)


def test_gpu_defaults_pad_v_and_fp32_policy():
    """V is padded to a multiple of 64 only where that is shorter than the power of two;
    fp32 inputs compile to 3xTF32 at one pipeline stage (the interpreter: HIGHEST)."""
    assert [default_pad_v(x) for x in (16, 48, 64, 96, 128, 192, 256, 320)] == \
        [0, 0, 0, 0, 0, 64, 0, 64]
    (q, k, v, _, _), _ = make_inputs(1, b=1, t=64, n=2, dk=96, dv=192)
    for interpret, precision in ((True, jax.lax.Precision.HIGHEST),
                                 (False, jax.lax.DotAlgorithmPreset.TF32_TF32_F32_X3)):
        cfg = gpu_config(q, k, v, scale=None, chunk=64, interpret=interpret, block_v=None)
        assert (cfg.pad_v, cfg.num_stages_state) == (64, 1)
        assert cfg.mm_precision == cfg.inv_precision == precision
    bf16 = [x.astype(jnp.bfloat16) for x in (q, k, v)]
    cfg = gpu_config(*bf16, scale=None, chunk=64, interpret=False, block_v=None, pad_v=0)
    assert (cfg.pad_v, cfg.num_stages_state, cfg.mm_precision) == (0, 2, None)


def test_gpu_default_v_blocks():
    """State passes: 64-wide V-blocks, 32 (bf16) where 64 leaves < 128 programs; gradient
    kernels: 64; never wider than the (padded) V; 4 warps in the state passes for bf16;
    bf16's reverse state pass on its own rule (`default_block_v_state_bwd`)."""
    bf16, f32 = jnp.bfloat16, jnp.float32
    assert default_block_v(bf16, 128, 0, 4 * 32) == 64  # 256 programs
    assert default_block_v(bf16, 128, 0, 2 * 32) == 64  # 128
    assert default_block_v(bf16, 128, 0, 1 * 32) == 32  # 64 at 64 wide
    assert default_block_v(bf16, 192, 64, 1 * 30) == 32  # the release at B=1: 90
    assert default_block_v(bf16, 192, 64, 2 * 30) == 64  # 180
    assert default_block_v(f32, 128, 0, 1) == 64  # fp32: not halved
    assert default_block_v(bf16, 32, 0, 1) == default_block_v(bf16, 32) == 32  # V itself
    assert default_block_v(bf16, 128) == default_block_v(f32, 256) == 64  # gradients
    (q, k, v, _, _), _ = make_inputs(1, b=1, t=64, n=2, dk=64, dv=128, dtype=bf16)
    cfg = gpu_config(q, k, v, scale=None, chunk=64, interpret=False, block_v=None)
    assert (cfg.block_v, cfg.block_v_grads, cfg.block_v_wy, cfg.num_warps_state) == \
        (32, 64, 128, 4)
    # The reverse state pass: the narrowest block whose programs fit one wave of SMs.
    assert (cfg.block_v_state_bwd, cfg.num_warps_state_bwd, cfg.num_stages_grads) == \
        (32, 4, 3)  # 2 heads x 4 blocks
    assert (cfg.num_warps_grads, cfg.num_warps_grads_wy, cfg.num_stages_grads_wy) == (8, 4, 2)
    assert default_block_v_state_bwd(128, 0, 4 * 32, 132) == 128  # 128 programs
    assert default_block_v_state_bwd(128, 0, 2 * 32, 132) == 64  # 128
    assert default_block_v_state_bwd(128, 0, 1 * 32, 132) == 32  # 128
    assert default_block_v_state_bwd(192, 64, 1 * 30, 132) == 64  # 90 (32: 180)
    assert default_block_v_state_bwd(192, 64, 8 * 30, 132) == 64  # none fits: widest
    assert default_block_v_state_bwd(16, 0, 1000, 132) == 16  # V itself
    cfg = gpu_config(q.astype(f32), k.astype(f32), v.astype(f32), scale=None, chunk=64,
                     interpret=False, block_v=None)
    assert (cfg.block_v_state_bwd, cfg.num_warps_state_bwd, cfg.num_stages_grads) == \
        (0, 0, 1)  # fp32: as the forward
    assert (cfg.num_warps_grads_wy, cfg.num_stages_grads_wy) == (0, 0)  # as grads_state
