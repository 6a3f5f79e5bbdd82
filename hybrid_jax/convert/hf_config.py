"""Hugging Face `config.json` of Olmo 3 / Olmo Hybrid <-> hybrid_jax `ModelConfig`.

Two model types are understood (reference/olmo_architectures.md sections 1-4, 8):

    olmo3        Olmo3ForCausalLM: "sliding_attention" / "full_attention" layers, RoPE on
                 every layer, YaRN (when configured) on the full-attention layers only.
    olmo_hybrid  OlmoHybridForCausalLM: "linear_attention" (Gated DeltaNet) and
                 "full_attention" layers; NoPE when `rope_theta` is null (the release).

RoPE settings, in any spelling transformers accepts (legacy `rope_theta` +
`rope_scaling`, `rope_parameters` nested by layer type, flat `rope_parameters`), are
read and written by the one rule of `hf_rope`, which reproduces transformers >= 5.13:
notably a legacy top-level `rope_theta` of an olmo3 config sets the full-attention
layers only (sliding layers keep 500000), so such a config with theta != 500000 and
sliding layers is refused (hybrid_jax has one theta); configs are written with an
explicit `rope_theta` per layer type.

Every key of config.json must be known: either used, or listed as irrelevant to the
forward pass (bookkeeping, init ranges, token ids). Anything else raises
`HfConfigError` naming all offending keys, as do values hybrid_jax cannot express
(biases, another activation, GVA heads in the GDN, ...). The vocabulary is taken as
stored: 100278 for Olmo 3, 100352 (padded) for Olmo Hybrid.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from typing import Any

from hybrid_jax.convert import hf_rope
from hybrid_jax.models.config import ConfigError, ModelConfig

MODEL_TYPES = ("olmo3", "olmo_hybrid")
ARCHITECTURES = {"olmo3": "Olmo3ForCausalLM", "olmo_hybrid": "OlmoHybridForCausalLM"}
GDN_OUTPUT_NORM_EPS = 1e-5  # hard-coded in HF OlmoHybridGatedDeltaNet (fla's default)
DOLMA2_EOS, DOLMA2_PAD = 100257, 100277
# Kept through a round trip although they do not change the forward pass.
HF_EXTRA_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id", "max_position_embeddings")

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
    try:
        if model_type == "olmo3":
            fields.update(hf_rope.olmo3_rope_fields(hf, layer_types))
        else:
            fields.update(hf_rope.hybrid_rope_fields(hf))
    except hf_rope.RopeConfigError as e:
        raise HfConfigError(str(e)) from None
    if model_type == "olmo3":
        window = hf.get("sliding_window", 4096)
        if "swa" in layer_types:
            if not isinstance(window, int) or window < 1:
                raise HfConfigError(f"sliding_window={window!r} must be a positive integer")
            # HF: query i reads keys i - window < j <= i, i.e. `window` keys incl. itself,
            # which is exactly ModelConfig.sliding_window.
            fields["sliding_window"] = window
    else:
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
def hf_extras(hf: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of config.json that do not change the forward pass but that a round trip
    must keep (token ids, max_position_embeddings), as stored; absent keys are left out."""
    return {k: hf[k] for k in HF_EXTRA_KEYS if k in hf}


def hf_config_from_model(
    cfg: ModelConfig,
    *,
    torch_dtype: str | None = None,
    extras: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """config.json for `cfg` (transformers >= 5.13 reads it as hybrid_jax computes).

    RoPE is written by `hf_rope`'s rule: Olmo 3 (swa/full layers) as `rope_parameters`
    with an explicit `rope_theta` for each layer type (YaRN on full_attention), Olmo
    Hybrid (gdn/full) as one flat `rope_parameters`. `extras` (see `hf_extras`: what an
    import read) gives the token ids and max_position_embeddings; without it the token
    ids default to dolma2's, dropped (null) when outside the vocabulary, which
    transformers would refuse. Raises HfConfigError if `cfg` has no HF equivalent or an
    extra token id lies outside the vocabulary.
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
        "eos_token_id": _in_vocab(DOLMA2_EOS, cfg.vocab_size),
        "pad_token_id": _in_vocab(DOLMA2_PAD, cfg.vocab_size),
        "use_cache": True,
    }
    for key, value in (extras or {}).items():
        if key not in HF_EXTRA_KEYS:
            raise HfConfigError(f"extras: {key!r} is not one of {HF_EXTRA_KEYS}")
        if key == "max_position_embeddings":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise HfConfigError(f"max_position_embeddings={value!r} must be a positive "
                                    "integer")
        else:
            _check_token_id(key, value, cfg.vocab_size)
        out[key] = value
    if torch_dtype is not None:
        out["dtype"] = torch_dtype
    if model_type == "olmo3":
        if cfg.head_dim * cfg.n_heads != cfg.d_model:
            out["head_dim"] = cfg.head_dim
        try:
            out["rope_parameters"] = hf_rope.olmo3_rope_json(cfg)
        except hf_rope.RopeConfigError as e:
            raise HfConfigError(str(e)) from None
        if "swa" in kinds:
            out["sliding_window"] = cfg.sliding_window
        else:
            out["sliding_window"] = None
        return out
    if cfg.gdn_norm_eps != GDN_OUTPUT_NORM_EPS:
        raise HfConfigError(f"gdn_norm_eps={cfg.gdn_norm_eps}: HF hard-codes 1e-5")
    out["rope_parameters"] = hf_rope.hybrid_rope_json(cfg)
    out.update(
        linear_num_key_heads=cfg.gdn_heads,
        linear_num_value_heads=cfg.gdn_heads,
        linear_key_head_dim=cfg.gdn_key_dim,
        linear_value_head_dim=cfg.gdn_value_dim,
        linear_conv_kernel_dim=cfg.gdn_conv_size,
        linear_allow_neg_eigval=cfg.gdn_allow_neg_eigval,
    )
    return out


# ---------------------------------------------------------------------------- helpers
def _in_vocab(token_id: int | None, vocab_size: int) -> int | None:
    return token_id if token_id is not None and 0 <= token_id < vocab_size else None


def _check_token_id(key: str, value: Any, vocab_size: int) -> None:
    """None, an id in [0, vocab_size), or (eos) a list of such ids."""
    ids = value if isinstance(value, list) and key == "eos_token_id" else [value]
    for t in ids:
        if t is None and len(ids) == 1:
            continue
        if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < vocab_size:
            raise HfConfigError(f"{key}={value!r} is not a token id of the vocabulary "
                                f"[0, {vocab_size})")


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
