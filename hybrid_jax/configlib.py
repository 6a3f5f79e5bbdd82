"""Helpers for the Python config files in `configs/` (big_vision style).

A config file defines `get_config(arg: str) -> ml_collections.ConfigDict`; `arg` is the
text after the colon in `--config=configs/lm.py:arch=hybrid,size=60m`, and any field
can then be overridden with `--config.model.d_model=512` and the like.
"""

from __future__ import annotations

from typing import Any

import ml_collections

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


def model_config_dict(cfg: ModelConfig) -> ml_collections.ConfigDict:
    """`cfg` as a ConfigDict whose fields can be overridden from the command line."""
    return ml_collections.ConfigDict(cfg.to_dict())
