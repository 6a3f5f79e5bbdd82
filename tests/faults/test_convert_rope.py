"""Issue 24, defects 1-2: RoPE theta != 500000, exported and imported, against transformers.

transformers (>= 5.13) is the oracle every time; nothing here compares hybrid_jax with
itself (the round-trip tests passed while reader and writer shared the error). The
rule under test is `hybrid_jax.convert.hf_rope`'s docstring.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import transformers
from flax import nnx

from hybrid_jax.convert import export, parity
from hybrid_jax.convert.hf_config import HfConfigError, model_config_from_hf
from hybrid_jax.convert.safetensors_io import load_hf_model
from hybrid_jax.models.config import YarnConfig
from hybrid_jax.models.lm import LM
from hybrid_jax.models.presets import research_model
from hybrid_jax.models.rope import inverse_frequencies

from .convert_models import YARN, build, edit_config, max_abs_logit, save, tokens

TOL = 1e-5  # fp32 logits; measured 4.7e-7 (before the fix: 0.45 plain, 0.43 YaRN)
SMALL_YARN = YarnConfig(factor=8.0, original_max_position=16, beta_fast=32.0, beta_slow=1.0,
                        attention_factor=1.2079441541679836)


# ---------------------------------------------------------------------------- export
@pytest.mark.parametrize("arch", ["transformer", "hybrid"])
@pytest.mark.parametrize("yarn", [None, SMALL_YARN], ids=["plain", "yarn"])
def test_export_theta_1e4_scores_alike_in_transformers(tmp_path, arch, yarn):
    cfg = research_model(arch, "tiny", rope_theta=1e4, yarn=yarn)
    model = LM(cfg, rngs=nnx.Rngs(3))
    hf_dir = export.export_model(tmp_path / "hf", model)
    hf_model = parity.load_transformers_model(hf_dir)
    rope = hf_model.config.rope_parameters
    if arch == "transformer":  # transformers resolves theta 1e4 on both layer types
        assert rope["sliding_attention"]["rope_theta"] == 1e4
        assert rope["full_attention"]["rope_theta"] == 1e4
    else:
        assert rope["rope_theta"] == 1e4
    toks = np.random.default_rng(0).integers(0, cfg.vocab_size, (1, 48))
    diff = max_abs_logit(hf_model, model, toks)
    print(f"{arch} theta 1e4 {'yarn' if yarn else 'plain'}: max |dlogit| {diff:.2e}")
    assert diff <= TOL


# ---------------------------------------------------------------------------- import
def _legacy(directory, theta: float, yarn: bool) -> None:
    """Rewrite a saved olmo3 config.json in the two-key form of the release (4.57)."""
    import json

    cfg = json.loads((directory / "config.json").read_text())
    full = dict(cfg["rope_parameters"]["full_attention"])
    full.pop("rope_theta")
    edit_config(directory, rope_parameters=None, rope_theta=theta,
                rope_scaling=full if yarn else None)


@pytest.mark.parametrize("yarn", [False, True], ids=["plain", "yarn"])
def test_import_transformers_written_theta_1e4(tmp_path, yarn):
    """A config transformers wrote (nested, both layer types at 1e4) imports exactly."""
    full = {**YARN, "rope_theta": 1e4} if yarn else {"rope_type": "default", "rope_theta": 1e4}
    hf_model = build("olmo3", seed=4, rope_scaling=None, rope_parameters={
        "full_attention": full,
        "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}})
    d = save(hf_model, tmp_path / "hf")
    model = load_hf_model(d)
    assert model.cfg.rope_theta == 1e4 and (model.cfg.yarn is not None) == yarn
    diff = max_abs_logit(parity.load_transformers_model(d), model, tokens(48))
    print(f"import theta 1e4 {'yarn' if yarn else 'plain'}: max |dlogit| {diff:.2e}")
    assert diff <= TOL


@pytest.mark.parametrize("yarn", [False, True], ids=["plain", "yarn"])
def test_import_legacy_two_key_theta_is_refused(tmp_path, yarn):
    """rope_theta + rope_scaling, theta 1e4: transformers gives the sliding layers 5e5,
    which hybrid_jax (one theta) cannot express. Before: converted, max |dlogit| 0.67
    (argmax agreeing on 68-71% of tokens), exit 0."""
    d = save(build("olmo3", seed=0), tmp_path / "hf")
    _legacy(d, 1e4, yarn)
    rope = parity.load_transformers_model(d).config.rope_parameters
    assert rope["sliding_attention"]["rope_theta"] == 5e5  # the oracle's reading
    assert rope["full_attention"]["rope_theta"] == 1e4
    with pytest.raises(HfConfigError, match="sliding_attention.*one rope_theta"):
        load_hf_model(d)


def test_import_legacy_theta_on_full_layers_only_model(tmp_path):
    """The legacy theta does reach full-attention layers: a model without sliding layers
    converts with it and computes what transformers computes."""
    hf_model = build("olmo3", seed=5, rope_theta=1e4, layer_types=["full_attention"] * 4)
    d = save(hf_model, tmp_path / "hf")
    _legacy(d, 1e4, yarn=True)
    model = load_hf_model(d)
    assert model.cfg.rope_theta == 1e4 and model.cfg.layer_types == ("full",) * 4
    diff = max_abs_logit(parity.load_transformers_model(d), model, tokens(48))
    assert diff <= TOL


# ---------------------------------------------------------------------------- the rule
_BASE = dict(model_type="olmo3", vocab_size=256, hidden_size=64, intermediate_size=128,
             num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
             max_position_embeddings=128, sliding_window=8, pad_token_id=1, eos_token_id=2)


def _nested(full: dict | None, sliding: dict | None) -> dict:
    """Nested rope_parameters with distinct dicts (transformers fills them in place)."""
    return {"full_attention": None if full is None else dict(full),
            "sliding_attention": None if sliding is None else dict(sliding)}


_D = {"rope_type": "default"}
OLMO3_FORMS = {  # name: (rope keys of config.json, None if accepted else refusal regex)
    "release": (dict(rope_theta=5e5, rope_scaling=YARN), None),
    "no keys": ({}, None),
    "legacy 1e4": (dict(rope_theta=1e4), "one rope_theta"),
    "legacy 1e4 yarn": (dict(rope_theta=1e4, rope_scaling=YARN), "one rope_theta"),
    "nested both 1e4": (dict(rope_parameters=_nested({**_D, "rope_theta": 1e4},
                                                    {**_D, "rope_theta": 1e4})), None),
    "nested yarn, theta 2e4": (dict(rope_parameters=_nested(
        {**YARN, "rope_theta": 2e4}, {**_D, "rope_theta": 2e4})), None),
    "nested full only 1e4": (dict(rope_parameters={"full_attention": {**_D, "rope_theta": 1e4}}),
                             "one rope_theta"),
    "nested, legacy theta fills both": (dict(rope_theta=1e4, rope_parameters=_nested(_D, _D)),
                                        "one rope_theta"),
    "nested full null": (dict(rope_parameters=_nested(None, {**_D, "rope_theta": 5e5})), None),
    "nested + legacy scaling": (dict(rope_scaling=YARN, rope_parameters=_nested(
        {**_D, "rope_theta": 5e5}, {**_D, "rope_theta": 5e5})), None),
    "yarn without original": (dict(rope_parameters=_nested(
        {"rope_type": "yarn", "factor": 4.0}, _D)), None),
    "flat default 1e4": (dict(rope_parameters={**_D, "rope_theta": 1e4}), "beside the layer"),
    "flat yarn": (dict(rope_parameters={**YARN, "rope_theta": 5e5}), "beside the layer"),
    "legacy 'type' key": (dict(rope_scaling={"type": "yarn", "factor": 8.0,
                                             "original_max_position_embeddings": 16}),
                          "rope_type 'default'"),
    "truncate false": (dict(rope_parameters=_nested({**YARN, "truncate": False}, _D)),
                       "truncate"),
}


def _transformers_olmo3_rope(hf: dict) -> dict[str, tuple[np.ndarray, float]]:
    from transformers.models.olmo3.modeling_olmo3 import Olmo3RotaryEmbedding

    rotary = Olmo3RotaryEmbedding(transformers.Olmo3Config.from_dict(copy.deepcopy(hf)))
    return {lt: (getattr(rotary, f"{lt}_inv_freq").numpy(),
                 getattr(rotary, f"{lt}_attention_scaling")) for lt in rotary.layer_types}


@pytest.mark.parametrize("name", list(OLMO3_FORMS))
def test_olmo3_rope_rule_equals_transformers(name):
    """Every spelling: hybrid_jax's per-layer inv_freq and cos/sin scale are transformers'
    (its rotary embedding module, built from the same dict), or the config is refused."""
    rope_keys, refusal = OLMO3_FORMS[name]
    hf = {**_BASE, **copy.deepcopy(rope_keys)}
    oracle = _transformers_olmo3_rope(hf)
    if refusal is not None:
        with pytest.raises(HfConfigError, match=refusal):
            model_config_from_hf(hf)
        return
    cfg = model_config_from_hf(hf)
    for lt, jax_type in (("sliding_attention", "swa"), ("full_attention", "full")):
        yarn = cfg.yarn if jax_type == "full" else None
        inv, scale = oracle[lt]
        np.testing.assert_allclose(inverse_frequencies(cfg.head_dim, cfg.rope_theta, yarn),
                                   inv, rtol=2e-7, err_msg=lt)
        assert (1.0 if yarn is None else yarn.scale) == pytest.approx(scale, rel=1e-12), lt


HYBRID_FORMS = {
    "release NoPE": (dict(rope_parameters={**_D, "rope_theta": None}), None),
    "legacy null": (dict(rope_theta=None), None),
    "legacy 1e4": (dict(rope_theta=1e4), None),
    "legacy 1e4 yarn": (dict(rope_theta=1e4, rope_scaling=YARN), None),
    "flat 1e4": (dict(rope_parameters={**_D, "rope_theta": 1e4}), None),
    "flat yarn": (dict(rope_parameters={**YARN, "rope_theta": 1e4}), None),
    "flat yarn no truncate": (dict(rope_parameters={**YARN, "rope_theta": 1e4,
                                                    "original_max_position_embeddings": 256,
                                                    "truncate": False}), None),
    "flat, theta from legacy": (dict(rope_theta=2e4, rope_parameters=dict(_D)), None),
    "no theta anywhere": (dict(rope_parameters=dict(_D)), "theta=10000"),
    "no keys": ({}, "theta=10000"),
    "both spellings": (dict(rope_scaling=YARN, rope_parameters={**_D, "rope_theta": 3e4}),
                       "both"),
    "nested": (dict(rope_parameters={"full_attention": {**_D, "rope_theta": 1e4}}), "nested"),
}


@pytest.mark.parametrize("name", list(HYBRID_FORMS))
def test_hybrid_rope_rule_equals_transformers(name):
    """Olmo Hybrid: one RoPE on every full-attention layer (NoPE when theta is null)."""
    from transformers.models.olmo_hybrid.modeling_olmo_hybrid import OlmoHybridRotaryEmbedding

    rope_keys, refusal = HYBRID_FORMS[name]
    hf = {**_BASE, "model_type": "olmo_hybrid", "max_position_embeddings": 2048,
          "linear_num_key_heads": 4, "linear_num_value_heads": 4, "linear_key_head_dim": 12,
          "linear_value_head_dim": 24, **copy.deepcopy(rope_keys)}
    hf.pop("sliding_window")
    tcfg = transformers.OlmoHybridConfig.from_dict(copy.deepcopy(hf))
    if refusal is not None:
        with pytest.raises(HfConfigError, match=refusal):
            model_config_from_hf(hf)
        return
    cfg = model_config_from_hf(hf)
    if tcfg.rope_parameters.get("rope_theta") is None:  # the model builds no rotary_emb
        assert cfg.rope_theta is None and cfg.yarn is None
        return
    rotary = OlmoHybridRotaryEmbedding(tcfg)
    np.testing.assert_allclose(inverse_frequencies(cfg.head_dim, cfg.rope_theta, cfg.yarn),
                               rotary.inv_freq.numpy(), rtol=2e-7)
    assert (1.0 if cfg.yarn is None else cfg.yarn.scale) == pytest.approx(
        rotary.attention_scaling, rel=1e-12)
