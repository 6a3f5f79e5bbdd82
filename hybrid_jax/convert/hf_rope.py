"""The RoPE settings of an Olmo 3 / Olmo Hybrid config.json, read and written by one rule.

The rule is what transformers >= 5.13 does (read in 5.25: `Olmo3Config.
convert_rope_params_to_dict`, `RotaryEmbeddingConfigMixin.convert_rope_params_to_dict` /
`standardize_rope_params`, `_compute_yarn_parameters`, the two models' rotary
embeddings). Reading reproduces it step by step, so whatever spelling a config uses,
hybrid_jax computes what transformers computes, or refuses with the reason; writing
emits the one spelling that every reader resolves the same way: explicit `rope_theta`
per layer type, no legacy keys.

Olmo 3 (`olmo3`): one RoPE per layer type, `rope_parameters.full_attention` and
`rope_parameters.sliding_attention`, built as transformers builds them:
  1. start from `rope_parameters` (absent: both types `{"rope_type": "default"}`);
  2. a legacy `rope_scaling` dict is merged into `full_attention` (only there);
  3. a type that is absent or null becomes `{"rope_type": "default"}`;
  4. `full_attention.rope_theta` defaults to the legacy top-level `rope_theta`, else
     500000; `sliding_attention.rope_theta` defaults to 500000 ALWAYS: the legacy
     `rope_theta` never reaches the sliding-window layers (transformers pops it once);
  5. YaRN's `original_max_position_embeddings` defaults to `max_position_embeddings`
     (2048 when absent), and its `truncate` is read from the top level of
     `rope_parameters`, never from `full_attention` (so it is always True).
  hybrid_jax has one theta for all layers and YaRN on full layers only, so the thetas of
  the layer types present must agree, sliding layers must be plain RoPE, and a
  `truncate` that transformers would ignore, or flat keys beside the layer types (which
  it ignores), are refused. Written: both types with explicit `rope_theta`.

Olmo Hybrid (`olmo_hybrid`): one flat dict for every full-attention layer:
  1. a non-empty legacy `rope_scaling` replaces `rope_parameters` whole (refused when
     both are given: transformers would drop `rope_parameters`);
  2. `rope_theta` defaults to the legacy top-level `rope_theta` (null allowed), else
     10000; we refuse that last default (the release is NoPE; a config without any theta
     is more likely a mistake than a request for 10000);
  3. `rope_theta` null means NoPE (no rotary embedding at all);
  4. YaRN as for Olmo 3, with `truncate` read from the same flat dict.
  Nested by layer type is refused (transformers would read it as NoPE). Written: the
  flat dict with explicit `rope_theta` (null for NoPE).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from hybrid_jax.models.config import ConfigError, ModelConfig, YarnConfig

OLMO3_DEFAULT_THETA = 500_000.0  # Olmo3Config.default_theta
HYBRID_DEFAULT_THETA = 10_000.0  # RotaryEmbeddingConfigMixin.default_theta
# Class defaults of max_position_embeddings (YaRN's default original context).
DEFAULT_MAX_POSITIONS = {"olmo3": 2048, "olmo_hybrid": 65536}
OLMO3_TYPES = ("sliding_attention", "full_attention")
_JAX_TYPE = {"sliding_attention": "swa", "full_attention": "full"}
_YARN_KEYS = frozenset({
    "rope_type", "type", "rope_theta", "factor", "original_max_position_embeddings",
    "beta_fast", "beta_slow", "attention_factor", "mscale", "mscale_all_dim", "truncate",
})


class RopeConfigError(ConfigError):
    """The RoPE settings of a config.json cannot be converted; base of HfConfigError."""


def max_positions(hf: Mapping[str, Any], model_type: str) -> int:
    """`max_position_embeddings` as the config class reads it (its default when absent)."""
    return int(hf.get("max_position_embeddings") or DEFAULT_MAX_POSITIONS[model_type])


def _rope_type(spec: Mapping[str, Any]) -> str:
    # standardize_rope_params: setdefault("rope_type", spec.get("type", "default")).
    return spec.get("rope_type", spec.get("type", "default"))


# ---------------------------------------------------------------------------- Olmo 3
def olmo3_rope_parameters(hf: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{layer type: RoPE dict} of an olmo3 config, resolved as transformers resolves it
    (steps 1-5 of the module docstring; `truncate` not filled in)."""
    params = hf.get("rope_parameters")
    if params is not None and not isinstance(params, Mapping):
        raise RopeConfigError(f"rope_parameters must be a dict, got {params!r}")
    flat = sorted(k for k in (params or {}) if k not in OLMO3_TYPES)
    if flat:
        raise RopeConfigError(
            f"olmo3 rope_parameters has key(s) {flat} beside the layer types: transformers "
            ">= 5.13 ignores them (truncate aside) and reads only rope_parameters."
            "full_attention / .sliding_attention; put every setting there")
    # Each layer type's dict copied on its own: transformers fills them in place.
    p: dict[str, Any] = ({lt: {"rope_type": "default"} for lt in OLMO3_TYPES}
                         if params is None else
                         {k: dict(v) if isinstance(v, Mapping) else v for k, v in params.items()})
    scaling = hf.get("rope_scaling")
    if scaling is not None:
        if not isinstance(scaling, Mapping):
            raise RopeConfigError(f"rope_scaling must be a dict or null, got {scaling!r}")
        if not isinstance(p.get("full_attention"), Mapping):
            raise RopeConfigError(
                "rope_scaling given with a rope_parameters that lacks full_attention: "
                "transformers cannot load this config")
        p["full_attention"].update(scaling)
    for lt in OLMO3_TYPES:
        if p.get(lt) is None:
            p[lt] = {"rope_type": "default"}
        elif not isinstance(p[lt], Mapping):
            raise RopeConfigError(f"rope_parameters.{lt} must be a dict, got {p[lt]!r}")
    legacy = hf["rope_theta"] if "rope_theta" in hf else OLMO3_DEFAULT_THETA
    p["full_attention"].setdefault("rope_theta", legacy)
    p["sliding_attention"].setdefault("rope_theta", OLMO3_DEFAULT_THETA)
    max_pos = max_positions(hf, "olmo3")
    for lt in OLMO3_TYPES:
        p[lt].setdefault("rope_type", _rope_type(p[lt]))
        if p[lt]["rope_type"] == "yarn":
            p[lt].setdefault("original_max_position_embeddings", max_pos)
    return p


def olmo3_rope_fields(hf: Mapping[str, Any], layer_types: tuple[str, ...]) -> dict[str, Any]:
    """`rope_theta` and `yarn` of the ModelConfig for an olmo3 config (see module doc)."""
    p = olmo3_rope_parameters(hf)
    present = [lt for lt in OLMO3_TYPES if _JAX_TYPE[lt] in layer_types]
    thetas = {}
    for lt in present:
        theta = p[lt]["rope_theta"]
        if theta is None:
            raise RopeConfigError(f"olmo3 rope_parameters.{lt}.rope_theta is null: "
                                  "Olmo 3 has RoPE on every layer")
        thetas[lt] = float(theta)
    if len(set(thetas.values())) > 1:
        legacy = ("; a legacy top-level rope_theta sets full-attention layers only, the "
                  "sliding ones keep 500000" if "rope_theta" in hf else "")
        raise RopeConfigError(
            f"transformers applies rope_theta {thetas['full_attention']:g} on full_attention "
            f"and {thetas['sliding_attention']:g} on sliding_attention layers{legacy}; "
            "hybrid_jax has one rope_theta for all layers")
    if "sliding_attention" in present and p["sliding_attention"]["rope_type"] != "default":
        raise RopeConfigError(
            f"RoPE scaling {p['sliding_attention']['rope_type']!r} on sliding-window layers "
            "is not supported (hybrid_jax scales full-attention layers only, as Olmo 3)")
    yarn = None
    if "full_attention" in present:
        full = p["full_attention"]
        if full.get("truncate", True) is not True:
            raise RopeConfigError(
                f"rope_parameters.full_attention.truncate={full['truncate']!r}: "
                "transformers >= 5.13 ignores it for olmo3 (it reads a top-level key and "
                "truncates); drop the key or set it true")
        yarn = yarn_config(full, "rope_parameters.full_attention", truncate=True,
                           max_positions=max_positions(hf, "olmo3"))
    return {"rope_theta": next(iter(thetas.values())), "yarn": yarn}


def olmo3_rope_json(cfg: ModelConfig) -> dict[str, Any]:
    """The `rope_parameters` written for an Olmo 3 model: both layer types, explicit theta."""
    if cfg.rope_theta is None:
        raise RopeConfigError("Olmo 3 always has RoPE: rope_theta=None (NoPE) has no "
                              "olmo3 equivalent")
    if cfg.yarn is not None and not cfg.yarn.truncate:
        raise RopeConfigError("yarn.truncate=False has no olmo3 equivalent: transformers "
                              ">= 5.13 always truncates YaRN's correction range for olmo3")
    full: dict[str, Any] = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    if cfg.yarn is not None:
        full.update(yarn_json(cfg.yarn))
    return {"full_attention": full,
            "sliding_attention": {"rope_type": "default", "rope_theta": cfg.rope_theta}}


# ---------------------------------------------------------------------------- Olmo Hybrid
def hybrid_rope_parameters(hf: Mapping[str, Any]) -> dict[str, Any]:
    """The flat RoPE dict of an olmo_hybrid config, resolved as transformers resolves it
    (steps 1-4 of the module docstring); `rope_theta` None means NoPE."""
    params, scaling = hf.get("rope_parameters"), hf.get("rope_scaling")
    if scaling and params is not None:
        raise RopeConfigError("olmo_hybrid config has both rope_parameters and rope_scaling: "
                              "transformers would drop rope_parameters; keep one")
    p = scaling or params
    if p is not None and not isinstance(p, Mapping):
        raise RopeConfigError(f"rope_parameters must be a dict, got {p!r}")
    p = copy.deepcopy(dict(p or {}))
    types = set(hf.get("layer_types") or ("linear_attention", "full_attention"))
    nested = sorted(k for k in p if k in types | {"full_attention", "linear_attention"})
    if nested:
        raise RopeConfigError(f"olmo_hybrid rope_parameters nested by layer type {nested}: "
                              "transformers reads one flat dict for this model (and a nested "
                              "one as NoPE)")
    if "rope_theta" not in p:
        if "rope_theta" not in hf:
            raise RopeConfigError(
                "olmo_hybrid config gives no rope_theta: transformers would silently use "
                "RoPE theta=10000, the release is NoPE. Write "
                '"rope_parameters": {"rope_type": "default", "rope_theta": null} for NoPE')
        p["rope_theta"] = hf["rope_theta"]
    p.setdefault("rope_type", _rope_type(p))
    if p["rope_type"] == "yarn":
        p.setdefault("original_max_position_embeddings", max_positions(hf, "olmo_hybrid"))
    return p


def hybrid_rope_fields(hf: Mapping[str, Any]) -> dict[str, Any]:
    """`rope_theta` and `yarn` of the ModelConfig for an olmo_hybrid config."""
    p = hybrid_rope_parameters(hf)
    if p["rope_theta"] is None:
        if p["rope_type"] != "default":
            raise RopeConfigError(f"rope_type={p['rope_type']!r} with rope_theta null: "
                                  "transformers applies no RoPE at all (NoPE); drop one")
        return {"rope_theta": None, "yarn": None}
    truncate = p.get("truncate", True)
    if not isinstance(truncate, bool):
        raise RopeConfigError(f"rope_parameters.truncate={truncate!r} must be true or false")
    return {"rope_theta": float(p["rope_theta"]),
            "yarn": yarn_config(p, "rope_parameters", truncate=truncate,
                                max_positions=max_positions(hf, "olmo_hybrid"))}


def hybrid_rope_json(cfg: ModelConfig) -> dict[str, Any]:
    """The flat `rope_parameters` written for an Olmo Hybrid model."""
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    if cfg.yarn is not None:
        rope.update(yarn_json(cfg.yarn))
        if not cfg.yarn.truncate:
            rope["truncate"] = False
    return rope


# ---------------------------------------------------------------------------- YaRN
def yarn_config(spec: Mapping[str, Any], where: str, *, truncate: bool,
                max_positions: int) -> YarnConfig | None:
    """YarnConfig of one resolved RoPE dict (None for plain RoPE), with HF's defaults:
    `factor` null -> max_positions / original, `attention_factor` from mscale, a falsy
    beta -> 32 / 1."""
    rope_type = spec["rope_type"]
    if rope_type == "default":
        extra = sorted(set(spec) - {"rope_type", "type", "rope_theta"})
        if extra:
            raise RopeConfigError(
                f"{where}: keys {extra} given with rope_type 'default' (transformers "
                "ignores them; a legacy 'type' key does not set rope_type there)")
        return None
    if rope_type != "yarn":
        raise RopeConfigError(f"{where}: rope_type {rope_type!r} is not supported "
                              "(default, yarn)")
    unknown = sorted(set(spec) - _YARN_KEYS)
    if unknown:
        raise RopeConfigError(f"{where}: unknown YaRN key(s) {unknown}")
    if "factor" not in spec:
        raise RopeConfigError(f"{where}: YaRN needs factor (transformers fails without it)")
    original = int(spec["original_max_position_embeddings"])
    factor = spec["factor"]
    factor = float(max_positions / original if factor is None else factor)
    attention_factor = spec.get("attention_factor")
    if attention_factor is None:
        mscale, mscale_all = spec.get("mscale"), spec.get("mscale_all_dim")

        def get_mscale(scale: float, m: float = 1.0) -> float:
            return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

        if mscale and mscale_all:
            attention_factor = get_mscale(factor, mscale) / get_mscale(factor, mscale_all)
        else:
            attention_factor = get_mscale(factor)
    try:
        return YarnConfig(
            factor=factor,
            original_max_position=original,
            # HF treats a falsy beta as its default (`get("beta_fast") or 32`).
            beta_fast=float(spec.get("beta_fast") or 32.0),
            beta_slow=float(spec.get("beta_slow") or 1.0),
            attention_factor=float(attention_factor),
            truncate=truncate,
        )
    except ConfigError as e:
        raise RopeConfigError(f"{where}: {e}") from None


def yarn_json(yarn: YarnConfig) -> dict[str, Any]:
    """The YaRN keys written (every value explicit: no reader's default is relied on)."""
    return {
        "rope_type": "yarn",
        "factor": yarn.factor,
        "original_max_position_embeddings": yarn.original_max_position,
        "beta_fast": yarn.beta_fast,
        "beta_slow": yarn.beta_slow,
        "attention_factor": yarn.scale,
    }
