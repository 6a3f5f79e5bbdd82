"""Schedules (hand-computed values), FLOP counts, the optimizer mask, micro-batching."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from hybrid_jax.data.batch import Batch
from hybrid_jax.models.lm import LM
from hybrid_jax.models.presets import olmo3_7b, research_model
from hybrid_jax.train import schedules
from hybrid_jax.train.flops import forward_flops_per_token, matmul_params
from hybrid_jax.train.optimizer import decay_mask
from hybrid_jax.train.state import TrainState
from hybrid_jax.train.step import make_train_step


def test_wsd_s_windows_and_values():
    ends = schedules.budget_steps((0.5, 1.0, 2.0), unit_tokens=1000.0, tokens_per_step=10)
    assert ends == [50, 100, 200]
    windows = schedules.decay_windows(ends, (0.5, 1.0, 2.0), 0.1, warmup_steps=10)
    assert [(w.start, w.end) for w in windows] == [(45, 50), (90, 100), (180, 200)]
    lr = schedules.make_schedule("wsd_s", peak=1.0, steps=200, warmup_steps=10,
                                 windows=windows)
    values = {s: float(lr(s)) for s in (0, 9, 10, 44, 45, 49, 50, 90, 99, 100, 199)}
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert values[10] == values[44] == values[50] == values[100] == 1.0
    # Inside [45, 50): peak * (50 - s) / 6 -> 5/6 ... 1/6.
    assert values[45] == pytest.approx(5 / 6) and values[49] == pytest.approx(1 / 6)
    assert values[90] == pytest.approx(10 / 11) and values[99] == pytest.approx(1 / 11)
    assert values[199] == pytest.approx(1 / 21)


def test_wsd_and_cosine_values():
    wsd = schedules.make_schedule("wsd", peak=2.0, steps=100, warmup_steps=0,
                                  decay_fraction=0.2)
    assert float(wsd(79)) == 2.0 and float(wsd(80)) == pytest.approx(2.0 * 20 / 21)
    cos = schedules.make_schedule("cosine", peak=1.0, steps=110, warmup_steps=10,
                                  final_fraction=0.1)
    assert float(cos(10)) == pytest.approx(1.0)
    assert float(cos(60)) == pytest.approx(0.55)  # half way: 0.1 + 0.9 * 0.5
    assert float(cos(110)) == pytest.approx(0.1)


def test_schedule_errors_name_the_problem():
    with pytest.raises(ValueError, match="increasing and distinct"):
        schedules.budget_steps((1.0, 1.0001), 100.0, 10)
    with pytest.raises(ValueError, match="inside the warmup"):
        schedules.decay_windows([5], (1.0,), 0.1, warmup_steps=10)
    with pytest.raises(ValueError, match="not one of cosine"):
        schedules.make_schedule("linear", peak=1.0, steps=10, warmup_steps=1)


def test_flops_hand_count():
    # One full-attention layer, d = 8, n = g = 2, h = 4, m = 16, vocab 10, T = 4:
    # matmuls 8*8*2 + 8*8*2 (q, o, k, v) + 3*8*16 + 8*10 = 128 + 128 + 384 + 80 = 720;
    # attention 4 * n * h * mean keys (2.5) = 80 per token.
    cfg = research_model("transformer", "tiny", vocab_size=10, d_model=8, n_heads=2,
                         n_kv_heads=2, head_dim=4, mlp_dim=16, layer_types=("full",))
    assert matmul_params(cfg) == 720
    assert forward_flops_per_token(cfg, 4) == 2 * 720 + 80
    # A window of W keys over T tokens averages W - W(W-1)/(2T) keys: W=2, T=4 -> 1.75.
    swa = cfg.replace(layer_types=("swa",), sliding_window=2)
    assert forward_flops_per_token(swa, 4) == 2 * 720 + 4 * 2 * 4 * 1.75
    # 7B transformer: 2N-ish matmul FLOPs, N excluding the input embedding.
    assert matmul_params(olmo3_7b()) == 7_298_011_136 - 100_278 * 4096 - 32 * 4 * 4096 - 4096


def test_weight_decay_mask():
    _, params = nnx.split(LM(research_model("hybrid", "tiny"), rngs=nnx.Rngs(0)), nnx.Param)
    flat = {jax.tree_util.keystr(p): v for p, v in
            jax.tree_util.tree_leaves_with_path(decay_mask(params))}
    decayed = {k for k, v in flat.items() if v}
    assert not any("embed" in k and "lm_head" not in k for k in decayed)
    assert not any("norm" in k or "A_log" in k or "dt_bias" in k for k in decayed)
    assert any("lm_head" in k for k in decayed) and any("q_proj" in k for k in decayed)


def test_microbatches_give_the_same_update():
    cfg = research_model("hybrid", "tiny", vocab_size=97)
    graphdef, params = nnx.split(LM(cfg, rngs=nnx.Rngs(0)), nnx.Param)
    tx = optax.sgd(0.1)
    rows = np.random.default_rng(0).integers(0, 97, (4, 33))
    seg = np.repeat(np.array([[1] * 20 + [2] * 13]), 4, 0)
    seg[1, 25:] = 0  # padding: fewer targets in one row, so rows weigh differently
    batch = Batch.from_rows(rows, seg)
    out = []
    for micro in (1, 2, 4):
        state = TrainState.create(jax.tree.map(jnp.copy, params), tx)
        state, metrics = make_train_step(graphdef, tx, microbatches=micro)(state, batch)
        out.append((state.params, float(metrics["loss"])))
    for p, loss in out[1:]:
        assert loss == pytest.approx(out[0][1], rel=1e-6)
        for a, b in zip(jax.tree.leaves(out[0][0]), jax.tree.leaves(p)):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
