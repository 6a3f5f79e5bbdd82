"""config.json <-> ModelConfig: the releases, the RoPE spellings, and refusals."""

from __future__ import annotations

import copy

import pytest

from hybrid_jax.convert.hf_config import (
    HfConfigError,
    hf_config_from_model,
    model_config_from_hf,
)
from hybrid_jax.models.presets import olmo3_7b, olmo_hybrid_7b, research_model

# The release configs as reference/olmo_architectures.md describes them (sections 1, 2,
# 4): Olmo 3 written by transformers 4.57 (legacy rope_theta + rope_scaling), the
# hybrid by >= 5.3 (flat rope_parameters, NoPE).
OLMO3_RELEASE = {
    "architectures": ["Olmo3ForCausalLM"], "model_type": "olmo3",
    "attention_bias": False, "attention_dropout": 0.0, "eos_token_id": 100257,
    "pad_token_id": 100277, "hidden_act": "silu", "hidden_size": 4096,
    "initializer_range": 0.02, "intermediate_size": 11008,
    "layer_types": ["full_attention" if (i + 1) % 4 == 0 else "sliding_attention"
                    for i in range(32)],
    "max_position_embeddings": 65536, "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 32, "rms_norm_eps": 1e-06,
    "rope_scaling": {"attention_factor": 1.2079441541679836, "beta_fast": 32, "beta_slow": 1,
                     "factor": 8.0, "original_max_position_embeddings": 8192,
                     "rope_type": "yarn"},
    "rope_theta": 500000, "sliding_window": 4096, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "transformers_version": "4.57.1", "use_cache": True,
    "vocab_size": 100278,
}
HYBRID_RELEASE = {
    "architectures": ["OlmoHybridForCausalLM"], "model_type": "olmo_hybrid",
    "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": None,
    "eos_token_id": 100257, "pad_token_id": 100277, "hidden_act": "silu",
    "hidden_size": 3840, "initializer_range": 0.02, "intermediate_size": 11008,
    "layer_types": ["full_attention" if i % 4 == 3 else "linear_attention"
                    for i in range(32)],
    "linear_a_log_max": 16.0, "linear_a_log_min": 0.0, "linear_allow_neg_eigval": True,
    "linear_conv_kernel_dim": 4, "linear_dt_init_floor": 0.0001, "linear_dt_max": 0.1,
    "linear_dt_min": 0.001, "linear_key_head_dim": 96, "linear_num_key_heads": 30,
    "linear_num_value_heads": 30, "linear_value_head_dim": 192,
    "max_position_embeddings": 65536, "num_attention_heads": 30, "num_hidden_layers": 32,
    "num_key_value_heads": 30, "rms_norm_eps": 1e-06,
    "rope_parameters": {"rope_theta": None, "rope_type": "default"},
    "tie_word_embeddings": False, "dtype": "bfloat16", "transformers_version": "5.3.0",
    "use_cache": True, "vocab_size": 100352,
}


def test_releases_map_to_presets():
    assert model_config_from_hf(OLMO3_RELEASE) == olmo3_7b()
    assert model_config_from_hf(HYBRID_RELEASE) == olmo_hybrid_7b()
    bf16 = model_config_from_hf(HYBRID_RELEASE, dtype="bfloat16")
    assert bf16.param_dtype == "bfloat16" and bf16.vocab_size == 100352  # as stored


def test_olmo3_nested_rope_parameters_as_transformers_5_13_writes_them():
    hf = copy.deepcopy(OLMO3_RELEASE)
    scaling = hf.pop("rope_scaling")
    hf.pop("rope_theta")
    hf["rope_parameters"] = {"full_attention": {**scaling, "rope_theta": 500000.0},
                             "sliding_attention": {"rope_type": "default",
                                                   "rope_theta": 500000.0}}
    assert model_config_from_hf(hf) == olmo3_7b()


def test_yarn_attention_factor_defaults_like_transformers():
    hf = copy.deepcopy(OLMO3_RELEASE)
    del hf["rope_scaling"]["attention_factor"]
    yarn = model_config_from_hf(hf).yarn
    assert yarn.attention_factor == pytest.approx(1.2079441541679836, abs=1e-15)


@pytest.mark.parametrize("change, match", [
    (lambda h: h.update(rope_parameters={"rope_type": "yarn", "factor": 8.0,
                                         "original_max_position_embeddings": 8192,
                                         "rope_theta": 5e5}), "beside the layer types"),
    (lambda h: h.update(model_type="llama"), "model_type 'llama' is not supported"),
    (lambda h: h.update(attention_bias=True), "attention_bias"),
    (lambda h: h.update(hidden_act="gelu"), "hidden_act"),
    (lambda h: h.update(foo=1, bar=2), "bar, foo"),
    (lambda h: h.update(layer_types=["linear_attention"] * 32), "layer_types"),
    (lambda h: h["rope_scaling"].update(rope_type="longrope"), "longrope"),
    (lambda h: h.update(num_hidden_layers=31), "31"),
])
def test_olmo3_refusals(change, match):
    hf = copy.deepcopy(OLMO3_RELEASE)
    change(hf)
    with pytest.raises(HfConfigError, match=match):
        model_config_from_hf(hf)


@pytest.mark.parametrize("change, match", [
    (lambda h: h.pop("rope_parameters"), "theta=10000"),  # transformers' silent default
    (lambda h: h.update(linear_num_value_heads=60), "GVA"),
    (lambda h: h.update(mystery_flag=True), "mystery_flag"),
])
def test_hybrid_refusals(change, match):
    hf = copy.deepcopy(HYBRID_RELEASE)
    change(hf)
    with pytest.raises(HfConfigError, match=match):
        model_config_from_hf(hf)


def test_hybrid_with_rope_is_read():
    hf = copy.deepcopy(HYBRID_RELEASE)
    hf["rope_parameters"] = {"rope_type": "default", "rope_theta": 500000.0}
    assert model_config_from_hf(hf).rope_theta == 500000.0


@pytest.mark.parametrize("cfg", [olmo3_7b(), olmo_hybrid_7b(),
                                 research_model("transformer", "60m"),
                                 research_model("hybrid", "tiny")])
def test_written_config_reads_back(cfg):
    # Fields a layer type the model lacks would use are not written: compare the rest.
    if not cfg.has_gdn:
        cfg = cfg.replace(gdn_heads=0, gdn_key_dim=0, gdn_value_dim=0)
    if "swa" not in cfg.layer_types:
        cfg = cfg.replace(sliding_window=4096)
    assert model_config_from_hf(hf_config_from_model(cfg)) == cfg


def test_unexportable_models():
    with pytest.raises(HfConfigError, match="pure-recurrent"):
        hf_config_from_model(research_model("recurrent", "tiny"))
    with pytest.raises(HfConfigError, match="NoPE"):
        hf_config_from_model(olmo3_7b(rope_theta=None, yarn=None))


def test_transformers_reads_written_configs_as_intended():
    """YaRN on full-attention layers only; NoPE for the hybrid; token ids kept in vocab."""
    import transformers  # version checked in conftest.py
    o3 = transformers.Olmo3Config.from_dict(hf_config_from_model(olmo3_7b()))
    assert o3.rope_parameters["full_attention"]["rope_type"] == "yarn"
    assert o3.rope_parameters["full_attention"]["factor"] == 8.0
    assert o3.rope_parameters["sliding_attention"]["rope_type"] == "default"
    assert o3.sliding_window == 4096
    hy = transformers.OlmoHybridConfig.from_dict(hf_config_from_model(olmo_hybrid_7b()))
    assert hy.rope_parameters["rope_theta"] is None
    assert hy.linear_key_head_dim == 96 and hy.linear_value_head_dim == 192
    tiny = hf_config_from_model(research_model("hybrid", "tiny"))
    assert tiny["pad_token_id"] is None and tiny["eos_token_id"] is None  # vocab 512
