"""Helpers for the Python config files in `configs/` (big_vision style).

A config file defines `get_config(arg: str) -> ml_collections.ConfigDict`; `arg` is the
text after the colon in `--config=configs/lm.py:arch=hybrid,size=60m`, and any field
can then be overridden with `--config.model.d_model=512` and the like:
`--config.model.layer_types=gggf` (layer codes s / f / g, or names "gdn,gdn,gdn,full"),
`--config.model.rope_theta=10000.0` on a NoPE model,
`--config.model.yarn="{'factor': 8.0, 'original_max_position': 8192}"`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections
from ml_collections import config_dict

from hybrid_jax.models.config import ModelConfig


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
    """Parse 'key=value,key=value' against `defaults` (which fix the keys and types).

    A bare 'value' (no '=') sets the first key. Unknown keys are an error.
    """
    out = dict(defaults)
    keys = list(defaults)
    for i, item in enumerate(x for x in (arg or "").split(",") if x.strip()):
        if "=" in item:
            key, value = (s.strip() for s in item.split("=", 1))
        elif i == 0 and keys:
            key, value = keys[0], item.strip()
        else:
            raise ValueError(f"config argument {item!r} is not key=value")
        if key not in defaults:
            raise ValueError(
                f"unknown config argument {key!r}; known: {', '.join(keys) or 'none'}"
            )
        out[key] = _coerce(value, defaults[key], key)
    return ml_collections.ConfigDict(out)


def _coerce(value: str, default: Any, key: str) -> Any:
    if isinstance(default, bool):
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"config argument {key}={value!r} is not a boolean")
        return value.lower() in ("true", "1")
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    return value


def model_config(config: ml_collections.ConfigDict) -> ModelConfig:
    """The validated `ModelConfig` of `config.model`."""
    return ModelConfig.from_dict(config.model.to_dict())


# Types of the ModelConfig fields that may be None, so a None field still takes an
# override (ml_collections cannot parse a value for a field of type NoneType).
_OPTIONAL_TYPES = {"rope_theta": float, "yarn": ml_collections.ConfigDict}


def model_config_dict(cfg: ModelConfig) -> ml_collections.ConfigDict:
    """`cfg` as a ConfigDict whose every field can be overridden from the command line.

    `layer_types` is a tuple (ml_collections overrides tuples, not lists; a single
    string such as "gggf" arrives as a 1-tuple, which `ModelConfig` expands), and a
    None field is a typed placeholder.
    """
    d = cfg.to_dict()
    d["layer_types"] = tuple(cfg.layer_types)
    for f in dataclasses.fields(cfg):
        if d[f.name] is None and f.name in _OPTIONAL_TYPES:
            d[f.name] = config_dict.placeholder(_OPTIONAL_TYPES[f.name])
    return ml_collections.ConfigDict(d)
