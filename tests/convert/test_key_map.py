"""The key map: coverage of every parameter, name variants, and errors that list all."""

from __future__ import annotations

import numpy as np
import pytest

from hybrid_jax.convert.key_map import (
    CONV,
    TRANSPOSE,
    KeyMapError,
    Transform,
    build_key_map,
    check_map_covers_model,
    expected_leaf_shapes,
    match_keys,
)
from hybrid_jax.models.presets import olmo3_7b, olmo_hybrid_7b, research_model

TINY_HYBRID = research_model("hybrid", "tiny")
TINY_OLMO3 = research_model("transformer", "tiny")


def release_shapes(cfg) -> dict[str, tuple[int, ...]]:
    """name -> shape of a release-style checkpoint of `cfg`."""
    shapes = expected_leaf_shapes(cfg)
    return {leaf.hf_name: leaf.transform.hf_shape(shapes[leaf.path])
            for leaf in build_key_map(cfg)}


def test_release_tensor_counts_and_shapes():
    """355 / 523 tensors (olmo_architectures.md section 9) and the section 6 shapes."""
    for cfg, n in ((olmo3_7b(), 355), (olmo_hybrid_7b(), 523)):
        check_map_covers_model(cfg)
        assert len(build_key_map(cfg)) == n
    h = release_shapes(olmo_hybrid_7b())
    assert h["model.layers.0.linear_attn.q_proj.weight"] == (2880, 3840)
    assert h["model.layers.0.linear_attn.v_conv1d.weight"] == (5760, 1, 4)
    assert h["model.layers.0.linear_attn.o_norm.weight"] == (192,)
    assert h["model.layers.0.linear_attn.a_proj.weight"] == (30, 3840)
    assert h["model.layers.3.self_attn.q_norm.weight"] == (3840,)
    assert h["lm_head.weight"] == (100352, 3840)
    o = release_shapes(olmo3_7b())
    assert o["model.embed_tokens.weight"] == (100278, 4096)
    assert o["model.layers.0.mlp.down_proj.weight"] == (4096, 11008)


def test_norm_roles_depend_on_the_block():
    paths = {leaf.hf_name: leaf.path for leaf in build_key_map(TINY_HYBRID)}
    # GDN block (pre-norm): post_attention_layernorm is the pre-MLP norm.
    assert paths["model.layers.0.input_layernorm.weight"] == ("layers", 0, "attn_norm", "weight")
    assert paths["model.layers.0.post_attention_layernorm.weight"] == (
        "layers", 0, "mlp_norm", "weight")
    # Attention block (post-norm): it is the post-attention norm.
    assert paths["model.layers.3.post_attention_layernorm.weight"] == (
        "layers", 3, "attn_norm", "weight")
    assert paths["model.layers.3.post_feedforward_layernorm.weight"] == (
        "layers", 3, "mlp_norm", "weight")


def test_name_variants_fold_onto_release_names():
    shapes = release_shapes(TINY_HYBRID)
    variant = {}
    for name, shape in shapes.items():
        name = name.replace("input_layernorm", "attention_layer_norm")
        name = name.replace(".post_attention_layernorm", ".feedforward_layer_norm")
        name = name.replace("linear_attn.o_proj", "linear_attn.out_proj")
        name = name.replace("linear_attn.o_norm", "linear_attn.norm")
        variant[name] = shape
    # Layer 0 convs fused as transformers 5.23 holds them.
    qk, v = shapes["model.layers.0.linear_attn.q_conv1d.weight"][0], \
        shapes["model.layers.0.linear_attn.v_conv1d.weight"][0]
    for c in "qkv":
        del variant[f"model.layers.0.linear_attn.{c}_conv1d.weight"]
    variant["model.layers.0.linear_attn.conv1d.weight"] = (2 * qk + v, 1, 4)
    sources = match_keys(TINY_HYBRID, variant)
    assert len(sources) == len(shapes)
    conv = {s.leaf.path[-2]: s for s in sources if s.leaf.path[:2] == ("layers", 0)
            and s.transform.kind == "conv"}
    assert (conv["k_conv"].transform.start, conv["k_conv"].transform.stop) == (qk, 2 * qk)
    assert conv["v_conv"].stored_names == ("model.layers.0.linear_attn.conv1d.weight",)


def test_unknown_and_missing_are_all_listed():
    shapes = release_shapes(TINY_OLMO3)
    del shapes["model.layers.1.mlp.up_proj.weight"]
    del shapes["model.norm.weight"]
    shapes["model.layers.9.mlp.up_proj.weight"] = (2, 2)
    shapes["rotary_emb.inv_freq"] = (8,)
    with pytest.raises(KeyMapError) as e:
        match_keys(TINY_OLMO3, shapes, where="ckpt/dir")
    msg = str(e.value)
    for name in ("model.layers.1.mlp.up_proj.weight", "model.norm.weight",
                 "model.layers.9.mlp.up_proj.weight", "rotary_emb.inv_freq", "ckpt/dir"):
        assert name in msg
    assert "2 unknown" in msg and "2 missing" in msg


def test_shape_and_vocab_mismatch():
    shapes = release_shapes(TINY_OLMO3)
    shapes["model.embed_tokens.weight"] = (1000, 64)
    shapes["model.layers.0.self_attn.q_proj.weight"] = (64, 32)
    with pytest.raises(KeyMapError) as e:
        match_keys(TINY_OLMO3, shapes)
    msg = str(e.value)
    assert "vocab mismatch" in msg and "1000 rows" in msg
    assert "q_proj.weight: shape (64, 32), model expects (64, 64)" in msg


def test_doubly_provided_tensors():
    shapes = release_shapes(TINY_HYBRID)
    shapes["model.layers.0.attention_layer_norm.weight"] = (64,)
    shapes["model.layers.1.linear_attn.conv1d.weight"] = (192, 1, 4)
    with pytest.raises(KeyMapError) as e:
        match_keys(TINY_HYBRID, shapes)
    msg = str(e.value)
    assert "attention_layer_norm" in msg and "fused and separate" in msg


def test_conv_rows_that_fit_no_split_are_refused():
    shapes = release_shapes(TINY_HYBRID)
    shapes["model.layers.2.linear_attn.v_conv1d.weight"] = (95, 1, 4)
    with pytest.raises(KeyMapError, match="q/k/v conv shapes"):
        match_keys(TINY_HYBRID, shapes)


@pytest.mark.parametrize("index", [(slice(None), slice(None)), (slice(2, 5), slice(0, 3)),
                                   (slice(0, 4), slice(1, 6))])
def test_sliced_reads_equal_full_transforms(index):
    rng = np.random.default_rng(0)
    store = {"w": rng.standard_normal((6, 8)),
             "q": rng.standard_normal((5, 1, 4)), "k": rng.standard_normal((5, 1, 4)),
             "v": rng.standard_normal((7, 1, 4))}

    def reader(name, idx):
        return store[name][idx].copy()

    full_t = TRANSPOSE.to_jax(store["w"])  # [8, 6]
    np.testing.assert_array_equal(TRANSPOSE.read(reader, (("w", 6),), index), full_t[index])
    fused = np.concatenate([store["q"], store["k"], store["v"]])  # [17, 1, 4]
    # A leaf spanning rows [3, 12) of cat(q, k, v) stored as three uneven parts.
    leaf = Transform("conv", 3, 12)
    want = CONV.to_jax(fused[3:12])  # [4, 9]
    widx = (index[1] if index[1].stop is None or index[1].stop <= 4 else slice(0, 4),
            index[0])
    got = leaf.read(reader, (("q", 5), ("k", 5), ("v", 7)), widx)
    np.testing.assert_array_equal(got, want[widx])
    np.testing.assert_array_equal(CONV.to_hf(CONV.to_jax(store["v"])), store["v"])
