"""`ModelConfig`: every shape and switch of a hybrid_jax language model, validated.

One blueprint covers all architectures: `layer_types` lists, per layer,
    "swa"   sliding-window softmax attention (Olmo 3 post-norm block)
    "full"  full causal softmax attention (Olmo 3 post-norm block)
    "gdn"   Gated DeltaNet (Olmo Hybrid pre-norm block)
The transformer, hybrid and pure-recurrent research models and the two Olmo 7B releases
are presets (`presets.py`) that differ only in these values. `layer_types` may also be
given as one string, of layer codes (`s` swa, `f` full, `g` gdn: "gggf" is the tiny
hybrid) or comma-separated names ("gdn,gdn,gdn,full"), as a command line gives it.

Bad values raise `ConfigError` naming the field, at construction time.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hybrid_jax.errors import UserError

if TYPE_CHECKING:  # jax is imported where used: configs/*.py load this for a tool's --help
    import jax.numpy as jnp

LAYER_TYPES = ("swa", "full", "gdn")
LAYER_CODES = {"s": "swa", "f": "full", "g": "gdn"}  # "sssf", "gggf", "gggg"
_DTYPES = ("float32", "bfloat16", "float16")
_ATTENTION_IMPLS = ("auto", "xla", "cudnn", "pallas", "splash")  # = AttentionImpl
_GDN_IMPLS = (  # = kernels.impl.GdnImpl
    "auto", "xla", "pallas", "pallas_fused", "pallas_unfused", "recurrent")


class ConfigError(UserError, ValueError):
    """A configuration value is invalid; the message names the field."""


@dataclasses.dataclass(frozen=True)
class YarnConfig:
    """YaRN RoPE scaling (arXiv 2309.00071), as HF `_compute_yarn_parameters` defines it.

    Olmo 3 applies it on full-attention layers only: factor 8, original context 8192,
    beta_fast 32, beta_slow 1, attention_factor 1.2079441541679836 (= 0.1 ln 8 + 1).
    `attention_factor=None` means that default, 0.1 ln(factor) + 1.
    """

    factor: float
    original_max_position: int
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    attention_factor: float | None = None
    truncate: bool = True

    def __post_init__(self) -> None:
        if self.factor < 1:
            raise ConfigError(f"yarn.factor must be >= 1, got {self.factor}")
        if self.original_max_position < 1:
            raise ConfigError(
                f"yarn.original_max_position must be >= 1, got {self.original_max_position}"
            )
        if self.beta_fast <= self.beta_slow:
            raise ConfigError(
                f"yarn.beta_fast ({self.beta_fast}) must exceed yarn.beta_slow ({self.beta_slow})"
            )

    @property
    def scale(self) -> float:
        """Multiplier on cos and sin (so attention logits scale by its square)."""
        if self.attention_factor is not None:
            return self.attention_factor
        return 0.1 * math.log(self.factor) + 1.0 if self.factor > 1 else 1.0


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shapes and switches of one language model. Field units are noted inline."""

    vocab_size: int
    d_model: int
    layer_types: tuple[str, ...]
    n_heads: int
    n_kv_heads: int
    head_dim: int
    mlp_dim: int
    norm_eps: float = 1e-6
    # Attention.
    sliding_window: int = 4096  # keys a "swa" query sees, itself included
    rope_theta: float | None = 500_000.0  # None: NoPE on every attention layer
    yarn: YarnConfig | None = None  # applied on "full" layers only (Olmo 3)
    qk_norm: bool = True  # RMSNorm over the full projected q / k width
    # Gated DeltaNet.
    gdn_heads: int = 0
    gdn_key_dim: int = 0
    gdn_value_dim: int = 0
    gdn_conv_size: int = 4
    gdn_allow_neg_eigval: bool = True  # beta = 2 sigmoid(b) in (0, 2)
    gdn_norm_eps: float = 1e-5  # per-head gated RMSNorm of the output
    gdn_chunk_size: int = 64
    gdn_pieces: int = 1  # > 1: each sequence cut into this many pieces run side by side
    # Embeddings and numerics.
    tie_embeddings: bool = False
    init_std: float = 0.02
    dtype: str = "float32"  # activations / matmul inputs
    param_dtype: str = "float32"
    attention_impl: str = "auto"
    gdn_impl: str = "auto"
    remat: bool = False  # rematerialise each block in the backward pass

    def __post_init__(self) -> None:
        object.__setattr__(self, "layer_types", parse_layer_types(self.layer_types))
        if isinstance(self.yarn, Mapping):
            object.__setattr__(self, "yarn", YarnConfig(**self.yarn))
        self._validate()

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        for name in ("vocab_size", "d_model", "n_heads", "n_kv_heads", "head_dim", "mlp_dim"):
            _positive(name, getattr(self, name))
        if not self.layer_types:
            raise ConfigError("layer_types is empty: a model needs at least one layer")
        for i, lt in enumerate(self.layer_types):
            if lt not in LAYER_TYPES:
                raise ConfigError(f"layer_types[{i}] = {lt!r} is not one of {LAYER_TYPES}")
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(
                f"n_heads ({self.n_heads}) is not divisible by n_kv_heads ({self.n_kv_heads})"
            )
        if self.norm_eps <= 0:
            raise ConfigError(f"norm_eps must be > 0, got {self.norm_eps}")
        _positive("sliding_window", self.sliding_window)
        if self.has_attention:
            if self.rope_theta is not None:
                if self.rope_theta <= 0:
                    raise ConfigError(f"rope_theta must be > 0 or None, got {self.rope_theta}")
                if self.head_dim % 2:
                    raise ConfigError(f"head_dim ({self.head_dim}) must be even for RoPE")
            elif self.yarn is not None:
                raise ConfigError("yarn is set but rope_theta is None (NoPE): drop one")
        if self.has_gdn:
            for name in ("gdn_heads", "gdn_key_dim", "gdn_value_dim", "gdn_conv_size",
                         "gdn_chunk_size", "gdn_pieces"):
                _positive(name, getattr(self, name))
            if self.gdn_norm_eps <= 0:
                raise ConfigError(f"gdn_norm_eps must be > 0, got {self.gdn_norm_eps}")
        for name in ("dtype", "param_dtype"):
            if getattr(self, name) not in _DTYPES:
                raise ConfigError(f"{name} = {getattr(self, name)!r} is not one of {_DTYPES}")
        if self.attention_impl not in _ATTENTION_IMPLS:
            raise ConfigError(
                f"attention_impl = {self.attention_impl!r} is not one of {_ATTENTION_IMPLS}"
            )
        if self.gdn_impl not in _GDN_IMPLS:
            raise ConfigError(f"gdn_impl = {self.gdn_impl!r} is not one of {_GDN_IMPLS}")
        if self.init_std <= 0:
            raise ConfigError(f"init_std must be > 0, got {self.init_std}")

    # ------------------------------------------------------------------ derived
    @property
    def n_layers(self) -> int:
        return len(self.layer_types)

    @property
    def has_attention(self) -> bool:
        return any(lt in ("swa", "full") for lt in self.layer_types)

    @property
    def has_gdn(self) -> bool:
        return "gdn" in self.layer_types

    @property
    def compute_dtype(self) -> jnp.dtype:
        import jax.numpy as jnp

        return jnp.dtype(self.dtype)

    @property
    def weight_dtype(self) -> jnp.dtype:
        import jax.numpy as jnp

        return jnp.dtype(self.param_dtype)

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with `changes` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists); inverse of `from_dict`."""
        d = dataclasses.asdict(self)
        d["layer_types"] = list(self.layer_types)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        """Build from a mapping (e.g. a ConfigDict); unknown keys are an error."""
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown model config field(s): {', '.join(unknown)}")
        missing = sorted(
            f.name for f in dataclasses.fields(cls)
            if f.name not in d and f.default is dataclasses.MISSING
        )
        if missing:
            raise ConfigError(f"missing model config field(s): {', '.join(missing)}")
        if d.get("yarn") is not None and not isinstance(d["yarn"], YarnConfig):
            d["yarn"] = YarnConfig(**dict(d["yarn"]))
        return cls(**d)


def parse_layer_types(value: str | Sequence[str]) -> tuple[str, ...]:
    """Layer types from names, codes or a comma list, in any mix.

    "gggf", "gdn,gdn,gdn,full", ("gdn", "gdn", "gdn", "full") and ("gggf",) (what a
    command line override of a tuple field gives) are all the tiny hybrid's layers.
    Raises ConfigError naming the entry that is neither a name nor a string of codes.
    """
    items = [value] if isinstance(value, str) else list(value)
    out: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise ConfigError(f"layer_types[{i}] = {item!r} is not a string")
        for part in (p.strip() for p in item.split(",")):
            if part in LAYER_TYPES:
                out.append(part)
            elif part and all(c in LAYER_CODES for c in part):
                out.extend(LAYER_CODES[c] for c in part)
            elif part:
                codes = ", ".join(f"{k}={v}" for k, v in LAYER_CODES.items())
                where = "layer_types" if len(items) == 1 else f"layer_types[{i}]"
                raise ConfigError(f"{where} = {part!r} is neither a layer type "
                                  f"{LAYER_TYPES} nor a string of layer codes ({codes})")
    return tuple(out)


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
