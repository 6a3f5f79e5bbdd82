"""hybrid_jax -> Hugging Face directory (config.json + safetensors), for transformers.

Models trained here can then be scored with transformers >= 5.13 or shared. Tensors are
written under the release names (separate q/k/v convs, `input_layernorm`, `o_proj`,
`o_norm`), in the leaf's own dtype unless `dtype` says otherwise, streamed one tensor at
a time into shards of at most `max_shard_bytes` (+ index when there are several).
Reading the directory back with `safetensors_io` gives the same bits: the round trip
hybrid_jax -> HF -> hybrid_jax is exact. The directory is assembled under a temporary
name and renamed into place when complete.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from hybrid_jax.convert.hf_config import hf_config_from_model
from hybrid_jax.convert.key_map import Path, abstract_leaves, build_key_map
from hybrid_jax.convert.safetensors_io import (
    CheckpointError,
    TensorSpec,
    check_finite,
    count_nonfinite,
    write_safetensors,
)
from hybrid_jax.models.config import ModelConfig

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "generation_config.json")
_TORCH_DTYPE = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def export_hf(
    out_dir: str | os.PathLike,
    cfg: ModelConfig,
    params: Mapping[Path, Any],
    *,
    dtype: str | None = None,
    max_shard_bytes: int = 5 * 2**30,
    tokenizer_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> pathlib.Path:
    """Write `params` (hybrid_jax path -> array, every parameter of `LM(cfg)`) as an HF
    checkpoint directory for `Olmo3ForCausalLM` / `OlmoHybridForCausalLM`.

    Args:
      dtype: cast every tensor to this ("float32", "bfloat16", "float16"); None keeps
        each leaf's dtype (exact round trip).
      tokenizer_dir: copy tokenizer.json and its companions from here when given.
    Raises:
      HfConfigError if `cfg` has no transformers equivalent; KeyError naming missing
      parameters; CheckpointError naming a parameter that holds NaN / Inf (or overflows
      `dtype`), checked as each tensor is written.
    """
    out_dir = pathlib.Path(out_dir).absolute()
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists; pass overwrite=True to replace it")
    leaves = build_key_map(cfg)
    missing = [leaf.path_str for leaf in leaves if leaf.path not in params]
    if missing:
        raise KeyError(f"parameters missing for export: {', '.join(missing)}")
    expected = abstract_leaves(cfg)
    target = None if dtype is None else np.dtype(_numpy_dtype(dtype))
    specs = []
    for leaf in leaves:
        x = params[leaf.path]
        if tuple(x.shape) != tuple(expected[leaf.path].shape):
            raise ValueError(f"{leaf.path_str}: shape {tuple(x.shape)}, model expects "
                             f"{tuple(expected[leaf.path].shape)}")
        specs.append(TensorSpec(leaf.hf_name, leaf.transform.hf_shape(x.shape),
                                target or np.dtype(x.dtype)))
    hf = hf_config_from_model(cfg, torch_dtype=dtype or cfg.param_dtype)

    def arrays():
        for leaf, spec in zip(leaves, specs, strict=True):
            x = np.asarray(params[leaf.path])  # one parameter on the host at a time
            check_finite(leaf.path_str, x)
            with np.errstate(over="ignore"):  # reported below, naming the tensor
                y = np.ascontiguousarray(
                    leaf.transform.to_hf(x).astype(spec.dtype, copy=False))
            bad = count_nonfinite(y)
            if bad:  # finite before the cast: values beyond the target dtype's range
                raise CheckpointError(f"tensor {leaf.path_str}: {bad} value(s) overflow "
                                      f"{spec.dtype} (export with a wider --dtype)")
            yield leaf.hf_name, y

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{time.time_ns()}"
    try:
        tmp.mkdir()
        write_safetensors(tmp, specs, arrays(), max_shard_bytes=max_shard_bytes)
        (tmp / "config.json").write_text(json.dumps(hf, indent=2) + "\n", encoding="utf-8")
        if tokenizer_dir is not None:
            copied = [n for n in TOKENIZER_FILES
                      if (pathlib.Path(tokenizer_dir) / n).is_file()]
            if "tokenizer.json" not in copied:
                raise FileNotFoundError(f"{tokenizer_dir}: no tokenizer.json to copy")
            for n in copied:
                shutil.copy2(pathlib.Path(tokenizer_dir) / n, tmp / n)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def export_model(out_dir: str | os.PathLike, model: Any, **kwargs: Any) -> pathlib.Path:
    """`export_hf` of an `LM`."""
    from flax import nnx

    state = nnx.state(model, nnx.Param)
    params = {tuple(p): v.get_value() for p, v in nnx.to_flat_state(state)}
    return export_hf(out_dir, model.cfg, params, **kwargs)


def export_checkpoint(ckpt_dir: str | os.PathLike, out_dir: str | os.PathLike,
                      **kwargs: Any) -> pathlib.Path:
    """`export_hf` of a hybrid_jax checkpoint directory (see `checkpoint.py`)."""
    from flax import nnx

    from hybrid_jax.convert.checkpoint import load_checkpoint_config, restore_state

    cfg = load_checkpoint_config(ckpt_dir)
    state = restore_state(ckpt_dir, cfg)
    params = {tuple(p): v.get_value() for p, v in nnx.to_flat_state(state)}
    return export_hf(out_dir, cfg, params, **kwargs)


def _numpy_dtype(name: str) -> Any:
    import ml_dtypes

    if name not in _TORCH_DTYPE:
        raise ValueError(f"dtype={name!r} is not one of {tuple(_TORCH_DTYPE)}")
    return ml_dtypes.bfloat16 if name == "bfloat16" else np.dtype(name)
