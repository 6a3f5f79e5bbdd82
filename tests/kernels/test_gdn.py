"""Gated delta rule: chunked UT/WY form and decode step against the per-token recurrence,
and the recurrence against fla's independent torch implementation."""

from __future__ import annotations

import importlib.util
import itertools
import pathlib
import sys
import tempfile
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybrid_jax.kernels.gdn import (
    gated_delta_rule,
    gated_delta_rule_chunked,
    gated_delta_rule_recurrent,
    gated_delta_rule_step,
)

FLA_WHEEL = (pathlib.Path(__file__).resolve().parents[2] / ".." / "shared" / "wheels"
             / "fla_core-0.6.0-py3-none-any.whl")


def make_inputs(seed, b=2, t=100, n=3, dk=8, dv=12, *, neg_eigval=True, dtype=jnp.float32,
                g_range=(-4.0, -0.1)):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(b, t, n, dk))
    k = rng.normal(size=(b, t, n, dk))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    v = rng.normal(size=(b, t, n, dv))
    g = -np.exp(rng.uniform(np.log(-g_range[1]), np.log(-g_range[0]), size=(b, t, n)))
    beta = rng.uniform(0.0, 2.0 if neg_eigval else 1.0, size=(b, t, n))
    h0 = rng.normal(size=(b, n, dk, dv))
    arrays = [jnp.asarray(x, dtype) for x in (q, k, v)]
    arrays += [jnp.asarray(g, jnp.float32), jnp.asarray(beta, dtype)]
    return arrays, jnp.asarray(h0, jnp.float32)


CASES = list(itertools.product(
    [1, 17, 64, 100, 150],  # T: < chunk, == chunk, not a multiple of 64
    [True, False],  # negative eigenvalues
    [False, True],  # initial state
))


@pytest.mark.parametrize("t,neg_eigval,with_h0", CASES)
def test_chunked_equals_recurrent_fp32(t, neg_eigval, with_h0):
    (q, k, v, g, beta), h0 = make_inputs(t, t=t, neg_eigval=neg_eigval)
    h0 = h0 if with_h0 else None
    o_ref, s_ref = gated_delta_rule_recurrent(q, k, v, g, beta, initial_state=h0)
    for chunk in (64, 16):
        o, s = gated_delta_rule_chunked(q, k, v, g, beta, initial_state=h0, chunk_size=chunk)
        np.testing.assert_allclose(o, o_ref, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(s, s_ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("t,with_h0", [(17, True), (100, False), (150, True)])
def test_chunked_gradients_equal_recurrent(t, with_h0):
    (q, k, v, g, beta), h0 = make_inputs(100 + t, t=t, n=2)
    rng = np.random.default_rng(t)
    w_o = jnp.asarray(rng.normal(size=v.shape), jnp.float32)
    w_s = jnp.asarray(rng.normal(size=h0.shape), jnp.float32)

    def loss(fn, q, k, v, g, beta, h0):
        o, s = fn(q, k, v, g, beta, initial_state=h0 if with_h0 else None)
        return jnp.sum(o * w_o) + jnp.sum(s * w_s)

    args = (q, k, v, g, beta, h0)
    argnums = tuple(range(6 if with_h0 else 5))
    ref = jax.grad(lambda *a: loss(gated_delta_rule_recurrent, *a), argnums)(*args)
    got = jax.grad(lambda *a: loss(gated_delta_rule_chunked, *a), argnums)(*args)
    for name, r, x in zip(("q", "k", "v", "g", "beta", "h0"), ref, got):
        scale = float(jnp.max(jnp.abs(r)))
        np.testing.assert_allclose(x / scale, r / scale, atol=1e-5, err_msg=f"d/d{name}")


def test_bf16_inputs():
    """bf16 q, k, v, beta: both forms compute in fp32 and differ only by output rounding."""
    (q, k, v, g, beta), h0 = make_inputs(7, t=130, dtype=jnp.bfloat16)
    o_ref, s_ref = gated_delta_rule_recurrent(q, k, v, g, beta, initial_state=h0)
    o, s = gated_delta_rule_chunked(q, k, v, g, beta, initial_state=h0)
    assert o.dtype == jnp.bfloat16 and s.dtype == jnp.float32
    # One bf16 rounding of the output: relative error <= 2^-8.
    np.testing.assert_allclose(o.astype(np.float32), o_ref.astype(np.float32),
                               rtol=2**-7, atol=2**-7)
    np.testing.assert_allclose(s, s_ref, atol=1e-4, rtol=1e-4)
    dq = jax.grad(lambda q: jnp.sum(gated_delta_rule_chunked(q, k, v, g, beta)[0]
                                    .astype(jnp.float32)))(q)
    dq_ref = jax.grad(lambda q: jnp.sum(gated_delta_rule_recurrent(q, k, v, g, beta)[0]
                                        .astype(jnp.float32)))(q)
    assert dq.dtype == jnp.bfloat16
    np.testing.assert_allclose(dq.astype(np.float32), dq_ref.astype(np.float32),
                               rtol=2**-6, atol=2**-6)


def test_decode_steps_equal_full_sequence():
    (q, k, v, g, beta), h0 = make_inputs(3, t=70)
    o_full, s_full = gated_delta_rule_chunked(q, k, v, g, beta, initial_state=h0)
    state, outs = h0, []
    for i in range(q.shape[1]):
        o_i, state = gated_delta_rule_step(q[:, i], k[:, i], v[:, i], g[:, i], beta[:, i], state)
        outs.append(o_i)
    np.testing.assert_allclose(jnp.stack(outs, 1), o_full, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(state, s_full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fn", [gated_delta_rule_recurrent, gated_delta_rule_chunked])
def test_packed_documents_equal_separate_runs(fn):
    """A window holding docs A|B|C gives the per-token outputs of A, B, C run alone."""
    (q, k, v, g, beta), _ = make_inputs(11, b=1, t=150)
    bounds = [(0, 40), (40, 107), (107, 150)]  # B crosses the 64 boundary
    seg = np.zeros((1, 150), np.int32)
    for i, (lo, hi) in enumerate(bounds):
        seg[:, lo:hi] = [5, 9, 5][i]  # ids may repeat in non-adjacent documents
    o_packed, s_packed = fn(q, k, v, g, beta, segment_ids=jnp.asarray(seg))
    for lo, hi in bounds:
        o_alone, s_alone = fn(*(x[:, lo:hi] for x in (q, k, v, g, beta)))
        np.testing.assert_allclose(o_packed[:, lo:hi], o_alone, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(s_packed, s_alone, atol=1e-5, rtol=1e-5)  # last doc's state


def test_packed_documents_chunked_equals_recurrent_with_initial_state():
    """The initial state continues only the first document."""
    (q, k, v, g, beta), h0 = make_inputs(12, t=140)
    seg = jnp.asarray(np.repeat(np.arange(140)[None] // 33, 2, 0))
    ref = gated_delta_rule_recurrent(q, k, v, g, beta, initial_state=h0, segment_ids=seg)
    got = gated_delta_rule_chunked(q, k, v, g, beta, initial_state=h0, segment_ids=seg)
    for r, x in zip(ref, got):
        np.testing.assert_allclose(x, r, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("g_range,beta_lo,beta_hi", [
    ((-1e-6, -1e-7), 0.0, 1e-6),      # no decay, nearly no writes
    ((-1e-6, -1e-7), 2.0 - 1e-6, 2.0),  # no decay, beta at 2 (eigenvalue -1)
    ((-20.0, -19.0), 0.0, 2.0),       # near-total decay every step
])
def test_stress_gates_and_beta(g_range, beta_lo, beta_hi):
    (q, k, v, g, _), h0 = make_inputs(5, t=130, g_range=g_range)
    rng = np.random.default_rng(0)
    beta = jnp.asarray(rng.uniform(beta_lo, beta_hi, size=g.shape), jnp.float32)
    o_ref, s_ref = gated_delta_rule_recurrent(q, k, v, g, beta, initial_state=h0)
    o, s = gated_delta_rule_chunked(q, k, v, g, beta, initial_state=h0)
    grads = jax.grad(lambda *a: jnp.sum(gated_delta_rule_chunked(*a)[0]), (0, 1, 2, 3, 4))(
        q, k, v, g, beta)
    for x in (o, s, *grads):
        assert np.isfinite(np.asarray(x)).all()
    # Without decay and with beta near 2 the state grows to O(10): compare relative to
    # the largest magnitude, the fp32 criterion of the Pallas kernels too.
    for got, ref in ((o, o_ref), (s, s_ref)):
        scale = float(jnp.max(jnp.abs(ref)))
        np.testing.assert_allclose(got / scale, ref / scale, atol=1e-5)


def test_dispatch():
    (q, k, v, g, beta), _ = make_inputs(1, t=20)
    o_auto, _ = gated_delta_rule(q, k, v, g, beta)
    o_rec, _ = gated_delta_rule(q, k, v, g, beta, impl="recurrent")
    np.testing.assert_allclose(o_auto, o_rec, atol=1e-5)
    with pytest.raises(ValueError, match="gdn_impl='triton' is not one of"):
        gated_delta_rule(q, k, v, g, beta, impl="triton")
    with pytest.raises(ValueError, match="beta must be"):
        gated_delta_rule(q, k, v, g, beta[:, :-1])


# ----------------------------------------------------------------- independent oracle
def _load_fla_naive():
    """fla's naive.py loaded by file path: importing the fla package would pull Triton."""
    import einops  # noqa: F401  (fla's naive.py imports it)
    import torch  # CPU torch is the oracle's runtime (the `oracle` extra)

    if not FLA_WHEEL.exists():
        pytest.fail(f"{FLA_WHEEL} not found (../shared/wheels beside the checkout)")
    tmp = pathlib.Path(tempfile.mkdtemp()) / "fla_gdn_naive.py"
    with zipfile.ZipFile(FLA_WHEEL) as z:
        tmp.write_bytes(z.read("fla/ops/gated_delta_rule/naive.py"))
    spec = importlib.util.spec_from_file_location("fla_gdn_naive", tmp)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert "fla" not in sys.modules, "the fla package must not be imported"
    return torch, module


@pytest.mark.parametrize("t,with_h0", [(37, False), (150, True)])
def test_matches_fla_naive_recurrent(t, with_h0):
    torch, naive = _load_fla_naive()
    (q, k, v, g, beta), h0 = make_inputs(21 + t, t=t)
    h0 = h0 if with_h0 else None
    to_t = lambda x: torch.from_numpy(np.array(x, np.float32))
    o_fla, s_fla = naive.naive_recurrent_gated_delta_rule(
        to_t(q), to_t(k), to_t(v), beta=to_t(beta), g=to_t(g),
        initial_state=None if h0 is None else to_t(h0), output_final_state=True)
    for fn in (gated_delta_rule_recurrent, gated_delta_rule_chunked):
        o, s = fn(q, k, v, g, beta, initial_state=h0)
        np.testing.assert_allclose(o, o_fla.numpy(), atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(s, s_fla.numpy(), atol=1e-5, rtol=1e-5)
