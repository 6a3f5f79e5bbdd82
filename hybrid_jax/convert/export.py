"""hybrid_jax -> Hugging Face directory (config.json + safetensors), for transformers.

Models trained here can then be scored with transformers >= 5.13 or shared. Tensors are
written under the release names (separate q/k/v convs, `input_layernorm`, `o_proj`,
`o_norm`), in the leaf's own dtype unless `dtype` says otherwise, streamed one tensor at
a time into shards of at most `max_shard_bytes` (+ index when there are several).
Reading the directory back with `safetensors_io` gives the same bits: the round trip
hybrid_jax -> HF -> hybrid_jax is exact, and keeps what an import read beside the
weights (token ids, max_position_embeddings, generation_config.json: `hf` in
model_config.json). The directory is assembled under a temporary name and renamed into
place when complete; an existing one is replaced only under the rules of `outputs.py`.

Every export carries `hybrid_jax_export.json` (`manifest.py`), written last: the size
and sha256 of the small files, each shard's size and header digest, and the sha256 of
every tensor. It marks the directory as ours (so --overwrite may replace it) and lets
`safetensors_io` check what it reads; transformers ignores the file.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hybrid_jax.convert import manifest
from hybrid_jax.convert.hf_config import hf_config_from_model
from hybrid_jax.convert.key_map import Path, abstract_leaves, build_key_map
from hybrid_jax.convert.outputs import (
    EXPORT_MANIFEST,
    MissingInputError,
    check_output,
    publish,
    staging_dir,
)
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
GENERATION_CONFIG = "generation_config.json"
EXPORT_FORMAT = "hybrid_jax.hf_export/1"
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
    hf: Mapping[str, Any] | None = None,
    inputs: Sequence[str | os.PathLike | None] = (),
    source: Mapping[str, Any] | None = None,
) -> pathlib.Path:
    """Write `params` (hybrid_jax path -> array, every parameter of `LM(cfg)`) as an HF
    checkpoint directory for `Olmo3ForCausalLM` / `OlmoHybridForCausalLM`.

    Args:
      dtype: cast every tensor to this ("float32", "bfloat16", "float16"); None keeps
        each leaf's dtype (exact round trip).
      tokenizer_dir: copy tokenizer.json and its companions from here when given.
      hf: what an import kept (`checkpoint.read_hf_side`): {"config": token ids and
        max_position_embeddings, "generation_config": dict}; its generation config wins
        over the tokenizer directory's.
      inputs: the paths the caller reads (tokenizer_dir is added): the output may not
        be, contain or lie inside one (`outputs.check_output`).
      source: recorded in the manifest (where the weights came from).
    Raises:
      HfConfigError if `cfg` has no transformers equivalent; KeyError naming missing
      parameters; CheckpointError naming a parameter that holds NaN / Inf (or overflows
      `dtype`), checked as each tensor is written.
    """
    out_dir = check_output(out_dir, [*inputs, tokenizer_dir], overwrite=overwrite)
    tokenizer_files = []
    if tokenizer_dir is not None:
        tokenizer_files = [n for n in TOKENIZER_FILES
                           if (pathlib.Path(tokenizer_dir) / n).is_file()]
        if "tokenizer.json" not in tokenizer_files:
            raise MissingInputError(f"{tokenizer_dir}: no tokenizer.json to copy")
    hf = dict(hf or {})
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
    config = hf_config_from_model(cfg, torch_dtype=dtype or cfg.param_dtype,
                                  extras=hf.get("config"))

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
    tmp = staging_dir(out_dir)
    try:
        tmp.mkdir()
        written: dict[str, dict[str, str]] = {}
        shards = write_safetensors(tmp, specs, arrays(), max_shard_bytes=max_shard_bytes,
                                   digests=written)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n",
                                         encoding="utf-8")
        for n in tokenizer_files:
            shutil.copy2(pathlib.Path(tokenizer_dir) / n, tmp / n)
        if hf.get("generation_config") is not None:
            (tmp / GENERATION_CONFIG).write_text(
                json.dumps(hf["generation_config"], indent=2) + "\n", encoding="utf-8")
        small = [p.name for p in tmp.iterdir() if not p.name.endswith(".safetensors")]
        files = manifest.digest_files(tmp, small)
        for p in shards:
            if p.name.endswith(".safetensors"):
                files[p.name] = {"bytes": p.stat().st_size,
                                 "header_sha256": written["headers"][p.name]}
        manifest.write_manifest(tmp, EXPORT_MANIFEST, files=files, extra={
            "kind": EXPORT_FORMAT, "source": dict(source or {}),
            "tensors": written.get("tensors", {})})
        publish(tmp, out_dir)
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

    from hybrid_jax.convert.checkpoint import load_checkpoint_meta, restore_state
    from hybrid_jax.convert.outputs import check_output
    from hybrid_jax.models.config import ModelConfig

    # The paths first: nothing is restored for an output that would be refused.
    check_output(out_dir, [ckpt_dir, *kwargs.get("inputs", ()), kwargs.get("tokenizer_dir")],
                 overwrite=kwargs.get("overwrite", False))
    meta = load_checkpoint_meta(ckpt_dir)
    cfg = ModelConfig.from_dict(meta["model"])
    state = restore_state(ckpt_dir, cfg)
    params = {tuple(p): v.get_value() for p, v in nnx.to_flat_state(state)}
    kwargs.setdefault("hf", meta.get("hf"))
    kwargs["inputs"] = [ckpt_dir, *kwargs.get("inputs", ())]
    kwargs.setdefault("source", {"checkpoint": str(pathlib.Path(ckpt_dir).absolute())})
    return export_hf(out_dir, cfg, params, **kwargs)


def _numpy_dtype(name: str) -> Any:
    import ml_dtypes

    if name not in _TORCH_DTYPE:
        raise ValueError(f"dtype={name!r} is not one of {tuple(_TORCH_DTYPE)}")
    return ml_dtypes.bfloat16 if name == "bfloat16" else np.dtype(name)
