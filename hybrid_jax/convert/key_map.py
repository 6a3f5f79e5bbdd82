"""The explicit map between Hugging Face tensor names and hybrid_jax parameter paths.

Every parameter of an `LM` has exactly one `Leaf`: the canonical HF tensor it comes
from, where it lives in the NNX state, and a `Transform` between the two layouts:

    identity      same layout (norm weights, embeddings, A_log, dt_bias)
    transpose     torch Linear [out, in] <-> nnx.Linear kernel [in, out]; lm_head [vocab, d]
    conv          depthwise Conv1d [e, 1, w] <-> ShortConv tap-major [w, e]
                  (a GDN layer's convs: rows [start, stop) of cat(q, k, v) on dim 0,
                  whether stored fused as `linear_attn.conv1d.weight` [2K + V, 1, w], as
                  transformers 5.23 holds it, or as three q/k/v tensors)

Canonical names are the release names (reference/olmo_architectures.md section 6). The
spellings a checkpoint may use instead are folded onto them first:
    attention_layer_norm   -> input_layernorm            (olmo_hybrid; HF convert script
    feedforward_layer_norm -> post_attention_layernorm    and save_pretrained)
    linear_attn.out_proj   -> linear_attn.o_proj          (OLMo-core export-map bug)
    linear_attn.norm       -> linear_attn.o_norm
    linear_attn.conv1d     -> q/k/v_conv1d by row ranges  (transformers 5.23 fusion)
and stored GDN convs are read as one cat(q, k, v) tensor, as transformers reads them.

Which HF norm feeds which hybrid_jax norm depends on the block: on an attention layer
`post_attention_layernorm` is the post-attention norm (`attn_norm`), on a GDN layer it is
the pre-MLP norm (`mlp_norm`). `match_keys` checks a checkpoint's names against the map
and raises one `KeyMapError` listing every unknown, missing or doubled name.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from hybrid_jax.errors import UserError
from hybrid_jax.models.config import ModelConfig

log = logging.getLogger("hybrid_jax.convert")

Path = tuple[str | int, ...]
Index = tuple[slice, ...]
# reads a (sub-)array of one stored HF tensor: (name, index into the HF array) -> array
SliceReader = Callable[[str, Index], np.ndarray]


class KeyMapError(UserError, KeyError):
    """Checkpoint tensor names or shapes do not fit the model; the message lists all."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


# ---------------------------------------------------------------------------- transforms
@dataclasses.dataclass(frozen=True)
class Transform:
    """Layout change HF array -> hybrid_jax array, its inverse, and sliced reads.

    kind: "identity" | "transpose" | "conv". A "conv" leaf reads rows [start, stop) of
    the concatenation of its layer's stored conv tensors (see `Source.parts`).
    """

    kind: str
    start: int = 0
    stop: int = 0

    def hf_shape(self, jax_shape: Sequence[int]) -> tuple[int, ...]:
        """The HF tensor shape that yields a hybrid_jax leaf of `jax_shape`."""
        if self.kind == "identity":
            return tuple(jax_shape)
        if self.kind == "transpose":
            return tuple(reversed(jax_shape))
        w, e = jax_shape
        return (e, 1, w)

    def to_jax(self, hf: np.ndarray) -> np.ndarray:
        """The hybrid_jax array of this leaf's whole HF tensor (a view where possible)."""
        if self.kind == "identity":
            return hf
        if self.kind == "transpose":
            return hf.T
        return hf[:, 0, :].T

    def to_hf(self, x: np.ndarray) -> np.ndarray:
        """The HF tensor of a hybrid_jax leaf (a view where possible)."""
        if self.kind == "identity":
            return x
        if self.kind == "transpose":
            return x.T
        return x.T[:, None, :]

    def read(self, reader: SliceReader, parts: Sequence[tuple[str, int]],
             index: Index) -> np.ndarray:
        """The hybrid_jax array x[index] of this leaf, reading only what it needs.

        `index` holds one slice per hybrid_jax dim (as `jax.make_array_from_callback`
        passes it); the HF index is derived from it, so no other part of the stored
        tensor is read. `parts` are the (stored name, rows) this leaf reads from: one
        tensor, or for a conv its layer's stored conv tensors in q, k, v order.
        """
        if self.kind == "identity":
            return reader(parts[0][0], index)
        if self.kind == "transpose":
            return reader(parts[0][0], tuple(reversed(index))).T
        w_idx, e_idx = index
        lo, hi, step = e_idx.indices(self.stop - self.start)
        if step != 1:
            raise ValueError(f"strided read of {parts} not supported")
        lo, hi = self.start + lo, self.start + max(lo, hi)
        pieces, offset = [], 0
        for name, rows in parts:  # rows [lo, hi) of the concatenation of the parts
            a, b = max(lo, offset), min(hi, offset + rows)
            if a < b:
                pieces.append(reader(name, (slice(a - offset, b - offset), slice(0, 1), w_idx)))
            offset += rows
        return np.concatenate(pieces, axis=0)[:, 0, :].T


IDENTITY = Transform("identity")
TRANSPOSE = Transform("transpose")
CONV = Transform("conv")


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One hybrid_jax parameter and the canonical HF tensor it comes from."""

    hf_name: str  # canonical (release) name
    path: Path  # path in nnx.state(model, nnx.Param)
    transform: Transform

    @property
    def path_str(self) -> str:
        return "/".join(str(p) for p in self.path)


# ---------------------------------------------------------------------------- the map
def _linear(hf: str, path: Path) -> Leaf:
    return Leaf(f"{hf}.weight", path + ("kernel",), TRANSPOSE)


def _mlp(prefix: str, i: int) -> list[Leaf]:
    return [_linear(f"{prefix}.mlp.{p}", ("layers", i, "mlp", p))
            for p in ("gate_proj", "up_proj", "down_proj")]


def build_key_map(cfg: ModelConfig) -> list[Leaf]:
    """Every leaf of `LM(cfg)` in a fixed order: embed, layers 0..n-1, final norm, head."""
    leaves = [Leaf("model.embed_tokens.weight", ("embed",), IDENTITY)]
    for i, lt in enumerate(cfg.layer_types):
        p = f"model.layers.{i}"
        if lt in ("swa", "full"):
            leaves += [_linear(f"{p}.self_attn.{n}", ("layers", i, "attn", n))
                       for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
            if cfg.qk_norm:
                leaves += [Leaf(f"{p}.self_attn.{n}.weight", ("layers", i, "attn", n, "weight"),
                                IDENTITY) for n in ("q_norm", "k_norm")]
            leaves += [
                Leaf(f"{p}.post_attention_layernorm.weight", ("layers", i, "attn_norm", "weight"),
                     IDENTITY),
                Leaf(f"{p}.post_feedforward_layernorm.weight",
                     ("layers", i, "mlp_norm", "weight"), IDENTITY),
            ]
        elif lt == "gdn":
            g = ("layers", i, "gdn")
            leaves.append(Leaf(f"{p}.input_layernorm.weight", ("layers", i, "attn_norm", "weight"),
                               IDENTITY))
            leaves += [_linear(f"{p}.linear_attn.{n}", g + (n,))
                       for n in ("q_proj", "k_proj", "v_proj", "g_proj", "a_proj", "b_proj")]
            leaves += [Leaf(f"{p}.linear_attn.{c}_conv1d.weight", g + (f"{c}_conv", "weight"), CONV)
                       for c in ("q", "k", "v")]
            leaves += [
                Leaf(f"{p}.linear_attn.A_log", g + ("A_log",), IDENTITY),
                Leaf(f"{p}.linear_attn.dt_bias", g + ("dt_bias",), IDENTITY),
                Leaf(f"{p}.linear_attn.o_norm.weight", g + ("o_norm", "weight"), IDENTITY),
                _linear(f"{p}.linear_attn.o_proj", g + ("o_proj",)),
                Leaf(f"{p}.post_attention_layernorm.weight", ("layers", i, "mlp_norm", "weight"),
                     IDENTITY),
            ]
        else:
            raise ValueError(f"layer {i}: unknown layer type {lt!r}")
        leaves += _mlp(p, i)
    leaves.append(Leaf("model.norm.weight", ("final_norm", "weight"), IDENTITY))
    if not cfg.tie_embeddings:
        leaves.append(Leaf("lm_head.weight", ("lm_head",), TRANSPOSE))
    return leaves


# ---------------------------------------------------------------------------- name variants
_RENAMES_ALL = (
    (re.compile(r"\.linear_attn\.out_proj\."), ".linear_attn.o_proj."),
    (re.compile(r"\.linear_attn\.norm\.weight$"), ".linear_attn.o_norm.weight"),
)
_RENAMES_HYBRID = (
    (re.compile(r"\.attention_layer_norm\."), ".input_layernorm."),
    (re.compile(r"\.feedforward_layer_norm\."), ".post_attention_layernorm."),
)
_FUSED_CONV = re.compile(r"^(model\.layers\.\d+\.linear_attn)\.conv1d\.weight$")


def canonical_name(name: str, *, hybrid: bool) -> str:
    """`name` with the known spelling variants folded onto the release names."""
    for pattern, repl in _RENAMES_ALL + (_RENAMES_HYBRID if hybrid else ()):
        name = pattern.sub(repl, name)
    return name


@dataclasses.dataclass(frozen=True)
class Source:
    """Where one leaf's data is in the checkpoint: stored tensor(s) + transform.

    `parts` are (stored name, rows along dim 0). Every leaf has one part, except GDN
    convs: their layer's stored conv tensors in q, k, v order (one fused tensor, or
    three), of which the leaf takes rows [transform.start, transform.stop).
    """

    leaf: Leaf
    parts: tuple[tuple[str, int], ...]
    transform: Transform

    @property
    def stored_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.parts)


def match_keys(
    cfg: ModelConfig,
    stored: Mapping[str, Sequence[int]],
    *,
    where: str = "checkpoint",
) -> list[Source]:
    """Pair every leaf of `LM(cfg)` with its stored tensor(s), checking names and shapes.

    GDN convs follow transformers: whatever the stored q/k/v (or fused) conv tensors
    are, their concatenation on dim 0 is cat(q, k, v) with K, K, V rows. That also
    reads what transformers 5.23 `save_pretrained` writes: it splits the fused conv
    into three *equal* parts under the q/k/v names (logged as a warning).

    Args:
      cfg: the model the tensors must fill.
      stored: stored tensor name -> shape (all tensors of the checkpoint).
      where: how to name the checkpoint in errors (its directory).
    Returns:
      One `Source` per leaf, in `build_key_map` order.
    Raises:
      KeyMapError listing every unknown, missing or doubly-provided name and every
      shape mismatch (a vocabulary mismatch is called out as such).
    """
    hybrid = cfg.has_gdn
    leaves = build_key_map(cfg)
    by_name = {leaf.hf_name: leaf for leaf in leaves}
    canon: dict[str, str] = {}  # canonical -> stored
    problems: list[str] = []
    fused: dict[str, str] = {}  # "model.layers.i.linear_attn" -> stored name
    unknown: list[str] = []
    for name in sorted(stored):
        c = canonical_name(name, hybrid=hybrid)
        m = _FUSED_CONV.match(c)
        if m and hybrid:
            fused[m.group(1)] = name
            continue
        if c in canon:
            problems.append(f"{name!r} and {canon[c]!r} both provide {c!r}")
            continue
        if c not in by_name:
            unknown.append(name)
            continue
        canon[c] = name

    expected = expected_leaf_shapes(cfg)
    qk, v = cfg.gdn_heads * cfg.gdn_key_dim, cfg.gdn_heads * cfg.gdn_value_dim
    rows = {"q": (0, qk), "k": (qk, 2 * qk), "v": (2 * qk, 2 * qk + v)}
    sources: list[Source] = []
    missing: list[str] = []
    shape_problems: list[str] = []
    conv_parts: dict[str, tuple[tuple[str, int], ...] | None] = {}
    for leaf in leaves:
        if leaf.transform is CONV:
            prefix = leaf.hf_name.rsplit(".", 2)[0]  # model.layers.i.linear_attn
            if prefix not in conv_parts:
                conv_parts[prefix] = _conv_parts(prefix, cfg, stored, canon, fused, missing,
                                                 problems, shape_problems)
            parts = conv_parts[prefix]
            if parts is not None:
                start, stop = rows[leaf.path[-2][0]]
                sources.append(Source(leaf, parts, Transform("conv", start, stop)))
            continue
        if leaf.hf_name not in canon:
            missing.append(leaf.hf_name)
            continue
        name = canon[leaf.hf_name]
        sources.append(Source(leaf, ((name, tuple(stored[name])[0] if stored[name] else 1),),
                              leaf.transform))
        want = leaf.transform.hf_shape(expected[leaf.path])
        got = tuple(stored[name])
        if got != want:
            msg = f"{name}: shape {got}, model expects {want}"
            if leaf.path in (("embed",), ("lm_head",)) and got[1:] == want[1:]:
                msg += (f" (vocab mismatch: config.json says vocab_size={cfg.vocab_size}, "
                        f"the tensor has {got[0]} rows)")
            shape_problems.append(msg)
    used = {n for s in sources for n in s.stored_names}
    unknown += sorted(set(fused.values()) - used)

    lines = []
    if unknown:
        lines.append(f"{len(unknown)} unknown tensor(s) (not part of the model): "
                     + ", ".join(unknown))
    if missing:
        lines.append(f"{len(missing)} missing tensor(s): " + ", ".join(missing))
    lines += problems + shape_problems
    if lines:
        raise KeyMapError(f"{where} does not fit the model:\n  " + "\n  ".join(lines))
    return sources


def _conv_parts(
    prefix: str,
    cfg: ModelConfig,
    stored: Mapping[str, Sequence[int]],
    canon: Mapping[str, str],
    fused: Mapping[str, str],
    missing: list[str],
    problems: list[str],
    shape_problems: list[str],
) -> tuple[tuple[str, int], ...] | None:
    """The stored conv tensors of one GDN layer, in q, k, v order, shapes checked."""
    qk, v = cfg.gdn_heads * cfg.gdn_key_dim, cfg.gdn_heads * cfg.gdn_value_dim
    w = cfg.gdn_conv_size
    names = [f"{prefix}.{c}_conv1d.weight" for c in ("q", "k", "v")]
    present = [canon[n] for n in names if n in canon]
    if prefix in fused:
        if present:
            problems.append(f"{fused[prefix]!r} and {present} both hold {prefix}'s convs "
                            "(fused and separate)")
            return None
        parts = ((fused[prefix], 2 * qk + v),)
        got = tuple(stored[fused[prefix]])
        if got != (2 * qk + v, 1, w):
            shape_problems.append(f"{fused[prefix]}: shape {got}, model expects "
                                  f"{(2 * qk + v, 1, w)} = cat(q, k, v) convs")
            return None
        return parts
    if len(present) < 3:
        missing.extend(n for n in names if n not in canon)
        return None
    shapes = [tuple(stored[n]) for n in present]
    want = [(qk, 1, w), (qk, 1, w), (v, 1, w)]
    if shapes == want:
        return tuple((n, s[0]) for n, s in zip(present, shapes, strict=True))
    if all(len(s) == 3 and s[1:] == (1, w) for s in shapes) and \
            sum(s[0] for s in shapes) == 2 * qk + v:
        log.warning("%s: q/k/v convs stored with %s rows instead of %s; reading them as "
                    "one cat(q, k, v) tensor, as transformers does (transformers 5.23 "
                    "save_pretrained splits the fused conv into equal parts)", prefix,
                    [s[0] for s in shapes], [qk, qk, v])
        return tuple((n, s[0]) for n, s in zip(present, shapes, strict=True))
    shape_problems.append(f"{prefix} q/k/v conv shapes {shapes}, model expects {want}")
    return None


def abstract_leaves(cfg: ModelConfig) -> dict[Path, Any]:
    """Shape and dtype (`jax.ShapeDtypeStruct`-like) of every parameter of `LM(cfg)`,
    from an abstract evaluation: nothing is allocated. A_log / dt_bias stay float32."""
    from flax import nnx

    from hybrid_jax.models.lm import abstract_lm

    state = nnx.state(abstract_lm(cfg), nnx.Param)
    return {tuple(path): v.get_value() for path, v in nnx.to_flat_state(state)}


def expected_leaf_shapes(cfg: ModelConfig) -> dict[Path, tuple[int, ...]]:
    """Shape of every parameter of `LM(cfg)`, without building it."""
    return {p: tuple(v.shape) for p, v in abstract_leaves(cfg).items()}


def check_map_covers_model(cfg: ModelConfig) -> None:
    """Raise if the key map and `LM(cfg)` disagree on the set of parameters.

    Guards against a model change (a new parameter) silently left out of conversion.
    """
    mapped = {leaf.path for leaf in build_key_map(cfg)}
    actual = set(expected_leaf_shapes(cfg))
    if mapped != actual:
        raise KeyMapError(
            "key map and model disagree: unmapped model parameters "
            f"{sorted(map(str, actual - mapped))}; mapped paths not in the model "
            f"{sorted(map(str, mapped - actual))}"
        )

