"""The whole LM for every layer type: causality, packing, sliding-window reach, parameter
counts of the released shapes, a training step, and errors on bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from hybrid_jax.data.batch import Batch
from hybrid_jax.models.config import ConfigError, ModelConfig
from hybrid_jax.models.lm import LM, abstract_lm, count_params
from hybrid_jax.models.presets import (
    get_model_config,
    layer_pattern,
    olmo3_7b,
    olmo_hybrid_7b,
    research_model,
)
from hybrid_jax.train.state import TrainState
from hybrid_jax.train.step import make_train_step

from .test_layers import perturb

VOCAB = 97


def jitted(model: LM):
    graphdef, params = nnx.split(model)

    @jax.jit
    def fwd(tokens, segment_ids=None):
        return nnx.merge(graphdef, params)(tokens, segment_ids=segment_ids)

    return fwd


def small(layer_types, **kw) -> ModelConfig:
    kw.setdefault("sliding_window", 8)
    return research_model("transformer", "tiny", vocab_size=VOCAB, layer_types=layer_types,
                          n_kv_heads=2, **kw)


ARCHS = {
    "transformer": layer_pattern("transformer", 4),
    "hybrid": layer_pattern("hybrid", 4),
    "recurrent": layer_pattern("recurrent", 2),
    "swa_only": ("swa",),
    "full_only": ("full",),
}


@pytest.fixture(scope="module", params=list(ARCHS))
def model_fn(request):
    model = LM(small(ARCHS[request.param]), rngs=nnx.Rngs(0))
    perturb(model, 0, scale=0.05)
    return jitted(model)


def tokens(seed, b=2, t=90):
    return jnp.asarray(np.random.default_rng(seed).integers(0, VOCAB, (b, t)), jnp.int32)


def test_causality(model_fn):
    """Changing token t+1 never changes logits at <= t, and does change them at t+1."""
    x = tokens(1)
    base = model_fn(x)
    for t in (0, 40, 70):
        x2 = x.at[:, t + 1].set((x[:, t + 1] + 1) % VOCAB)
        out = model_fn(x2)
        np.testing.assert_allclose(out[:, : t + 1], base[:, : t + 1], atol=1e-6)
        assert not np.allclose(out[:, t + 1], base[:, t + 1], atol=1e-4)


def test_packed_documents_equal_separate(model_fn):
    """A window holding documents A|B|C gives A's, B's and C's logits run alone."""
    x = tokens(2, b=1, t=150)
    bounds = [(0, 23), (23, 130), (130, 150)]  # B crosses the 64-token chunk boundary
    seg = np.zeros((1, 150), np.int32)
    for i, (lo, hi) in enumerate(bounds):
        seg[:, lo:hi] = i + 1
    packed = model_fn(x, jnp.asarray(seg))
    for lo, hi in bounds:
        np.testing.assert_allclose(packed[:, lo:hi], model_fn(x[:, lo:hi]), atol=5e-5,
                                   rtol=5e-5)


def test_sliding_window_reach_through_the_model():
    """One "swa" layer with W = 8: logits at t ignore tokens <= t - W, see t - W + 1."""
    model = LM(small(("swa",), sliding_window=8), rngs=nnx.Rngs(1))
    perturb(model, 1, scale=0.05)
    fwd = jitted(model)
    x, t, w = tokens(3, b=1, t=60), 50, 8
    base = fwd(x)[:, t]
    for j, affects in ((t - w, False), (t - w - 5, False), (t - w + 1, True)):
        out = fwd(x.at[:, j].set((x[:, j] + 1) % VOCAB))[:, t]
        assert (not np.allclose(out, base, atol=1e-6)) == affects, f"token {j}"


def test_release_parameter_counts():
    assert count_params(abstract_lm(olmo3_7b())) == 7_298_011_136
    assert count_params(abstract_lm(olmo_hybrid_7b())) == 7_430_870_688


def test_every_parameter_has_logical_axes():
    model = abstract_lm(get_model_config("hybrid_tiny"))
    allowed = {"vocab", "embed", "heads", "kv_heads", "mlp", None}
    specs = nnx.get_partition_spec(nnx.state(model, nnx.Param))
    leaves = jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    assert leaves
    for spec in leaves:
        assert set(spec) <= allowed


@pytest.mark.parametrize("arch", ["transformer", "hybrid", "recurrent"])
def test_training_step_learns_on_cpu(arch):
    cfg = research_model(arch, "tiny", vocab_size=VOCAB)
    model = LM(cfg, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)
    tx = optax.adam(1e-2)
    state = TrainState.create(params, tx)
    step = make_train_step(graphdef, tx)
    # A repeating sequence is learnable in a few steps by every architecture.
    pattern = np.random.default_rng(0).integers(0, VOCAB, 16)
    rows = np.tile(pattern, (4, 9))[:, :129]
    batch = Batch.from_rows(rows)
    losses = []
    for _ in range(15):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    # Near-uniform initial predictions: the first loss is close to ln(vocab).
    assert losses[0] == pytest.approx(np.log(VOCAB), abs=0.15)
    assert losses[-1] < 0.5 * losses[0]
    assert np.isfinite(float(metrics["grad_norm"]))


@pytest.mark.parametrize("change,match", [
    (dict(layer_types=("swa", "mamba")), r"layer_types\[1\] = 'mamba'"),
    (dict(layer_types=()), "layer_types is empty"),
    (dict(n_heads=4, n_kv_heads=3), r"n_heads \(4\) is not divisible by n_kv_heads \(3\)"),
    (dict(d_model=0), "d_model must be a positive integer"),
    (dict(rope_theta=None, yarn={"factor": 8.0, "original_max_position": 16}),
     "yarn is set but rope_theta is None"),
    (dict(head_dim=15), r"head_dim \(15\) must be even"),
    (dict(gdn_heads=0), "gdn_heads must be a positive integer"),
    (dict(dtype="float64"), "dtype = 'float64' is not one of"),
    (dict(gdn_impl="cuda"), "gdn_impl = 'cuda' is not one of"),
    (dict(gdn_pieces=0), "gdn_pieces must be a positive integer"),
    (dict(sliding_window=0), "sliding_window must be a positive integer"),
])
def test_bad_config_names_the_field(change, match):
    base = research_model("hybrid", "tiny").to_dict()
    base.update(change)
    with pytest.raises(ConfigError, match=match):
        ModelConfig.from_dict(base)


def test_from_dict_rejects_unknown_and_missing_fields():
    d = research_model("hybrid", "tiny").to_dict()
    with pytest.raises(ConfigError, match="unknown model config field.*n_experts"):
        ModelConfig.from_dict({**d, "n_experts": 8})
    del d["vocab_size"]
    with pytest.raises(ConfigError, match="missing model config field.*vocab_size"):
        ModelConfig.from_dict(d)
    with pytest.raises(ConfigError, match="unknown model preset 'hybrid_2b'"):
        get_model_config("hybrid_2b")


def test_round_trip_through_dict():
    for cfg in (olmo3_7b(), olmo_hybrid_7b(), research_model("recurrent", "60m")):
        assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_token_ids_beyond_vocab_are_named():
    model = LM(small(("full",)), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"vocab_size=97.*max 200"):
        model(jnp.asarray([[1, 2, 200]]))
    with pytest.raises(ValueError, match="must be integers"):
        model(jnp.asarray([[1.0, 2.0]]))


def test_config_impl_choices_are_the_kernel_enums():
    """models/config.py lists the impls without importing jax (--help stays fast); the
    lists must be the kernels' enums, or a new kernel is refused by the config."""
    from hybrid_jax.kernels.impl import AttentionImpl, GdnImpl
    from hybrid_jax.models import config

    assert set(config._GDN_IMPLS) == {x.value for x in GdnImpl}
    assert set(config._ATTENTION_IMPLS) == {x.value for x in AttentionImpl}


def test_a_gdn_model_through_the_fused_kernels_matches_xla(monkeypatch):
    """A recurrent LM (two GDN layers) with gdn_impl=pallas_fused (the fused GPU kernels,
    in the Pallas interpreter here; reached through the config and the layer) gives the
    logits and parameter gradients of the chunked XLA form."""
    from hybrid_jax.kernels.gdn import pallas_gpu

    fused_calls = []
    real = pallas_gpu._Triton.fused_forward
    monkeypatch.setattr(pallas_gpu._Triton, "fused_forward",
                        lambda self, *a, **kw: fused_calls.append(kw) or real(self, *a, **kw))
    cfgs = {impl: small(("gdn", "gdn"), gdn_impl=impl, dtype="float32")
            for impl in ("xla", "pallas_fused")}
    base = LM(cfgs["xla"], rngs=nnx.Rngs(0))
    perturb(base, 0, scale=0.05)
    graphdef, params = nnx.split(base)
    x, seg = tokens(3, b=1, t=40), jnp.asarray([[0] * 25 + [1] * 15], jnp.int32)
    out = {}
    for impl, cfg in cfgs.items():
        model = nnx.merge(nnx.graphdef(LM(cfg, rngs=nnx.Rngs(0))), params)
        gd, ps = nnx.split(model)

        def loss(ps, gd=gd):
            logits = nnx.merge(gd, ps)(x, segment_ids=seg)
            return jnp.mean(jax.nn.log_softmax(logits)[..., 0]), logits

        (_, logits), grads = jax.value_and_grad(loss, has_aux=True)(ps)
        out[impl] = (np.asarray(logits), jax.tree.leaves(grads))
    assert [kw["save"] for kw in fused_calls] == [True, True]  # both layers, differentiated
    np.testing.assert_allclose(out["pallas_fused"][0], out["xla"][0], atol=2e-4, rtol=2e-4)
    for got, ref in zip(out["pallas_fused"][1], out["xla"][1]):
        np.testing.assert_allclose(got, ref, atol=2e-4, rtol=2e-3)


def test_a_hybrid_with_its_sequences_in_pieces_matches_the_whole():
    """gdn_pieces=3 (each GDN layer runs its sequences in three pieces side by side,
    `kernels/gdn/split.py`) gives the logits and parameter gradients of gdn_pieces=1,
    with a document starting inside the second piece."""
    cfgs = {p: small(("gdn", "full", "gdn"), gdn_impl="xla", gdn_pieces=p, gdn_chunk_size=16,
                     dtype="float32") for p in (1, 3)}
    base = LM(cfgs[1], rngs=nnx.Rngs(0))
    perturb(base, 0, scale=0.05)
    params = nnx.state(base)
    x, seg = tokens(4, b=2, t=70), jnp.asarray([[0] * 40 + [1] * 30] * 2, jnp.int32)
    out = {}
    for p, cfg in cfgs.items():
        gd = nnx.graphdef(LM(cfg, rngs=nnx.Rngs(0)))

        def loss(ps, gd=gd):
            logits = nnx.merge(gd, ps)(x, segment_ids=seg)
            return jnp.mean(jax.nn.log_softmax(logits)[..., 0]), logits

        (_, logits), grads = jax.value_and_grad(loss, has_aux=True)(params)
        out[p] = (np.asarray(logits), jax.tree.leaves(grads))
    np.testing.assert_allclose(out[3][0], out[1][0], atol=2e-5, rtol=2e-5)
    for got, ref in zip(out[3][1], out[1][1]):
        np.testing.assert_allclose(got, ref, atol=2e-5, rtol=2e-4)
