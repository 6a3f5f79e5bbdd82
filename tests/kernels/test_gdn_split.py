"""Intra-sequence parallelism (`kernels/gdn/split.py`): a sequence cut into pieces gives
the per-token recurrence's outputs, final state and gradients, with documents that start
inside a piece, exactly at a piece's first token, and an initial state."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybrid_jax.kernels.gdn import gated_delta_rule, gated_delta_rule_recurrent
from hybrid_jax.kernels.gdn.dispatch import PALLAS_INTERPRET_ENV
from hybrid_jax.kernels.gdn.split import gated_delta_rule_split, piece_length
from tests.kernels.test_gdn import make_inputs


def _segments(b: int, t: int, starts: list[int]) -> jnp.ndarray:
    """Document ids [b, t] with a new document at each of `starts`."""
    ids = np.zeros((b, t), np.int32)
    for s in starts:
        ids[:, s:] += 1
    return jnp.asarray(ids)


def _max_err(got, ref):
    return [float(jnp.max(jnp.abs(a - r))) for a, r in zip(got, ref)]


@pytest.mark.parametrize("t,pieces,with_h0,docs", [
    (150, 2, False, "none"), (64, 4, False, "none"),
    (150, 3, True, "inside"), (200, 7, False, "inside"),
    (150, 3, False, "at_piece_start"), (64, 4, True, "at_piece_start"),
    (17, 2, False, "at_piece_start"),  # T < one chunk per piece: the tail is padding
    (200, 7, True, "at_piece_start"),
])
def test_split_equals_recurrent(t, pieces, with_h0, docs):
    (q, k, v, g, beta), h0 = make_inputs(t + pieces, t=t)
    h0 = h0 if with_h0 else None
    chunk = 16
    length = piece_length(t, pieces, chunk)
    starts = {"none": None, "inside": [t // 3, t // 3 + 5],
              "at_piece_start": [s for s in range(length, t, length)] + [t // 2 + 1]}[docs]
    assert length < t  # every case has a second piece (a piece start to put a document at)
    seg = None if starts is None else _segments(q.shape[0], t, starts)
    ref = gated_delta_rule_recurrent(q, k, v, g, beta, initial_state=h0, segment_ids=seg)
    got = gated_delta_rule(q, k, v, g, beta, initial_state=h0, segment_ids=seg, impl="xla",
                           chunk_size=chunk, pieces=pieces)
    assert got[0].shape == ref[0].shape and got[1].shape == ref[1].shape
    assert max(_max_err(got, ref)) < 2e-5


def test_split_gradients_equal_recurrent():
    """Every input's gradient, the initial state's included, through both kernel runs."""
    (q, k, v, g, beta), h0 = make_inputs(3, t=150)
    seg = _segments(2, 150, [48, 96, 100])  # 48 and 96: piece starts at L = 48

    def loss(fn):
        def f(*args):
            o, s = fn(*args)
            return jnp.sum(jnp.sin(o)) + jnp.sum(s ** 2)
        return f

    ref = jax.grad(loss(lambda *a: gated_delta_rule_recurrent(
        *a[:5], initial_state=a[5], segment_ids=seg)), argnums=range(6))(q, k, v, g, beta, h0)
    got = jax.grad(loss(lambda *a: gated_delta_rule(
        *a[:5], initial_state=a[5], segment_ids=seg, impl="xla", chunk_size=16, pieces=4)),
        argnums=range(6))(q, k, v, g, beta, h0)
    for name, e, r in zip("q k v g beta h0".split(), _max_err(got, ref), ref):
        assert e < 1e-4 * max(1.0, float(jnp.max(jnp.abs(r)))), (name, e)


@pytest.mark.parametrize("kernels", ["gpu", "tpu"])
def test_split_of_the_pallas_kernels_in_interpret_mode(kernels, monkeypatch):
    """The GPU (Triton) and TPU (Mosaic) kernels, in interpret mode, through the split:
    K and V not powers of two."""
    monkeypatch.setenv(PALLAS_INTERPRET_ENV, kernels)
    (q, k, v, g, beta), h0 = make_inputs(7, b=1, t=130, n=2, dk=12, dv=20)
    seg = _segments(1, 130, [64, 70])  # 64: the second piece's first token
    ref = gated_delta_rule_recurrent(q, k, v, g, beta, initial_state=h0, segment_ids=seg)
    got = gated_delta_rule(q, k, v, g, beta, initial_state=h0, segment_ids=seg,
                           impl="pallas", chunk_size=16, pieces=3)
    assert max(_max_err(got, ref)) < 1e-4


def test_bf16_inputs_through_the_split():
    (q, k, v, g, beta), _ = make_inputs(9, t=128, dtype=jnp.bfloat16)
    whole = gated_delta_rule(q, k, v, g, beta, impl="xla")
    split = gated_delta_rule(q, k, v, g, beta, impl="xla", pieces=4)
    ref = gated_delta_rule_recurrent(*(x.astype(jnp.float32) for x in (q, k, v, g, beta)))
    assert split[0].dtype == jnp.bfloat16
    # the split's error against fp32 is that of the whole-sequence kernel, not more
    e_whole, e_split = _max_err(whole, ref), _max_err(split, ref)
    assert e_split[0] < 2 * e_whole[0] + 1e-2 and e_split[1] < 2 * e_whole[1] + 1e-2


def test_one_piece_is_the_kernel_itself_and_bad_pieces_are_refused():
    (q, k, v, g, beta), _ = make_inputs(1, t=20)
    calls = []

    def fn(*args, **kwargs):
        calls.append(args[0].shape)
        return gated_delta_rule_recurrent(*args, **kwargs)

    gated_delta_rule_split(fn, q, k, v, g, beta, pieces=1)
    assert calls == [q.shape]  # one call on the whole sequence
    calls.clear()
    gated_delta_rule_split(fn, q, k, v, g, beta, pieces=2, chunk_size=8)
    assert calls == [(4, 16, 3, 8)] * 2  # two runs over b * pieces sequences of L = 16
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError, match="pieces must be a positive integer"):
            gated_delta_rule(q, k, v, g, beta, pieces=bad)
