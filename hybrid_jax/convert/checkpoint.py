"""hybrid_jax parameter checkpoints: an orbax tree of the NNX parameters + the config.

Layout of a checkpoint directory (what training, scoring and the analysis load):

    <dir>/model_config.json   {"format": "hybrid_jax.params/1", "model": ModelConfig
                               fields, "source": where the weights came from,
                               "manifest": "manifest.json", "hf": what an HF import
                               read and an export writes back (token ids,
                               max_position_embeddings, generation_config.json)}
    <dir>/params/             orbax PyTree checkpoint (OCDBT) of
                              nnx.state(LM(cfg), nnx.Param) as a nested dict with string
                              keys: {"embed": .., "layers": {"0": {"attn": ..}}, ..}
    <dir>/manifest.json       size and sha256 of every other file, written last

A checkpoint is written into a hidden temporary directory beside `<dir>` and renamed
into place only when complete, so an interrupted conversion never leaves a directory
that looks like a checkpoint; an existing `<dir>` is replaced only under the rules of
`outputs.py`. Restoring checks every file against the manifest first (see
`manifest.py`: one sequential read of the files, never a full read per device), then
can place every parameter straight onto a mesh: orbax reads only each device's slice.
Checkpoints written before manifests existed restore with a warning.

`convert_hf_checkpoint` streams a Hugging Face directory into such a checkpoint: the
tensors are read one by one, so the host holds one copy of the weights (14.9 GB for a
7B model in bf16) plus one tensor in flight.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from hybrid_jax.convert import manifest as digests
from hybrid_jax.convert.key_map import Path, abstract_leaves
from hybrid_jax.convert.outputs import OutputExistsError, check_output, publish, staging_dir
from hybrid_jax.convert.safetensors_io import CheckpointError
from hybrid_jax.json_files import read_tagged
from hybrid_jax.models.config import ModelConfig
from hybrid_jax.orbax_echoes import quiet_failed_io

log = logging.getLogger("hybrid_jax.convert")

FORMAT = "hybrid_jax.params/1"
CONFIG_NAME = "model_config.json"
PARAMS_DIR = "params"
MANIFEST_NAME = "manifest.json"

GENERATION_CONFIG = "generation_config.json"

# The output directory exists and overwriting was not asked for (outputs.py).
CheckpointExistsError = OutputExistsError


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The directory is not a hybrid_jax checkpoint (no model_config.json / params/)."""


def _key(p: str | int) -> str:
    return str(p)


def nest(leaves: Iterable[tuple[Path, Any]]) -> dict[str, Any]:
    """{path: array} -> nested dict with string keys (orbax's tree)."""
    tree: dict[str, Any] = {}
    for path, x in leaves:
        node = tree
        for p in path[:-1]:
            node = node.setdefault(_key(p), {})
        node[_key(path[-1])] = x
    return tree


def _lookup(tree: dict[str, Any], path: Path) -> Any:
    node: Any = tree
    for p in path:
        node = node[_key(p)]
    return node


# ---------------------------------------------------------------------------- save
def save_checkpoint(
    directory: str | os.PathLike,
    cfg: ModelConfig,
    leaves: Iterable[tuple[Path, Any]],
    *,
    source: dict[str, Any] | None = None,
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike | None] = (),
    hf: Mapping[str, Any] | None = None,
) -> pathlib.Path:
    """Write the parameters `leaves` ((path, array) per parameter of `LM(cfg)`) and `cfg`.

    Leaves are consumed one at a time; numpy arrays are moved into CPU jax arrays as
    they arrive (the numpy copy is dropped), because orbax copies numpy leaves whole
    before writing but streams jax arrays (measured: 2.5 GiB of bf16 weights peaked at
    6.9 GiB as numpy, 3.8 GiB as jax arrays). Every parameter of `LM(cfg)` must be
    present with its shape. `inputs` are the paths the caller reads (the output may not
    be, contain or lie inside one: `outputs.check_output`); `hf` is stored for a later
    HF export (see the module docstring). Returns the checkpoint directory.
    """
    import orbax.checkpoint as ocp

    directory = check_output(directory, inputs, overwrite=overwrite)
    expected = abstract_leaves(cfg)
    _cpu = jax.local_devices(backend="cpu")[0]
    tree: dict[str, Any] = {}
    seen: set[Path] = set()
    for path, x in leaves:
        path = tuple(path)
        if path not in expected:
            raise KeyError(f"{'/'.join(map(str, path))} is not a parameter of the model")
        if tuple(x.shape) != tuple(expected[path].shape):
            raise ValueError(f"{'/'.join(map(str, path))}: shape {tuple(x.shape)}, model "
                             f"expects {tuple(expected[path].shape)}")
        if isinstance(x, np.ndarray) and jax.process_count() == 1:
            x = jax.device_put(x, _cpu)  # (orbax refuses host-local arrays in multi-host jobs)
        node = tree
        for p in path[:-1]:
            node = node.setdefault(_key(p), {})
        node[_key(path[-1])] = x
        seen.add(path)
        del x
    missing = sorted("/".join(map(str, p)) for p in set(expected) - seen)
    if missing:
        raise KeyError(f"parameters missing from the checkpoint: {', '.join(missing)}")

    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(directory)
    try:
        tmp.mkdir()
        # Synchronous, and at most 1 GB of arrays in flight: memory, not speed, bounds
        # a 7B conversion on a 24 GiB host.
        # The calling process alone writes (in a multi-host job, the others wait for it).
        alone = ocp.options.MultiprocessingOptions(
            primary_host=jax.process_index(), active_processes={jax.process_index()},
            barrier_sync_key_prefix=f"export_{jax.process_index()}")
        ckptr = ocp.Checkpointer(
            ocp.PyTreeCheckpointHandler(save_concurrent_gb=1, multiprocessing_options=alone),
            multiprocessing_options=alone)
        with quiet_failed_io():
            ckptr.save(tmp / PARAMS_DIR, args=ocp.args.PyTreeSave(tree))
        del tree
        meta = {"format": FORMAT, "model": cfg.to_dict(), "source": source or {},
                "manifest": MANIFEST_NAME}
        if hf:
            meta["hf"] = dict(hf)
        (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        digests.write_manifest(tmp, MANIFEST_NAME)  # last: it lists every other file
        publish(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


def save_model(directory: str | os.PathLike, model: Any, **kwargs: Any) -> pathlib.Path:
    """`save_checkpoint` of an `LM`'s parameters."""
    from flax import nnx

    state = nnx.state(model, nnx.Param)
    leaves = ((tuple(p), v.get_value()) for p, v in nnx.to_flat_state(state))
    return save_checkpoint(directory, model.cfg, leaves, **kwargs)


def convert_hf_checkpoint(
    hf_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    dtype: str = "bfloat16",
    overwrite: bool = False,
) -> tuple[ModelConfig, pathlib.Path]:
    """Hugging Face directory -> hybrid_jax checkpoint, streaming tensor by tensor.

    `dtype` is both the parameter and the compute dtype of the saved config (A_log and
    dt_bias are kept in float32). Every name, shape and dtype is checked before any
    tensor is read, every tensor for NaN / Inf as it is read. The token ids,
    max_position_embeddings and generation_config.json of `hf_dir` are kept in
    model_config.json for an export back. Returns the config and the checkpoint
    directory.
    """
    from hybrid_jax.convert.hf_config import load_model_config
    from hybrid_jax.convert.safetensors_io import iter_hf_leaves

    hf_dir = pathlib.Path(hf_dir)
    check_output(out_dir, [hf_dir], overwrite=overwrite)  # before the config is parsed
    cfg = load_model_config(hf_dir, dtype=dtype)
    t0 = time.perf_counter()
    path = save_checkpoint(out_dir, cfg, iter_hf_leaves(hf_dir, cfg),
                           source={"hf_dir": str(hf_dir.absolute())}, overwrite=overwrite,
                           inputs=[hf_dir], hf=read_hf_side(hf_dir))
    log.info("converted %s -> %s in %.1f s", hf_dir, path, time.perf_counter() - t0)
    return cfg, path


# ---------------------------------------------------------------------------- restore
def read_hf_side(hf_dir: str | os.PathLike) -> dict[str, Any]:
    """What an HF import keeps for the way back: {"config": token ids and
    max_position_embeddings as config.json has them, "generation_config": the parsed
    generation_config.json, when there is one}."""
    from hybrid_jax.convert.hf_config import HfConfigError, hf_extras, read_config_json

    hf_dir = pathlib.Path(hf_dir)
    side: dict[str, Any] = {"config": hf_extras(read_config_json(hf_dir))}
    gen = hf_dir / GENERATION_CONFIG
    if gen.is_file():
        try:
            side["generation_config"] = json.loads(gen.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise HfConfigError(f"{gen}: not valid JSON ({e})") from None
    return side


def load_checkpoint_meta(directory: str | os.PathLike) -> dict[str, Any]:
    """The parsed model_config.json of a checkpoint, its digest checked when the
    checkpoint has a manifest. Raises CheckpointError naming the file."""
    directory = pathlib.Path(directory)
    file = directory / CONFIG_NAME
    if not file.is_file() or not (directory / PARAMS_DIR).is_dir():
        raise CheckpointNotFoundError(
            f"{directory}: not a hybrid_jax checkpoint (needs {CONFIG_NAME} and {PARAMS_DIR}/)")
    meta = read_tagged(file, FORMAT, CheckpointError, "checkpoint's config")
    listed = _manifest(directory, meta)
    if listed is not None:
        _check(directory, lambda: digests.check_files(directory, listed, [CONFIG_NAME]))
    return meta


def load_checkpoint_config(directory: str | os.PathLike) -> ModelConfig:
    """The `ModelConfig` stored with a checkpoint."""
    return ModelConfig.from_dict(load_checkpoint_meta(directory)["model"])


def verify_checkpoint(directory: str | os.PathLike) -> bool:
    """Check every file of a checkpoint against its manifest (CheckpointError naming the
    files that differ). False for a checkpoint written before manifests (nothing to
    check: logged), True once checked."""
    directory = pathlib.Path(directory)
    meta = load_checkpoint_meta(directory)
    listed = _manifest(directory, meta)
    if listed is None:
        log.warning("%s has no %s (written before digests): restoring unchecked",
                    directory, MANIFEST_NAME)
        return False
    _check(directory, lambda: digests.check_files_distributed(directory, listed))
    return True


def _manifest(directory: pathlib.Path, meta: Mapping[str, Any]
              ) -> dict[str, dict[str, Any]] | None:
    """The listed files of the manifest `meta` names; None for a legacy checkpoint."""
    if "manifest" not in meta:
        return None
    try:
        body = digests.read_manifest(directory, meta["manifest"])
    except digests.DigestError as e:
        raise CheckpointError(str(e)) from None
    if body is None:
        raise CheckpointError(f"{directory}: {meta['manifest']} is missing (model_config.json "
                              "says the checkpoint has one)")
    return body["files"]


def _check(directory: pathlib.Path, run: Callable[[], None]) -> None:
    try:
        run()
    except digests.DigestError as e:
        raise CheckpointError(f"{e} (corrupt checkpoint: restore it from a copy or "
                              "convert / export it again)") from None


def restore_state(
    directory: str | os.PathLike,
    cfg: ModelConfig | None = None,
    *,
    sharding: Callable[[Path, Any], jax.sharding.Sharding] | None = None,
    verify: bool = True,
) -> Any:
    """The parameters of a checkpoint as an `nnx.State` of jax arrays.

    Args:
      cfg: the model to restore into; the stored config when None. Its `param_dtype`
        is the dtype the arrays come back in (orbax casts on read).
      sharding: path, abstract nnx Param -> sharding (e.g.
        `safetensors_io.logical_sharding(mesh, rules)`); each device then reads only its
        own slice. Default: the first device.
      verify: check the files against the manifest first (`verify_checkpoint`).
    """
    import orbax.checkpoint as ocp
    from flax import nnx

    from hybrid_jax.models.lm import abstract_lm

    directory = pathlib.Path(directory).absolute()
    if verify:
        verify_checkpoint(directory)
    if cfg is None:
        cfg = load_checkpoint_config(directory)
    abstract = nnx.state(abstract_lm(cfg), nnx.Param)
    flat = [(tuple(p), v) for p, v in nnx.to_flat_state(abstract)]
    default = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = nest(
        (p, jax.ShapeDtypeStruct(v.get_value().shape, v.get_value().dtype,
                                 sharding=default if sharding is None else sharding(p, v)))
        for p, v in flat)
    # At most 1 GB read ahead: the host holds the restored arrays and little more.
    ckptr = ocp.Checkpointer(ocp.PyTreeCheckpointHandler(restore_concurrent_gb=1))
    with quiet_failed_io():
        restored = ckptr.restore(directory / PARAMS_DIR, args=ocp.args.PyTreeRestore(
            item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target)))
    return nnx.from_flat_state([(p, v.replace(_lookup(restored, p))) for p, v in flat])


def load_model(
    directory: str | os.PathLike,
    cfg: ModelConfig | None = None,
    *,
    sharding: Callable[[Path, Any], jax.sharding.Sharding] | None = None,
    verify: bool = True,
) -> Any:
    """An `LM` restored from a checkpoint (see `restore_state`)."""
    from flax import nnx

    from hybrid_jax.models.lm import abstract_lm

    if cfg is None:
        cfg = load_checkpoint_config(directory)
    graphdef, _ = nnx.split(abstract_lm(cfg))
    return nnx.merge(graphdef, restore_state(directory, cfg, sharding=sharding, verify=verify))

