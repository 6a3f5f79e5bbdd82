"""Every check of a training config that needs no compilation, run before anything is built.

`check_train_config(config)` raises `ConfigError` with one line naming the field
(`train.learning_rate`, `data.seq_len`, ...) for values that would train silently wrong
(a zero or negative learning rate), fail only after the first compiled step
(`train.log_every=0`), or fail deep inside XLA (a batch that the mesh cannot split, a
window length whose activations cannot fit).

Feasibility of the sizes is judged against a *lower bound* of the training step's memory
per device, so that no config that fits is ever refused:

    parameters, gradients and AdamW's two moments   4 x n_params x param bytes / (fsdp x tensor)
    block inputs kept for the backward pass         rows x T x d_model x act bytes x layers
    one chunk of LM-head logits (float32)           rows x loss_chunk (or T) x vocab x 4
    the [t, t] float32 attention logits of one      rows x heads / tensor x T^2 x 4
      layer, when attention runs on the `xla`       (only the `xla` implementation
      reference                                     materialises them; flash kernels do not)

with rows = train.batch_size / (data x fsdp) / train.microbatches windows per device and
T = data.seq_len (the eval step's logits likewise, with eval.batch_size). A device's
memory is its allocator limit (GPU, TPU) or, on CPU, the host's memory (the smaller of
physical memory and the cgroup limit) shared by the local CPU devices.
"""

from __future__ import annotations

import math
import os
import pathlib
from typing import Any

import jax
import ml_collections

from hybrid_jax.configlib import model_config
from hybrid_jax.models.config import ConfigError, ModelConfig

SCHEDULES = ("cosine", "wsd", "wsd_s")
TAGGERS = ("auto", "brown", "spacy", "none")
_SECTIONS = ("model", "data", "train", "eval", "mesh")


def _get(config: ml_collections.ConfigDict, name: str) -> Any:
    section, field = name.split(".")
    try:
        return config[section][field]
    except (KeyError, AttributeError):
        raise ConfigError(f"{name} is missing from the config") from None


def _int(config, name: str, low: int, what: str = "") -> int:
    v = _get(config, name)
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ConfigError(f"{name}={v!r}: must be an integer >= {low}{what}")
    return v


def _float(config, name: str, *, positive: bool = False, low: float | None = None,
           high: float | None = None, what: str = "") -> float:
    v = _get(config, name)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"{name}={v!r}: must be a finite number{what}")
    if positive and v <= 0:
        raise ConfigError(f"{name}={v!r}: must be > 0{what}")
    if low is not None and v < low:
        raise ConfigError(f"{name}={v!r}: must be >= {low}{what}")
    if high is not None and v > high:
        raise ConfigError(f"{name}={v!r}: must be <= {high}{what}")
    return float(v)


def _choice(config, name: str, choices: tuple[str, ...]) -> str:
    v = _get(config, name)
    if v not in choices:
        raise ConfigError(f"{name}={v!r} is not one of {', '.join(choices)}")
    return v


def check_tokenizer_spec(spec: str, field: str = "data.tokenizer") -> None:
    """The tokenizer spec names a known kind and, for a file, a file that exists."""
    kind, _, arg = str(spec).partition(":")
    if spec in ("sentencepiece", "bytes"):
        return
    if kind == "sentencepiece" and arg:
        if not pathlib.Path(arg).is_file():
            raise ConfigError(f"{field}={spec!r}: no sentencepiece model at {arg}")
        return
    if kind == "hf" and arg:
        path = pathlib.Path(arg)
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise ConfigError(f"{field}={spec!r}: no tokenizer.json at {file}")
        return
    raise ConfigError(f"{field}={spec!r}: use sentencepiece (trained here), "
                      "sentencepiece:<file>, bytes or hf:<tokenizer.json>")


def check_train_config(config: ml_collections.ConfigDict, *,
                       devices: list[jax.Device] | None = None,
                       process_count: int | None = None) -> ModelConfig:
    """Raise ConfigError naming the first bad field; returns the validated ModelConfig.

    `devices` / `process_count`: the run's (default: every device, this job's
    processes); used for the mesh, batch divisibility and memory checks.
    """
    for section in _SECTIONS:
        if section not in config:
            raise ConfigError(f"the config has no {section!r} section")
    cfg = model_config(config)  # ConfigError naming model.<field>

    # ------------------------------------------------------------------ train
    _int(config, "train.seed", 0)
    schedule = _choice(config, "train.schedule", SCHEDULES)
    steps = _int(config, "train.steps", 1)
    batch = _int(config, "train.batch_size", 1)
    micro = _int(config, "train.microbatches", 1)
    if batch % micro:
        raise ConfigError(f"train.batch_size={batch} does not split into "
                          f"train.microbatches={micro} equal micro-batches")
    _float(config, "train.learning_rate", positive=True)
    warmup = _int(config, "train.warmup_steps", 0)
    if schedule != "wsd_s" and warmup >= steps:
        raise ConfigError(f"train.warmup_steps={warmup} must be below train.steps={steps}")
    _float(config, "train.decay_fraction", positive=True, high=1.0)
    if schedule == "wsd_s":
        budgets = _get(config, "train.budgets")
        if (not isinstance(budgets, (tuple, list)) or not budgets
                or not all(isinstance(b, (int, float)) and b > 0 for b in budgets)
                or list(budgets) != sorted(set(budgets))):
            raise ConfigError(f"train.budgets={budgets!r}: need increasing, distinct "
                              "positive multiples of the budget unit")
        _float(config, "train.budget_unit_tokens", low=0.0, what=" (0: Chinchilla)")
    _float(config, "train.weight_decay", low=0.0)
    _float(config, "train.grad_clip", what=" (<= 0 disables clipping)")
    _float(config, "train.z_loss", low=0.0)
    _int(config, "train.loss_chunk", 0, " (0: the whole window at once)")
    _int(config, "train.log_every", 1)
    _int(config, "train.checkpoint_every", 1)
    _int(config, "train.keep_checkpoints", 1)
    _int(config, "train.export_every", 0, " (0: no periodic exports)")
    _int(config, "train.kill_at_step", 0)

    # ------------------------------------------------------------------ data
    seq_len = _int(config, "data.seq_len", 1)
    sources = _get(config, "data.sources")
    if not isinstance(sources, str) or not sources.strip():
        raise ConfigError(f"data.sources={sources!r}: need at least one document source")
    _int(config, "data.held_out_every", 2, " (every n-th document of a domain is held out)")
    spec = _get(config, "data.tokenizer")
    check_tokenizer_spec(spec)
    if spec == "sentencepiece":
        _int(config, "data.vocab_size", 300, " (byte fallback needs 256 pieces + specials)")
        _int(config, "data.tokenizer_chars", 1)
    shards = _int(config, "data.shards", 0, " (0: one per process)")

    # ------------------------------------------------------------------ eval
    _int(config, "eval.every", 0, " (0: only at the end)")
    eval_batch = _int(config, "eval.batch_size", 1)
    _int(config, "eval.max_windows", 1)
    _choice(config, "eval.tagger", TAGGERS)

    # ------------------------------------------------------------------ mesh
    from hybrid_jax.sharding import make_mesh

    mesh_shape = dict(config.mesh.to_dict())
    num_devices = mesh_shape.pop("devices", 0)
    all_devices = list(jax.devices() if devices is None else devices)
    if isinstance(num_devices, bool) or not isinstance(num_devices, int) or not (
            0 <= num_devices <= len(all_devices)):
        raise ConfigError(f"mesh.devices={num_devices!r}: must be 0 (every device) or 1.."
                          f"{len(all_devices)}")
    used = all_devices[:num_devices] if num_devices else all_devices
    try:
        mesh = make_mesh(mesh_shape, used)
    except ValueError as e:
        raise ConfigError(f"mesh {mesh_shape}: {e}") from None
    dp = mesh.shape["data"] * mesh.shape["fsdp"]
    if batch % dp:
        raise ConfigError(f"train.batch_size={batch} is not divisible by the data-parallel "
                          f"mesh size {dp} (mesh.data x mesh.fsdp)")
    processes = jax.process_count() if process_count is None else process_count
    if batch % processes:
        raise ConfigError(f"train.batch_size={batch} is not divisible by the {processes} "
                          "processes")
    if shards and shards % processes:
        raise ConfigError(f"data.shards={shards} is not a multiple of the {processes} "
                          "processes")
    if eval_batch % dp:
        raise ConfigError(f"eval.batch_size={eval_batch} is not divisible by the "
                          f"data-parallel mesh size {dp}")

    # ------------------------------------------------------------------ sizes
    vocab = cfg.vocab_size
    if spec == "sentencepiece":
        vocab = max(vocab, -(-config.data.vocab_size // 128) * 128)
    check_memory(cfg.replace(vocab_size=vocab), seq_len=seq_len,
                 rows=max(1, batch // (dp * micro)), eval_rows=max(1, eval_batch // dp),
                 fsdp=mesh.shape["fsdp"], tensor=mesh.shape["tensor"],
                 loss_chunk=config.train.loss_chunk, device=used[0],
                 local_devices=sum(d.process_index == used[0].process_index for d in used))
    return cfg


# ---------------------------------------------------------------------------- memory
def device_memory_bytes(device: jax.Device, local_devices: int = 1) -> int | None:
    """Memory one device can allocate: the allocator limit, or on CPU the host's memory
    split over its `local_devices`; None if unknown."""
    try:
        stats = device.memory_stats()
    except Exception:  # not every backend implements it
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    if device.platform != "cpu":
        return None
    try:
        host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None
    try:
        limit = pathlib.Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            host = min(host, int(limit))
    except OSError:
        pass
    return host // max(1, local_devices)


def _attention_is_xla(cfg: ModelConfig, rows: int, seq_len: int, platform: str) -> bool:
    """Whether this run's attention resolves to the `xla` reference (which materialises
    the [t, t] logits); packed training windows carry segment ids."""
    if not cfg.has_attention:
        return False
    from hybrid_jax.kernels.attention.dispatch import resolve_attention_impl
    from hybrid_jax.kernels.impl import AttentionImpl

    q = jax.ShapeDtypeStruct((rows, seq_len, cfg.n_heads, cfg.head_dim), cfg.compute_dtype)
    k = jax.ShapeDtypeStruct((rows, seq_len, cfg.n_kv_heads, cfg.head_dim), cfg.compute_dtype)
    seg = jax.ShapeDtypeStruct((rows, seq_len), jax.numpy.int32)
    try:
        impl = resolve_attention_impl(cfg.attention_impl, q, k, causal=True,
                                      segment_ids=seg, backend=platform)
    except ValueError as e:
        raise ConfigError(f"model.attention_impl={cfg.attention_impl!r}: {e}") from None
    return impl is AttentionImpl.XLA


def _size(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 1e3:.1f} kB"


def memory_lower_bound(cfg: ModelConfig, *, seq_len: int, rows: int, eval_rows: int,
                       fsdp: int = 1, tensor: int = 1, loss_chunk: int = 256,
                       platform: str | None = None) -> dict[str, float]:
    """The terms of the module docstring's lower bound, in bytes per device."""
    from hybrid_jax.models.lm import abstract_lm, count_params

    platform = platform or jax.default_backend()
    n_params = count_params(abstract_lm(cfg))
    act = cfg.compute_dtype.itemsize
    terms = {
        "parameters, gradients and optimizer state":
            4.0 * n_params * cfg.weight_dtype.itemsize / (fsdp * tensor),
        "block inputs kept for the backward pass":
            float(rows) * seq_len * cfg.d_model * act * cfg.n_layers,
        "LM-head logits": float(rows) * min(loss_chunk or seq_len, seq_len) * cfg.vocab_size
        * 4 / tensor,
    }
    if _attention_is_xla(cfg, rows, seq_len, platform):
        heads = max(1, cfg.n_heads // tensor)
        terms["the xla attention's [t, t] float32 logits"] = (
            float(max(rows, eval_rows)) * heads * seq_len * seq_len * 4)
    return terms


def check_memory(cfg: ModelConfig, *, seq_len: int, rows: int, eval_rows: int,
                 fsdp: int, tensor: int, loss_chunk: int, device: jax.Device,
                 local_devices: int = 1) -> None:
    """ConfigError naming data.seq_len if the lower bound exceeds the device's memory."""
    available = device_memory_bytes(device, local_devices)
    if available is None:
        return
    terms = memory_lower_bound(cfg, seq_len=seq_len, rows=rows, eval_rows=eval_rows,
                               fsdp=fsdp, tensor=tensor, loss_chunk=loss_chunk,
                               platform=device.platform)
    need = sum(terms.values())
    if need <= available:
        return
    biggest = max(terms, key=terms.get)
    raise ConfigError(
        f"data.seq_len={seq_len} with {rows} windows per device (train.batch_size / "
        f"data-parallel devices / train.microbatches) needs at least {_size(need)} per "
        f"device ({biggest}: {_size(terms[biggest])}) but a {device.platform} device has "
        f"{_size(available)}: lower data.seq_len or train.batch_size, or raise "
        "train.microbatches")
