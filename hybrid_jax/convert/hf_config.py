"""Hugging Face `config.json` of Olmo 3 / Olmo Hybrid <-> hybrid_jax `ModelConfig`.

Two model types are understood (reference/olmo_architectures.md sections 1-4, 8):

    olmo3        Olmo3ForCausalLM: "sliding_attention" / "full_attention" layers, RoPE on
                 every layer, YaRN (when configured) on the full-attention layers only.
    olmo_hybrid  OlmoHybridForCausalLM: "linear_attention" (Gated DeltaNet) and
                 "full_attention" layers; NoPE when `rope_theta` is null (the release).

RoPE settings come in three spellings, read as transformers >= 5.13 reads them:
  * legacy `rope_theta` + `rope_scaling` (the Olmo 3 release, written by 4.57): the
    scaling belongs to the full-attention layers;
  * `rope_parameters` nested by layer type ({"full_attention": {...},
    "sliding_attention": {...}}), written by transformers >= 5.13 for olmo3;
  * a flat `rope_parameters` dict (olmo_hybrid).
A flat YaRN dict in an *olmo3* config is refused: transformers 5.0-5.12 applied it to
every layer and >= 5.13 silently ignores it, so no reading of it is both faithful to
the release and equal to transformers.

Every key of config.json must be known: either used, or listed as irrelevant to the
forward pass (bookkeeping, init ranges, token ids). Anything else raises
`HfConfigError` naming all offending keys, as do values hybrid_jax cannot express
(biases, another activation, GVA heads in the GDN, ...). The vocabulary is taken as
stored: 100278 for Olmo 3, 100352 (padded) for Olmo Hybrid.
"""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Mapping
from typing import Any

from hybrid_jax.models.config import ConfigError, ModelConfig, YarnConfig

MODEL_TYPES = ("olmo3", "olmo_hybrid")
ARCHITECTURES = {"olmo3": "Olmo3ForCausalLM", "olmo_hybrid": "OlmoHybridForCausalLM"}
OLMO3_DEFAULT_THETA = 500_000.0  # Olmo3Config.default_theta
GDN_OUTPUT_NORM_EPS = 1e-5  # hard-coded in HF OlmoHybridGatedDeltaNet (fla's default)
DOLMA2_EOS, DOLMA2_PAD = 100257, 100277

_HF_LAYER_TYPE = {"sliding_attention": "swa", "full_attention": "full", "linear_attention": "gdn"}
_JAX_LAYER_TYPE = {"swa": "sliding_attention", "full": "full_attention", "gdn": "linear_attention"}

# Keys that do not change the forward pass: bookkeeping, generation, init ranges.
_IGNORED_KEYS = frozenset({
    "_name_or_path", "architectures", "transformers_version", "dtype", "torch_dtype",
    "use_cache", "initializer_range", "bos_token_id", "eos_token_id", "pad_token_id",
    "max_position_embeddings", "attention_dropout", "output_attentions",
    "output_hidden_states", "return_dict", "chunk_size_feed_forward", "id2label",
    "label2id", "problem_type", "is_encoder_decoder", "tokenizer_class",
    "linear_a_log_min", "linear_a_log_max", "linear_dt_min", "linear_dt_max",
    "linear_dt_init_floor", "keys_to_ignore_at_inference",
})
_COMMON_KEYS = frozenset({
    "model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "head_dim", "hidden_act", "rms_norm_eps",
    "tie_word_embeddings", "attention_bias", "mlp_bias", "layer_types", "rope_theta",
    "rope_scaling", "rope_parameters", "partial_rotary_factor",
})
_MODEL_KEYS = {
    "olmo3": frozenset({"sliding_window"}),
    "olmo_hybrid": frozenset({
        "linear_num_key_heads", "linear_num_value_heads", "linear_key_head_dim",
        "linear_value_head_dim", "linear_conv_kernel_dim", "linear_allow_neg_eigval",
    }),
}
_YARN_KEYS = frozenset({
    "rope_type", "type", "rope_theta", "factor", "original_max_position_embeddings",
    "beta_fast", "beta_slow", "attention_factor", "mscale", "mscale_all_dim", "truncate",
})


class HfConfigError(ConfigError):
    """config.json holds something hybrid_jax cannot convert; the message says what."""


# ---------------------------------------------------------------------------- reading
def read_config_json(path: str | pathlib.Path) -> dict[str, Any]:
    """The parsed config.json of a checkpoint directory (or the file itself)."""
    path = pathlib.Path(path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise HfConfigError(f"{path}: no config.json (is this a Hugging Face model directory?)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise HfConfigError(f"{path}: not valid JSON ({e})") from None


def model_config_from_hf(
    hf: Mapping[str, Any], *, dtype: str = "float32", param_dtype: str | None = None
) -> ModelConfig:
    """The hybrid_jax `ModelConfig` that computes what transformers computes for `hf`.

    Args:
      hf: the parsed config.json.
      dtype: compute dtype of the hybrid_jax model.
      param_dtype: parameter dtype (defaults to `dtype`).
    Raises:
      HfConfigError naming every unknown key, or the field whose value is unsupported.
    """
    hf = dict(hf)
    model_type = hf.get("model_type")
    if model_type not in MODEL_TYPES:
        raise HfConfigError(
            f"model_type {model_type!r} is not supported; hybrid_jax converts {MODEL_TYPES}"
        )
    unknown = sorted(set(hf) - _IGNORED_KEYS - _COMMON_KEYS - _MODEL_KEYS[model_type])
    if unknown:
        raise HfConfigError(
            f"config.json ({model_type}) has key(s) hybrid_jax does not know: "
            f"{', '.join(unknown)}; refusing to guess what they change"
        )
    _require(hf, "hidden_act", "silu", "the MLP is SwiGLU")
    _require(hf, "attention_bias", False, "hybrid_jax projections have no bias")
    _require(hf, "mlp_bias", False, "hybrid_jax projections have no bias")
    _require(hf, "partial_rotary_factor", 1.0, "hybrid_jax rotates the whole head")

    d = _int(hf, "hidden_size")
    n_heads = _int(hf, "num_attention_heads")
    n_kv = hf.get("num_key_value_heads")
    n_kv = n_heads if n_kv is None else _int(hf, "num_key_value_heads")
    n_layers = _int(hf, "num_hidden_layers")
    head_dim = hf.get("head_dim")
    if head_dim is None:
        head_dim = d // n_heads
    elif model_type == "olmo_hybrid" and head_dim != d // n_heads:
        raise HfConfigError(
            f"head_dim={head_dim}: OlmoHybrid derives it as hidden_size // "
            f"num_attention_heads = {d // n_heads} and ignores the key"
        )
    layer_types = _layer_types(hf, model_type, n_layers)

    fields: dict[str, Any] = dict(
        vocab_size=_int(hf, "vocab_size"),
        d_model=d,
        layer_types=layer_types,
        n_heads=n_heads,
        n_kv_heads=n_kv,
        head_dim=int(head_dim),
        mlp_dim=_int(hf, "intermediate_size"),
        norm_eps=float(hf.get("rms_norm_eps", 1e-6 if model_type == "olmo_hybrid" else 1e-5)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        qk_norm=True,
        dtype=dtype,
        param_dtype=param_dtype or dtype,
    )
    if model_type == "olmo3":
        fields.update(_olmo3_rope(hf, head_dim))
        window = hf.get("sliding_window", 4096)
        if "swa" in layer_types:
            if not isinstance(window, int) or window < 1:
                raise HfConfigError(f"sliding_window={window!r} must be a positive integer")
            # HF: query i reads keys i - window < j <= i, i.e. `window` keys incl. itself,
            # which is exactly ModelConfig.sliding_window.
            fields["sliding_window"] = window
    else:
        fields.update(_hybrid_rope(hf))
        fields.update(_gdn_fields(hf, n_heads, d))
    try:
        return ModelConfig(**fields)
    except ConfigError as e:
        raise HfConfigError(f"config.json ({model_type}) gives an invalid model: {e}") from None


def load_model_config(
    hf_dir: str | pathlib.Path, *, dtype: str = "float32", param_dtype: str | None = None
) -> ModelConfig:
    """`model_config_from_hf` of `hf_dir/config.json`, errors prefixed with the path."""
    hf = read_config_json(hf_dir)
    try:
        return model_config_from_hf(hf, dtype=dtype, param_dtype=param_dtype)
    except HfConfigError as e:
        raise HfConfigError(f"{pathlib.Path(hf_dir)}: {e}") from None


def _layer_types(hf: Mapping[str, Any], model_type: str, n_layers: int) -> tuple[str, ...]:
    stored = hf.get("layer_types")
    if stored is None:
        # The defaults of Olmo3Config / OlmoHybridConfig: every 4th layer full attention.
        if model_type == "olmo3":
            return tuple("full" if (i + 1) % 4 == 0 else "swa" for i in range(n_layers))
        types = ["full" if i % 4 == 3 else "gdn" for i in range(n_layers)]
        if "full" not in types:
            types[-1] = "full"
        return tuple(types)
    if len(stored) != n_layers:
        raise HfConfigError(
            f"layer_types has {len(stored)} entries but num_hidden_layers={n_layers}"
        )
    allowed = {
        "olmo3": ("sliding_attention", "full_attention"),
        "olmo_hybrid": ("linear_attention", "full_attention"),
    }[model_type]
    bad = sorted({t for t in stored if t not in allowed})
    if bad:
        raise HfConfigError(f"layer_types {bad} not supported for {model_type}: use {allowed}")
    return tuple(_HF_LAYER_TYPE[t] for t in stored)


# ---------------------------------------------------------------------------- RoPE
def _olmo3_rope(hf: Mapping[str, Any], head_dim: int) -> dict[str, Any]:
    """rope_theta and YaRN of an olmo3 config, as transformers >= 5.13 resolves them."""
    params = hf.get("rope_parameters")
    legacy_theta = hf.get("rope_theta")
    scaling = hf.get("rope_scaling")
    per_type: dict[str, dict[str, Any]] = {}
    if params is not None:
        if not isinstance(params, Mapping):
            raise HfConfigError(f"rope_parameters must be a dict, got {params!r}")
        flat = {k: v for k, v in params.items() if k not in _HF_LAYER_TYPE}
        flat_type = flat.get("rope_type", flat.get("type", "default"))
        if flat_type != "default":
            raise HfConfigError(
                f"olmo3 rope_parameters carries a flat rope_type={flat_type!r}: transformers "
                "5.0-5.12 applied it to every layer and >= 5.13 ignores it. Olmo 3 applies "
                "YaRN on full-attention layers only; write it as rope_parameters."
                "full_attention (or the legacy rope_scaling)"
            )
        for lt in ("sliding_attention", "full_attention"):
            if params.get(lt) is not None:
                per_type[lt] = dict(params[lt])
    # Olmo3Config.convert_rope_params_to_dict: legacy rope_scaling updates full_attention.
    if scaling is not None:
        per_type.setdefault("full_attention", {"rope_type": "default"}).update(scaling)
    theta_default = OLMO3_DEFAULT_THETA if legacy_theta is None else float(legacy_theta)
    thetas = {}
    for lt in ("sliding_attention", "full_attention"):
        spec = per_type.setdefault(lt, {"rope_type": "default"})
        spec.setdefault("rope_theta", theta_default)
        if spec["rope_theta"] is None:
            raise HfConfigError(f"olmo3 rope_parameters.{lt}.rope_theta is null: Olmo 3 has RoPE")
        thetas[lt] = float(spec["rope_theta"])
    if thetas["sliding_attention"] != thetas["full_attention"]:
        raise HfConfigError(
            f"rope_theta differs by layer type ({thetas}); hybrid_jax has one rope_theta"
        )
    sliding_type = per_type["sliding_attention"].get("rope_type", "default")
    if sliding_type != "default":
        raise HfConfigError(
            f"RoPE scaling {sliding_type!r} on sliding-window layers is not supported "
            "(Olmo 3 scales full-attention layers only)"
        )
    full = per_type["full_attention"]
    yarn = _yarn(full, head_dim, "rope_parameters.full_attention", hf)
    return {"rope_theta": thetas["full_attention"], "yarn": yarn}


def _hybrid_rope(hf: Mapping[str, Any]) -> dict[str, Any]:
    """NoPE (`rope_theta: null`) or RoPE/YaRN on the hybrid's attention layers."""
    params = hf.get("rope_parameters")
    if params is None:
        if "rope_theta" not in hf:
            raise HfConfigError(
                "olmo_hybrid config has neither rope_parameters nor rope_theta: transformers "
                "would silently use RoPE theta=10000, the release is NoPE. Write "
                '"rope_parameters": {"rope_type": "default", "rope_theta": null} for NoPE'
            )
        params = {"rope_theta": hf["rope_theta"]}
        if hf.get("rope_scaling"):
            params.update(hf["rope_scaling"])
    elif hf.get("rope_scaling"):
        raise HfConfigError("olmo_hybrid config has both rope_parameters and rope_scaling")
    if not isinstance(params, Mapping):
        raise HfConfigError(f"rope_parameters must be a dict, got {params!r}")
    nested = sorted(k for k in params if k in _HF_LAYER_TYPE)
    if nested:
        raise HfConfigError(f"olmo_hybrid rope_parameters nested by layer type {nested}: "
                            "transformers reads one flat dict for this model")
    if params.get("rope_theta") is None:
        rope_type = params.get("rope_type", params.get("type", "default"))
        if rope_type != "default":
            raise HfConfigError(f"rope_type={rope_type!r} with rope_theta null (NoPE)")
        return {"rope_theta": None, "yarn": None}
    theta = float(params["rope_theta"])
    # The hybrid's attention layers are all full attention; HF applies this one RoPE there.
    head_dim = _int(hf, "hidden_size") // _int(hf, "num_attention_heads")
    return {"rope_theta": theta, "yarn": _yarn(dict(params), head_dim, "rope_parameters", hf)}


def _yarn(
    spec: Mapping[str, Any], head_dim: int, where: str, hf: Mapping[str, Any]
) -> YarnConfig | None:
    """YarnConfig of one RoPE spec (None for plain RoPE), resolved as HF's
    `_compute_yarn_parameters` does (attention_factor from mscale when absent)."""
    rope_type = spec.get("rope_type", spec.get("type", "default"))
    if rope_type == "default":
        extra = sorted(set(spec) - {"rope_type", "type", "rope_theta"})
        if extra:
            raise HfConfigError(f"{where}: keys {extra} given with rope_type 'default'")
        return None
    if rope_type != "yarn":
        raise HfConfigError(f"{where}: rope_type {rope_type!r} is not supported (default, yarn)")
    unknown = sorted(set(spec) - _YARN_KEYS)
    if unknown:
        raise HfConfigError(f"{where}: unknown YaRN key(s) {unknown}")
    if spec.get("original_max_position_embeddings") is None:
        raise HfConfigError(f"{where}: YaRN needs original_max_position_embeddings")
    original = int(spec["original_max_position_embeddings"])
    factor = spec.get("factor")
    if factor is None:
        factor = float(hf["max_position_embeddings"]) / original
    factor = float(factor)
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
            truncate=bool(spec.get("truncate", True)),
        )
    except ConfigError as e:
        raise HfConfigError(f"{where}: {e}") from None


# ---------------------------------------------------------------------------- GDN
def _gdn_fields(hf: Mapping[str, Any], n_heads: int, d: int) -> dict[str, Any]:
    """Gated DeltaNet shapes, with OlmoHybridConfig's defaults for absent keys."""
    key_heads = hf.get("linear_num_key_heads") or n_heads
    value_heads = hf.get("linear_num_value_heads") or n_heads
    if key_heads != value_heads:
        raise HfConfigError(
            f"linear_num_key_heads={key_heads} != linear_num_value_heads={value_heads}: "
            "grouped value heads (GVA) are not supported by hybrid_jax's GDN"
        )
    key_dim = hf.get("linear_key_head_dim") or int(0.75 * d / key_heads)
    value_dim = hf.get("linear_value_head_dim") or 2 * key_dim
    return dict(
        gdn_heads=int(key_heads),
        gdn_key_dim=int(key_dim),
        gdn_value_dim=int(value_dim),
        gdn_conv_size=int(hf.get("linear_conv_kernel_dim", 4)),
        gdn_allow_neg_eigval=bool(hf.get("linear_allow_neg_eigval", True)),
        gdn_norm_eps=GDN_OUTPUT_NORM_EPS,
    )


# ---------------------------------------------------------------------------- writing
def hf_config_from_model(
    cfg: ModelConfig,
    *,
    torch_dtype: str | None = None,
    eos_token_id: int | None = DOLMA2_EOS,
    pad_token_id: int | None = DOLMA2_PAD,
) -> dict[str, Any]:
    """config.json for `cfg`, as the release writes it (transformers >= 5.13 reads it).

    Olmo 3 (swa/full layers) is written with the legacy `rope_theta` + `rope_scaling`
    of the release; Olmo Hybrid (gdn/full) with a flat `rope_parameters`. Token ids
    default to dolma2's and are dropped (null) when outside the vocabulary, which
    transformers would refuse. Raises HfConfigError if `cfg` has no HF equivalent.
    """
    kinds = set(cfg.layer_types)
    if "gdn" in kinds and "swa" in kinds:
        raise HfConfigError("a model with both sliding-window and GDN layers has no HF class")
    if "gdn" in kinds and "full" not in kinds:
        raise HfConfigError("OlmoHybrid needs at least one full-attention layer; "
                            "a pure-recurrent model has no HF class")
    model_type = "olmo_hybrid" if "gdn" in kinds else "olmo3"
    if not cfg.qk_norm:
        raise HfConfigError("qk_norm=False has no HF equivalent (Olmo attention has QK-norm)")
    if model_type == "olmo_hybrid" and cfg.head_dim * cfg.n_heads != cfg.d_model:
        raise HfConfigError(f"OlmoHybrid needs head_dim * n_heads == d_model, got "
                            f"{cfg.head_dim} * {cfg.n_heads} != {cfg.d_model}")
    out: dict[str, Any] = {
        "architectures": [ARCHITECTURES[model_type]],
        "model_type": model_type,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.mlp_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "hidden_act": "silu",
        "rms_norm_eps": cfg.norm_eps,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "tie_word_embeddings": cfg.tie_embeddings,
        "layer_types": [_JAX_LAYER_TYPE[t] for t in cfg.layer_types],
        # The release's 65536 = 8192 x YaRN factor 8; transformers warns unless they agree.
        "max_position_embeddings": (65536 if cfg.yarn is None else
                                    int(cfg.yarn.original_max_position * cfg.yarn.factor)),
        "bos_token_id": None,
        "eos_token_id": _in_vocab(eos_token_id, cfg.vocab_size),
        "pad_token_id": _in_vocab(pad_token_id, cfg.vocab_size),
        "use_cache": True,
    }
    if torch_dtype is not None:
        out["dtype"] = torch_dtype
    if model_type == "olmo3":
        if cfg.rope_theta is None:
            raise HfConfigError("Olmo 3 always has RoPE: rope_theta=None (NoPE) has no "
                                "olmo3 equivalent")
        if cfg.head_dim * cfg.n_heads != cfg.d_model:
            out["head_dim"] = cfg.head_dim
        out["rope_theta"] = cfg.rope_theta
        out["rope_scaling"] = None if cfg.yarn is None else _yarn_dict(cfg.yarn)
        if "swa" in kinds:
            out["sliding_window"] = cfg.sliding_window
        else:
            out["sliding_window"] = None
        return out
    if cfg.gdn_norm_eps != GDN_OUTPUT_NORM_EPS:
        raise HfConfigError(f"gdn_norm_eps={cfg.gdn_norm_eps}: HF hard-codes 1e-5")
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    if cfg.yarn is not None:
        rope.update(_yarn_dict(cfg.yarn))
    out["rope_parameters"] = rope
    out.update(
        linear_num_key_heads=cfg.gdn_heads,
        linear_num_value_heads=cfg.gdn_heads,
        linear_key_head_dim=cfg.gdn_key_dim,
        linear_value_head_dim=cfg.gdn_value_dim,
        linear_conv_kernel_dim=cfg.gdn_conv_size,
        linear_allow_neg_eigval=cfg.gdn_allow_neg_eigval,
    )
    return out


def _yarn_dict(yarn: YarnConfig) -> dict[str, Any]:
    out = {
        "rope_type": "yarn",
        "factor": yarn.factor,
        "original_max_position_embeddings": yarn.original_max_position,
        "beta_fast": yarn.beta_fast,
        "beta_slow": yarn.beta_slow,
        "attention_factor": yarn.scale,
    }
    if not yarn.truncate:
        out["truncate"] = False
    return out


# ---------------------------------------------------------------------------- helpers
def _in_vocab(token_id: int | None, vocab_size: int) -> int | None:
    return token_id if token_id is not None and 0 <= token_id < vocab_size else None


def _require(hf: Mapping[str, Any], key: str, value: Any, why: str) -> None:
    if key in hf and hf[key] is not None and hf[key] != value:
        raise HfConfigError(f"{key}={hf[key]!r} is not supported ({why}; need {value!r})")


def _int(hf: Mapping[str, Any], key: str) -> int:
    if key not in hf:
        raise HfConfigError(f"config.json lacks {key!r}")
    v = hf[key]
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise HfConfigError(f"{key}={v!r} must be a positive integer")
    return v
