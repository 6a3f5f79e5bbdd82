"""Safetensors checkpoints, read and written one tensor (or one slice) at a time.

The format (https://huggingface.co/docs/safetensors) is an 8-byte little-endian header
length, a JSON header {name: {dtype, shape, data_offsets: [begin, end)}}, then the raw
row-major bytes. Because every tensor's byte range is known from the header, this
module reads exactly the bytes a caller needs into a buffer it owns: no memory map, no
pickle, no second copy. That is what lets a 7B bf16 checkpoint (14.9 GB) convert on a
24 GiB machine, and lets a mesh load fill each device from its own slice of the file
(`jax.make_array_from_callback`) without a full host copy per device.

    SafetensorsCheckpoint(dir)   the index (model.safetensors.index.json) or the single
                                 model.safetensors of a directory, every header checked:
                                 truncated shards, missing shards or index, and keys the
                                 index and the shards disagree on are errors naming the
                                 file. `.bin` / `.pt` weights are refused (never unpickled).
                                 An HF export of ours (hybrid_jax_export.json) is also
                                 checked against its digests: small files and shard
                                 headers on open, each tensor when read whole.
                                 Every read refuses NaN / Inf (naming the tensor and the
                                 count); integer / bool weights are refused before any
                                 read (`check_float`), never cast.
    iter_hf_leaves(...)          (path, array) per hybrid_jax parameter, streaming.
    load_hf_state(...)           an `nnx.State` of jax arrays, optionally sharded by
                                 logical axis rules over a mesh.
    write_safetensors(...)       stream tensors into sharded files + index.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import pathlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import jax
import ml_dtypes
import numpy as np

from hybrid_jax.convert import manifest
from hybrid_jax.convert.key_map import Index, Path, Source, abstract_leaves, match_keys
from hybrid_jax.convert.outputs import EXPORT_MANIFEST
from hybrid_jax.errors import UserError
from hybrid_jax.models.config import ModelConfig

log = logging.getLogger("hybrid_jax.convert")

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_MAX_HEADER_BYTES = 100 * 2**20  # the reference implementation's limit
_READ_CHUNK_BYTES = 64 * 2**20  # bound on the transient buffer of a strided read

DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
_DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
# Weights must be one of these: an integer or bool tensor is refused, never cast.
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16"})
# Exponent bits, all ones for NaN and +-Inf, by float dtype.
_EXPONENT_MASK = {
    np.dtype(np.float64): (np.uint64, 0x7FF0000000000000),
    np.dtype(np.float32): (np.uint32, 0x7F800000),
    np.dtype(np.float16): (np.uint16, 0x7C00),
    np.dtype(ml_dtypes.bfloat16): (np.uint16, 0x7F80),
}
_FINITE_CHUNK = 1 << 16  # elements per step: the temporaries stay in cache (2.2 GB/s bf16)


class CheckpointError(UserError, ValueError):
    """A checkpoint directory or file is unreadable as given; the message names it."""


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """Where one tensor's bytes are: file, dtype, shape, absolute byte range."""

    file: pathlib.Path
    dtype: np.dtype
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


# ---------------------------------------------------------------------------- checks
def count_nonfinite(x: np.ndarray) -> int:
    """Number of NaN / +-Inf entries of a float array (bf16 included), read from the
    exponent bits in cache-sized chunks; 0 for a non-float dtype's caller to refuse."""
    dtype = np.dtype(x.dtype)
    if dtype not in _EXPONENT_MASK:
        return 0
    uint, mask = _EXPONENT_MASK[dtype]
    mask = uint(mask)
    bits = np.ascontiguousarray(x).reshape(-1).view(uint)
    n = min(_FINITE_CHUNK, bits.size)
    tmp, hit = np.empty(n, uint), np.empty(n, np.bool_)
    count = 0
    for lo in range(0, bits.size, _FINITE_CHUNK):
        chunk = bits[lo : lo + _FINITE_CHUNK]
        t, h = tmp[: chunk.size], hit[: chunk.size]
        np.bitwise_and(chunk, mask, out=t)
        np.equal(t, mask, out=h)
        count += int(np.count_nonzero(h))
    return count


def check_finite(name: str, x: np.ndarray, where: str = "") -> None:
    """Raise CheckpointError naming `name` if `x` holds NaN or Inf (or is not a float)."""
    dtype = np.dtype(x.dtype)
    if dtype not in _EXPONENT_MASK:
        raise CheckpointError(f"{where}tensor {name} has dtype {dtype}: weights must be "
                              "floating point; refusing to cast")
    bad = count_nonfinite(x)
    if bad:
        raise CheckpointError(f"{where}tensor {name} holds {bad} NaN/Inf value(s) of "
                              f"{x.size}: refusing a model whose outputs would be non-finite")


# ---------------------------------------------------------------------------- reading
def read_header(file: pathlib.Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """The tensors and `__metadata__` of one .safetensors file, validated.

    Raises CheckpointError if the file is truncated (the header promises more bytes
    than the file has), the header is malformed, or a dtype is unknown.
    """
    size = file.stat().st_size
    with open(file, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{file}: {size} bytes, too short to be safetensors")
        n = int.from_bytes(raw, "little")
        if n > min(_MAX_HEADER_BYTES, size - 8):
            raise CheckpointError(
                f"{file}: header length {n} exceeds the file ({size} bytes): truncated "
                "or not a safetensors file"
            )
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{file}: header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{file}: header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    data_start = 8 + n
    tensors: dict[str, TensorInfo] = {}
    data_end = 0
    for name, spec in header.items():
        try:
            dtype = DTYPES[spec["dtype"]]
            shape = tuple(int(s) for s in spec["shape"])
            begin, end = (int(x) for x in spec["data_offsets"])
        except KeyError as e:
            raise CheckpointError(
                f"{file}: tensor {name!r} has unknown dtype or lacks {e}"
            ) from None
        if end - begin != math.prod(shape) * dtype.itemsize or begin < 0:
            raise CheckpointError(
                f"{file}: tensor {name!r} spans bytes [{begin}, {end}) but "
                f"{shape} x {spec['dtype']} needs {math.prod(shape) * dtype.itemsize}"
            )
        tensors[name] = TensorInfo(file, dtype, shape, data_start + begin, data_start + end)
        data_end = max(data_end, end)
    if data_start + data_end > size:
        raise CheckpointError(
            f"{file}: truncated: the header needs {data_start + data_end} bytes, the file "
            f"has {size} (an interrupted download or copy?)"
        )
    return tensors, metadata


class SafetensorsCheckpoint:
    """All tensors of a Hugging Face checkpoint directory, read on demand.

    The directory holds either `model.safetensors.index.json` and the shards it names,
    or one `model.safetensors` (any single *.safetensors file is accepted).
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = pathlib.Path(directory)
        if not self.directory.is_dir():
            raise CheckpointError(f"{self.directory}: not a directory")
        self.tensors: dict[str, TensorInfo] = {}
        self.metadata: dict[str, str] = {}
        index = self.directory / INDEX_NAME
        shards = sorted(self.directory.glob("*.safetensors"))
        if index.is_file():
            self._open_index(index)
        elif len(shards) == 1:
            self.tensors, self.metadata = read_header(shards[0])
        elif shards:
            raise CheckpointError(
                f"{self.directory}: {len(shards)} safetensors shards but no {INDEX_NAME}; "
                "the index says which tensors each shard holds (copy it from the source)"
            )
        else:
            pickles = sorted(p.name for p in self.directory.iterdir()
                             if p.suffix in _PICKLE_SUFFIXES)
            if pickles:
                raise CheckpointError(
                    f"{self.directory}: only pickled weights ({', '.join(pickles[:4])}); "
                    "hybrid_jax reads safetensors only and never unpickles. Convert them "
                    "where you trust the file, e.g. `AutoModelForCausalLM.from_pretrained"
                    "(dir).save_pretrained(out_dir)` with transformers (it writes "
                    "safetensors), then convert out_dir"
                )
            raise CheckpointError(f"{self.directory}: no *.safetensors weights found")
        self.digests: dict[str, str] = {}  # tensor name -> sha256, for exports of ours
        self._check_export_manifest()

    def _check_export_manifest(self) -> None:
        """An HF export of ours lists its files: the small ones are hashed now, the
        shards' sizes and headers compared, and each tensor's sha256 kept for `read`."""
        edited = (f" (if you edited the directory on purpose, delete {EXPORT_MANIFEST})")
        try:
            body = manifest.read_manifest(self.directory, EXPORT_MANIFEST)
            if body is None:
                return
            files = body["files"]
            shards = [n for n in files if n.endswith(".safetensors")]
            manifest.check_files(self.directory, files,
                                 [n for n in files if n not in shards])
            manifest.check_files(self.directory, files, shards, hash_contents=False)
        except manifest.DigestError as e:
            raise CheckpointError(f"{e}{edited}") from None
        for n in shards:
            with open(self.directory / n, "rb") as f:
                head = f.read(8)
                head += f.read(int.from_bytes(head, "little"))
            if hashlib.sha256(head).hexdigest() != files[n].get("header_sha256"):
                raise CheckpointError(f"{self.directory / n}: the header differs from the one "
                                      f"written ({EXPORT_MANIFEST}){edited}")
        self.digests = dict(body.get("tensors", {}))

    def _open_index(self, index: pathlib.Path) -> None:
        try:
            spec = json.loads(index.read_text(encoding="utf-8"))
            weight_map: dict[str, str] = spec["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index}: not a safetensors index ({e!r})") from None
        by_file: dict[str, set[str]] = {}
        for name, file in weight_map.items():
            by_file.setdefault(file, set()).add(name)
        absent = sorted(f for f in by_file if not (self.directory / f).is_file())
        if absent:
            raise CheckpointError(f"{index} names shard(s) that are absent: {', '.join(absent)}")
        problems = []
        for file, names in sorted(by_file.items()):
            tensors, metadata = read_header(self.directory / file)
            self.metadata.update(metadata)
            lacking = sorted(names - set(tensors))
            if lacking:
                problems.append(f"{file} lacks {len(lacking)} tensor(s) the index puts there: "
                                + ", ".join(lacking))
            for name in names & set(tensors):
                self.tensors[name] = tensors[name]
        if problems:
            raise CheckpointError(f"{index}: " + "; ".join(problems))

    # ------------------------------------------------------------------ access
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Stored tensor name -> shape."""
        return {k: v.shape for k, v in self.tensors.items()}

    def info(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise CheckpointError(f"{self.directory}: no tensor {name!r}") from None

    def check_float(self, names: Iterable[str]) -> None:
        """Refuse (CheckpointError listing them all) tensors of an integer or bool dtype:
        a weight stored so is a broken export, and casting would hide it."""
        bad = sorted(f"{n} ({_DTYPE_NAMES[self.info(n).dtype]})" for n in set(names)
                     if _DTYPE_NAMES[self.info(n).dtype] not in FLOAT_DTYPES)
        if bad:
            raise CheckpointError(
                f"{self.directory}: {len(bad)} weight(s) not floating point, refused rather "
                f"than cast: {', '.join(bad)}")

    def read(self, name: str, index: Index | None = None) -> np.ndarray:
        """Tensor `name` (or `tensor[index]`, one slice per dim) as a fresh numpy array.

        Only the rows the index covers are read; a slice of later dims is gathered from
        row blocks of at most 64 MiB, so a shard of a huge tensor never costs the whole.
        A float tensor holding NaN or Inf in what was read raises CheckpointError.
        """
        x = self._read(name, index)
        digest = self.digests.get(name)
        if digest is not None and _is_whole(index, self.info(name).shape):
            if hashlib.sha256(x.reshape(-1).view(np.uint8).data).hexdigest() != digest:
                raise CheckpointError(
                    f"{self.info(name).file}: tensor {name}: sha256 differs from the one "
                    f"written ({EXPORT_MANIFEST}): the bytes changed (corrupt copy?)")
        if x.dtype in _EXPONENT_MASK:
            bad = count_nonfinite(x)
            if bad:
                part = "" if index is None else " (in the slice read)"
                raise CheckpointError(
                    f"{self.info(name).file}: tensor {name} holds {bad} NaN/Inf value(s)"
                    f"{part}: refusing a model whose outputs would be non-finite")
        return x

    def _read(self, name: str, index: Index | None) -> np.ndarray:
        info = self.info(name)
        if index is None or not info.shape:
            return self._read_rows(info, 0, info.shape[0] if info.shape else 1)
        index = _normalise(index, info.shape)
        r0, r1, _ = index[0].indices(info.shape[0])
        rest = index[1:]
        row_bytes = math.prod(info.shape[1:]) * info.dtype.itemsize
        full_rest = all(s == slice(0, n, 1) for s, n in zip(rest, info.shape[1:], strict=True))
        if full_rest:
            return self._read_rows(info, r0, r1)
        block = max(1, _READ_CHUNK_BYTES // max(row_bytes, 1))
        out_shape = (r1 - r0,) + tuple(len(range(*s.indices(n)))
                                       for s, n in zip(rest, info.shape[1:], strict=True))
        out = np.empty(out_shape, info.dtype)
        for lo in range(r0, r1, block):
            hi = min(r1, lo + block)
            out[lo - r0 : hi - r0] = self._read_rows(info, lo, hi)[(slice(None),) + rest]
        return out

    def _read_rows(self, info: TensorInfo, r0: int, r1: int) -> np.ndarray:
        rows = info.shape[0] if info.shape else 1
        row_bytes = info.nbytes // max(rows, 1)
        shape = ((r1 - r0),) + info.shape[1:] if info.shape else ()
        out = np.empty(shape, info.dtype)
        if out.nbytes:
            with open(info.file, "rb") as f:
                f.seek(info.begin + r0 * row_bytes)
                got = f.readinto(out.reshape(-1).view(np.uint8))
            if got != out.nbytes:
                raise CheckpointError(f"{info.file}: short read ({got} of {out.nbytes} bytes)")
        return out


def _is_whole(index: Index | None, shape: Sequence[int]) -> bool:
    """Whether a read of `index` covers the whole of a tensor of `shape`."""
    if index is None:
        return True
    return len(index) == len(shape) and all(
        s.indices(n)[:2] == (0, n) for s, n in zip(index, shape, strict=True))


def _normalise(index: Index, shape: Sequence[int]) -> tuple[slice, ...]:
    """One step-1 slice with explicit bounds per dim (jax passes slice(None) for full)."""
    if len(index) != len(shape):
        raise ValueError(f"index {index} has {len(index)} entries for shape {tuple(shape)}")
    out = []
    for s, n in zip(index, shape, strict=True):
        lo, hi, step = s.indices(n)
        if step != 1:
            raise ValueError(f"strided index {s} not supported")
        out.append(slice(lo, max(lo, hi), 1))
    return tuple(out)


# ---------------------------------------------------------------------------- HF -> leaves
def open_and_match(hf_dir: str | os.PathLike, cfg: ModelConfig
                   ) -> tuple[SafetensorsCheckpoint, list[Source]]:
    """The checkpoint of `hf_dir` and, for every parameter of `LM(cfg)`, its source."""
    ckpt = SafetensorsCheckpoint(hf_dir)
    sources = match_keys(cfg, ckpt.shapes(), where=str(ckpt.directory))
    ckpt.check_float(name for s in sources for name in s.stored_names)
    return ckpt, sources


def iter_hf_leaves(
    hf_dir: str | os.PathLike, cfg: ModelConfig
) -> Iterator[tuple[Path, np.ndarray]]:
    """(hybrid_jax path, array in the leaf's dtype) for every parameter, one at a time.

    Names and shapes are all checked before the first tensor is read, so a bad
    checkpoint fails fast and whole. Arrays are C-contiguous numpy in `cfg.param_dtype`
    (A_log and dt_bias in float32, upcast exactly from the release's bf16).
    """
    ckpt, sources = open_and_match(hf_dir, cfg)
    targets = abstract_leaves(cfg)
    for s in sources:
        dtype = np.dtype(targets[s.leaf.path].dtype)
        full = tuple(slice(0, n) for n in targets[s.leaf.path].shape)
        x = s.transform.read(ckpt.read, s.parts, full)
        yield s.leaf.path, np.ascontiguousarray(x.astype(dtype, copy=False))
        del x


def load_hf_state(
    hf_dir: str | os.PathLike,
    cfg: ModelConfig,
    *,
    sharding: Callable[[Path, Any], jax.sharding.Sharding] | None = None,
) -> Any:
    """The `nnx.State` (jax arrays) of `LM(cfg)` filled from the checkpoint in `hf_dir`.

    Args:
      sharding: path, abstract nnx Param -> the sharding of that parameter (see
        `logical_sharding`). With it, every device's shard is read straight from the
        file into that device (`jax.make_array_from_callback`): the host holds one
        shard at a time, never the whole tensor per device. Without it, arrays go to
        the default device one tensor at a time.
    Returns:
      nnx.State to `nnx.merge` with the graphdef of `abstract_lm(cfg)` (see
      `load_hf_model`).
    """
    from flax import nnx

    from hybrid_jax.models.lm import abstract_lm

    abstract_state = nnx.state(abstract_lm(cfg), nnx.Param)
    variables = {tuple(p): v for p, v in nnx.to_flat_state(abstract_state)}
    values: dict[Path, jax.Array] = {}
    if sharding is None:
        for path, x in iter_hf_leaves(hf_dir, cfg):
            values[path] = jax.device_put(x)
            del x
    else:
        ckpt, sources = open_and_match(hf_dir, cfg)
        for s in sources:
            var = variables[s.leaf.path]
            dtype = np.dtype(var.get_value().dtype)
            shape = tuple(var.get_value().shape)

            def cb(index: Index, s: Source = s, dtype: np.dtype = dtype) -> np.ndarray:
                x = s.transform.read(ckpt.read, s.parts, index)
                return np.ascontiguousarray(x.astype(dtype, copy=False))

            values[s.leaf.path] = jax.make_array_from_callback(
                shape, sharding(s.leaf.path, var), cb)
    flat = [(path, var.replace(values[path])) for path, var in variables.items()]
    return nnx.from_flat_state(flat)


def load_hf_model(
    hf_dir: str | os.PathLike,
    cfg: ModelConfig | None = None,
    *,
    dtype: str = "float32",
    sharding: Callable[[Path, Any], jax.sharding.Sharding] | None = None,
) -> Any:
    """An `LM` with the weights of the HF checkpoint in `hf_dir` (config.json read when
    `cfg` is None, computing and storing parameters in `dtype`)."""
    from flax import nnx

    from hybrid_jax.convert.hf_config import load_model_config
    from hybrid_jax.models.lm import abstract_lm

    if cfg is None:
        cfg = load_model_config(hf_dir, dtype=dtype)
    graphdef, _ = nnx.split(abstract_lm(cfg))
    return nnx.merge(graphdef, load_hf_state(hf_dir, cfg, sharding=sharding))


def logical_sharding(
    mesh: jax.sharding.Mesh, rules: Mapping[str, str | Sequence[str] | None]
) -> Callable[[Path, Any], jax.sharding.Sharding]:
    """A `sharding` function for `load_hf_state` from logical-axis rules: each parameter's
    logical axes map through `rules` (`hybrid_jax.sharding.param_sharding_fn`); a dim the
    mesh axes do not divide stays replicated, so any release shape loads on any mesh."""
    from hybrid_jax.sharding import param_sharding_fn

    return param_sharding_fn(mesh, rules)


# ---------------------------------------------------------------------------- writing
@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of a tensor to be written."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


def plan_shards(specs: Sequence[TensorSpec], max_shard_bytes: int) -> list[list[TensorSpec]]:
    """Group tensors, in order, into shards of at most `max_shard_bytes` (a bigger single
    tensor gets a shard of its own)."""
    shards: list[list[TensorSpec]] = [[]]
    size = 0
    for s in specs:
        if shards[-1] and size + s.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(s)
        size += s.nbytes
    return shards


def write_safetensors(
    directory: str | os.PathLike,
    specs: Sequence[TensorSpec],
    arrays: Iterable[tuple[str, np.ndarray]],
    *,
    max_shard_bytes: int = 5 * 2**30,
    metadata: Mapping[str, str] | None = None,
    digests: dict[str, dict[str, str]] | None = None,
) -> list[pathlib.Path]:
    """Write tensors, streamed in `specs` order, as HF-style sharded safetensors.

    One shard -> `model.safetensors`; several -> `model-0000i-of-0000n.safetensors`
    plus `model.safetensors.index.json`. Each shard's header is written first (the
    specs fix every offset), then each array as it arrives, so only one tensor is in
    memory at a time. Arrays must come in `specs` order with the declared shape and
    dtype. With `digests` (a dict), the sha256 of each tensor's bytes and of each
    shard's header (length + JSON) are recorded in digests["tensors"] / ["headers"].
    Returns the files written.
    """
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"format": "pt", **(metadata or {})}  # transformers checks format == "pt"
    shards = plan_shards(specs, max_shard_bytes)
    n = len(shards)
    names = ([SINGLE_NAME] if n == 1
             else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)])
    it = iter(arrays)
    written = []
    for shard, fname in zip(shards, names, strict=True):
        header: dict[str, Any] = {"__metadata__": meta}
        offset = 0
        for s in shard:
            header[s.name] = {"dtype": _DTYPE_NAMES[np.dtype(s.dtype)], "shape": list(s.shape),
                              "data_offsets": [offset, offset + s.nbytes]}
            offset += s.nbytes
        raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
        raw += b" " * (-len(raw) % 8)  # the data section starts 8-byte aligned
        prefix = len(raw).to_bytes(8, "little") + raw
        if digests is not None:
            digests.setdefault("headers", {})[fname] = hashlib.sha256(prefix).hexdigest()
        path = directory / fname
        with open(path, "wb") as f:
            f.write(prefix)
            for s in shard:
                name, x = next(it)
                x = np.asarray(x)
                if name != s.name or x.shape != s.shape or x.dtype != np.dtype(s.dtype):
                    raise ValueError(f"expected {s.name} {s.shape} {s.dtype}, got {name} "
                                     f"{x.shape} {x.dtype}")
                data = np.ascontiguousarray(x).reshape(-1).view(np.uint8).data
                if digests is not None:
                    digests.setdefault("tensors", {})[name] = hashlib.sha256(data).hexdigest()
                f.write(data)
        written.append(path)
    if next(it, None) is not None:
        raise ValueError("more arrays than specs")
    if n > 1:
        index = {
            "metadata": {"total_size": sum(s.nbytes for s in specs)},
            "weight_map": {s.name: fname for shard, fname in zip(shards, names, strict=True)
                           for s in shard},
        }
        (directory / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
        written.append(directory / INDEX_NAME)
    return written

