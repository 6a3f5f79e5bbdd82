"""The released Olmo 7B shapes: `configs/olmo.py:olmo3_7b` or `:olmo_hybrid_7b`.

Used to score converted Hugging Face checkpoints and for benchmarks at the 7B shapes.
"""

from hybrid_jax.configlib import model_config_dict, parse_arg
from hybrid_jax.models.presets import RELEASES


def get_config(arg: str = ""):
    config = parse_arg(arg, release="olmo3_7b", dtype="bfloat16")
    if config.release not in RELEASES:
        raise ValueError(f"release={config.release!r} is not one of {tuple(RELEASES)}")
    config.model = model_config_dict(
        RELEASES[config.release](dtype=config.dtype, param_dtype=config.dtype)
    )
    return config
