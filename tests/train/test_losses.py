"""The chunked loss head equals full logits + log-softmax: values and gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybrid_jax.train.losses import (
    chunked_head_objective,
    chunked_token_nll_and_log_z,
    token_nll_and_log_z,
)


def full(h, w, targets):
    logits = jnp.einsum("btd,dv->btv", h, w.astype(h.dtype), preferred_element_type=jnp.float32)
    return token_nll_and_log_z(logits, targets)


# ragged, even, one chunk, and 0: the whole logits at once
@pytest.mark.parametrize("t,seq_chunk", [(37, 8), (32, 16), (12, 64), (12, 0)])
def test_chunked_loss_equals_full_logits(t, seq_chunk):
    b, d, v = 3, 16, 50
    kh, kw, kt = jax.random.split(jax.random.key(t), 3)
    h = jax.random.normal(kh, (b, t, d))
    w = jax.random.normal(kw, (d, v)) * 0.5
    targets = jax.random.randint(kt, (b, t), 0, v)
    chunked = chunked_token_nll_and_log_z(h, w, targets, seq_chunk=seq_chunk)
    for got, want in zip(chunked, full(h, w, targets)):
        assert got.shape == (b, t)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)

    # The training objective: mean nll plus a z-loss, through both paths.
    weights = jax.random.uniform(kt, (b, t))

    def objective(fn, h, w):
        nll, log_z = fn(h, w, targets)
        return jnp.sum(weights * (nll + 1e-2 * log_z**2))

    got = jax.grad(lambda h, w: objective(
        lambda *a: chunked_token_nll_and_log_z(*a, seq_chunk=seq_chunk), h, w), (0, 1))(h, w)
    want = jax.grad(lambda h, w: objective(full, h, w), (0, 1))(h, w)
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seq_chunk", [16, 0])
def test_bf16_head_gradients_close_to_float32(seq_chunk):
    """bf16 hidden states (the training dtype) with float32 weights: the head's own
    backward casts the logits' gradient to bf16 for its two products; the gradients
    stay within bf16 rounding of the float32 ones, in the inputs' dtypes."""
    b, t, d, v = 2, 40, 32, 300
    kh, kw, kt = jax.random.split(jax.random.key(7), 3)
    h = jax.random.normal(kh, (b, t, d))
    w = jax.random.normal(kw, (d, v)) * 0.2
    targets = jax.random.randint(kt, (b, t), 0, v)
    weights = jax.random.uniform(kt, (b, t))

    def objective(h, w):
        nll, log_z = chunked_token_nll_and_log_z(h, w, targets, seq_chunk=seq_chunk)
        return jnp.sum(weights * (nll + 1e-2 * log_z**2))

    h16 = h.astype(jnp.bfloat16)
    dh, dw = jax.grad(objective, (0, 1))(h16, w)
    assert dh.dtype == jnp.bfloat16 and dw.dtype == jnp.float32
    ref_h, ref_w = jax.grad(objective, (0, 1))(h16.astype(jnp.float32), w)
    for g, r in ((dh, ref_h), (dw, ref_w)):
        err = np.linalg.norm(np.asarray(g, np.float32) - r) / np.linalg.norm(r)
        assert err < 1e-2, err


@pytest.mark.parametrize("dtype,t,seq_chunk", [(jnp.float32, 37, 8), (jnp.float32, 12, 0),
                                               (jnp.bfloat16, 40, 16)])
def test_head_objective_equals_the_loss_and_its_gradient(dtype, t, seq_chunk):
    """The objective with its gradient formed in the forward pass: the same value, sums
    and gradients as autodiff of the full logits' masked nll + z-loss (float32 exactly;
    bf16 hidden states within bf16 rounding); its two sums carry no gradient."""
    b, d, v, z_loss = 2, 16, 70, 1e-2
    kh, kw, kt, km = jax.random.split(jax.random.key(t), 4)
    h = jax.random.normal(kh, (b, t, d))
    w = jax.random.normal(kw, (d, v)) * 0.5
    targets = jax.random.randint(kt, (b, t), 0, v)
    mask = (jax.random.uniform(km, (b, t)) < 0.8).astype(jnp.float32)

    def reference(h, w):
        nll, log_z = full(h, w, targets)
        return jnp.sum(mask * nll) + z_loss * jnp.sum(mask * log_z**2), (
            jnp.sum(mask * nll), jnp.sum(mask * log_z**2))

    def ours(h, w):
        return chunked_head_objective(h, w, targets, mask, z_loss=z_loss, seq_chunk=seq_chunk)

    x = h.astype(dtype)
    (obj, sums), grads = jax.value_and_grad(ours, (0, 1), has_aux=True)(x, w)
    (ref_obj, ref_sums), ref_grads = jax.value_and_grad(reference, (0, 1), has_aux=True)(
        x.astype(jnp.float32), w)
    tol = 1e-5 if dtype == jnp.float32 else 1e-2
    np.testing.assert_allclose(obj, ref_obj, rtol=tol)
    np.testing.assert_allclose(sums, ref_sums, rtol=tol)
    assert grads[0].dtype == dtype and grads[1].dtype == jnp.float32
    for g, r in zip(grads, ref_grads):
        err = np.linalg.norm(np.asarray(g, np.float32) - r) / np.linalg.norm(r)
        assert err < tol, err
    # A cotangent other than 1 scales the gradient.
    g2 = jax.grad(lambda *a: 2.5 * ours(*a)[0], (0, 1))(x, w)
    np.testing.assert_allclose(np.asarray(g2[1]), 2.5 * np.asarray(grads[1]), rtol=1e-5)
    # The sums are values only.
    g_sum = jax.grad(lambda *a: ours(*a)[1][0], (0, 1))(x, w)
    assert all(float(jnp.abs(g.astype(jnp.float32)).max()) == 0.0 for g in g_sum)


def test_chunked_loss_keeps_one_chunk_of_logits():
    """XLA's buffer assignment for loss + gradients: the chunked head's temporaries
    are a fraction of the full logits' (which hold several [b, t, vocab] float32)."""
    b, t, d, v = 2, 1024, 32, 8192
    args = (jax.ShapeDtypeStruct((b, t, d), jnp.float32),
            jax.ShapeDtypeStruct((d, v), jnp.float32),
            jax.ShapeDtypeStruct((b, t), jnp.int32))

    def temp_bytes(fn):
        loss = lambda h, w, tg: jnp.sum(fn(h, w, tg)[0])  # noqa: E731
        return jax.jit(jax.grad(loss, (0, 1))).lower(*args).compile().memory_analysis() \
            .temp_size_in_bytes

    logits_bytes = b * t * v * 4
    full_temp = temp_bytes(full)
    chunked_temp = temp_bytes(lambda *a: chunked_token_nll_and_log_z(*a, seq_chunk=128))
    print(f"temporaries: full {full_temp / 2**20:.0f} MiB, chunked {chunked_temp / 2**20:.0f} "
          f"MiB (one logits array {logits_bytes / 2**20:.0f} MiB)")
    assert full_temp >= logits_bytes
    assert chunked_temp < logits_bytes / 2
    # The training step's objective (gradient formed in the forward) likewise.
    mask = jnp.ones((b, t), jnp.float32)
    objective_temp = temp_bytes(lambda h, w, tg: (chunked_head_objective(
        h, w, tg, mask, z_loss=1e-4, seq_chunk=128)[0][None],))
    print(f"objective: {objective_temp / 2**20:.0f} MiB")
    assert objective_temp < logits_bytes / 2


def test_negative_chunk_is_an_error():
    h, w, tg = jnp.zeros((1, 4, 2)), jnp.zeros((2, 3)), jnp.zeros((1, 4), jnp.int32)
    with pytest.raises(ValueError, match="seq_chunk must be >= 0"):
        chunked_token_nll_and_log_z(h, w, tg, seq_chunk=-1)
