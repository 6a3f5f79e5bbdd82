"""Tiny random Olmo 3 / Olmo Hybrid models built with transformers on CPU in fp32.

Every weight, norms included, is perturbed by 0.05 * randn so that a misplaced or
swapped tensor shows in the logits (norm weights start at exactly 1). Configs follow
reference/olmo_architectures.md section 9, with its traps avoided: YaRN is given as
legacy `rope_scaling` (a flat `rope_parameters` YaRN dict is silently dropped by
transformers >= 5.13 for olmo3), NoPE as `rope_parameters={"rope_theta": None}`, and
pad/eos ids inside the 256-token vocabulary.

Fixture directories (session-scoped, built once):
    olmo3_dir           save_pretrained (what transformers writes)
    hybrid_dir          save_pretrained: attention_layer_norm / feedforward_layer_norm
                        names and the fused conv split into three *equal* parts
    hybrid_release_dir  the same tensors under the release names (q/k/v convs of K, K, V
                        rows, input_layernorm, post_attention_layernorm)
"""

from __future__ import annotations

import json
import pathlib
import shutil
from typing import Any

import numpy as np
import pytest
import torch
import transformers

# transformers 5.0-5.12 apply RoPE wrongly for Olmo 3: parity against them means nothing.
if tuple(int(x) for x in transformers.__version__.split(".")[:2]) < (5, 13):
    raise ImportError(f"transformers {transformers.__version__} < 5.13: `make test` "
                      "installs the convert extra")

VOCAB = 256
OLMO3_SEQ = 48  # > sliding window 8, > YaRN original context 16
HYBRID_SEQ = 150  # > 2 GDN chunks of 64


def _assert_no_fla() -> None:
    # An importable fla switches transformers onto Triton kernels (and off CPU).
    import importlib.util

    for name in ("fla", "causal_conv1d"):
        assert importlib.util.find_spec(name) is None, f"{name} must not be installed here"


def olmo3_config(**overrides: Any):
    yarn = dict(rope_type="yarn", factor=8.0, original_max_position_embeddings=16,
                beta_fast=32.0, beta_slow=1.0, attention_factor=1.2079441541679836)
    kw = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
              rms_norm_eps=1e-6, sliding_window=8, rope_theta=5e5, rope_scaling=yarn,
              pad_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    kw.update(overrides)
    return transformers.Olmo3Config(**kw)


def hybrid_config(**overrides: Any):
    kw = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
              num_attention_heads=4, num_key_value_heads=4, linear_num_key_heads=4,
              linear_num_value_heads=4, linear_key_head_dim=12, linear_value_head_dim=24,
              linear_conv_kernel_dim=4, linear_allow_neg_eigval=True,
              rope_parameters={"rope_theta": None}, pad_token_id=1, eos_token_id=2,
              tie_word_embeddings=False)
    kw.update(overrides)
    return transformers.OlmoHybridConfig(**kw)


def perturbed(model, seed: int):
    """`model` with 0.05 * randn added to every parameter, in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model.eval()


def build(kind: str, seed: int = 0, **overrides: Any):
    """A perturbed tiny transformers model: kind 'olmo3' or 'hybrid'."""
    _assert_no_fla()
    torch.manual_seed(seed)
    if kind == "olmo3":
        return perturbed(transformers.Olmo3ForCausalLM(olmo3_config(**overrides)), seed)
    return perturbed(transformers.OlmoHybridForCausalLM(hybrid_config(**overrides)), seed)


def tokens(seq: int, batch: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, (batch, seq))


def release_state_dict(model) -> dict[str, np.ndarray]:
    """The model's tensors under the release names (fused conv split into q, k, v)."""
    cfg = model.config
    out = {}
    for name, t in model.state_dict().items():
        x = t.detach().numpy().copy()
        if name.endswith("linear_attn.conv1d.weight"):
            qk = cfg.linear_num_key_heads * cfg.linear_key_head_dim
            prefix = name[: -len("conv1d.weight")]
            out[prefix + "q_conv1d.weight"] = x[:qk].copy()
            out[prefix + "k_conv1d.weight"] = x[qk : 2 * qk].copy()
            out[prefix + "v_conv1d.weight"] = x[2 * qk :].copy()
        else:
            out[name] = x
    return out


def write_variant(src_dir: pathlib.Path, dst: pathlib.Path,
                  tensors: dict[str, np.ndarray]) -> pathlib.Path:
    """A checkpoint dir with src_dir's config.json and `tensors` (written by the
    safetensors library, independently of hybrid_jax's writer)."""
    from safetensors.numpy import save_file

    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(src_dir / "config.json", dst / "config.json")
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


@pytest.fixture(scope="session")
def olmo3_hf():
    return build("olmo3", seed=0)


@pytest.fixture(scope="session")
def olmo3_dir(olmo3_hf, tmp_path_factory) -> pathlib.Path:
    d = tmp_path_factory.mktemp("olmo3_hf")
    olmo3_hf.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def hybrid_hf():
    return build("hybrid", seed=1)


@pytest.fixture(scope="session")
def hybrid_dir(hybrid_hf, tmp_path_factory) -> pathlib.Path:
    d = tmp_path_factory.mktemp("hybrid_hf")
    hybrid_hf.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def hybrid_release_dir(hybrid_hf, hybrid_dir, tmp_path_factory) -> pathlib.Path:
    return write_variant(hybrid_dir, tmp_path_factory.mktemp("hybrid_release"),
                         release_state_dict(hybrid_hf))


def stored_names(d: pathlib.Path) -> set[str]:
    from hybrid_jax.convert.safetensors_io import SafetensorsCheckpoint

    return set(SafetensorsCheckpoint(d).tensors)


def read_json(path: pathlib.Path) -> dict[str, Any]:
    return json.loads(path.read_text())
