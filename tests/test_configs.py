"""Config files: variants, overrides, and their errors."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

from hybrid_jax.configlib import model_config, parse_arg
from hybrid_jax.models.config import ConfigError
from hybrid_jax.models.presets import olmo_hybrid_7b, research_model

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, CONFIGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config


def test_lm_config_variants_build_the_presets():
    config = load("lm")("arch=recurrent,size=60m")
    assert model_config(config) == research_model("recurrent", "60m", dtype="bfloat16")
    config.model.d_model = 512
    config.model.head_dim = 64
    assert model_config(config).d_model == 512
    assert load("lm")("").arch == "hybrid"


def test_olmo_config():
    config = load("olmo")("olmo_hybrid_7b")
    assert model_config(config) == olmo_hybrid_7b(dtype="bfloat16", param_dtype="bfloat16")


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown config argument 'depth'"):
        load("lm")("depth=3")
    with pytest.raises(ConfigError, match="size='2b' is not one of"):
        load("lm")("size=2b")
    with pytest.raises(ValueError, match="not a boolean"):
        parse_arg("flag=maybe", flag=False)
    assert parse_arg("n=3,x=0.5", n=1, x=0.0).to_dict() == {"n": 3, "x": 0.5}
