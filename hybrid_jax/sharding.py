"""Device mesh, logical-axis rules, sharded parameter creation, multi-host start-up.

Model code names array axes logically (`hybrid_jax.models.params`): `vocab`, `embed`,
`heads`, `kv_heads`, `mlp` for parameters and `batch` for activations. One rules table
maps each logical name to mesh axes:

    mesh axes   data    pure data parallelism (parameters replicated)
                fsdp    data parallelism with parameters and optimizer state sharded
                tensor  tensor (model) parallelism over heads / MLP width / vocab

A parameter dim stays replicated when its mesh axes do not divide it (e.g. Olmo Hybrid's
30 heads on a tensor axis of 4), so any shape runs on any mesh; the choice is logged.
Parameters are created already sharded (`create_sharded_params`): the constructor runs
under `jit` with the target shardings as outputs, so no device ever holds a full copy.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

log = logging.getLogger("hybrid_jax.sharding")

MESH_AXES = ("data", "fsdp", "tensor")
Rules = Mapping[str, str | Sequence[str] | None]

DEFAULT_RULES: dict[str, str | tuple[str, ...] | None] = {
    "batch": ("data", "fsdp"),
    "seq": None,
    "embed": "fsdp",
    "heads": "tensor",
    "kv_heads": "tensor",
    "mlp": "tensor",
    "vocab": "tensor",
}


# ---------------------------------------------------------------------------- mesh
def make_mesh(shape: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh with axes (data, fsdp, tensor); one size may be -1 (all remaining devices).

    Raises a ValueError naming the sizes when they do not multiply to the device count.
    """
    devices = list(jax.devices() if devices is None else devices)
    unknown = set(shape) - set(MESH_AXES)
    if unknown:
        raise ValueError(f"unknown mesh axes {sorted(unknown)}; the axes are {MESH_AXES}")
    sizes = [int(shape.get(a, 1)) for a in MESH_AXES]
    if sizes.count(-1) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got {dict(zip(MESH_AXES, sizes))}")
    if any(s == 0 or s < -1 for s in sizes):
        raise ValueError(f"mesh sizes must be positive or -1, got {dict(zip(MESH_AXES, sizes))}")
    if -1 in sizes:
        rest = math.prod(s for s in sizes if s != -1)
        if len(devices) % rest:
            raise ValueError(f"{len(devices)} devices cannot fill a mesh of "
                             f"{dict(zip(MESH_AXES, sizes))}")
        sizes[sizes.index(-1)] = len(devices) // rest
    if math.prod(sizes) != len(devices):
        raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices; "
                         f"there are {len(devices)}")
    try:
        grid = mesh_utils.create_device_mesh(sizes, devices)
    except (AssertionError, NotImplementedError, ValueError):
        grid = np.asarray(devices, dtype=object).reshape(sizes)  # no topology information
    return Mesh(grid, MESH_AXES)


# ---------------------------------------------------------------------------- rules
def logical_to_spec(
    shape: Sequence[int], axes: Sequence[str | None], mesh: Mesh, rules: Rules = DEFAULT_RULES,
    *, name: str = "",
) -> PartitionSpec:
    """PartitionSpec of an array of `shape` whose dims are named `axes`.

    A dim whose mesh axes do not divide it, or reuse a mesh axis of an earlier dim,
    stays replicated.
    """
    if len(axes) != len(shape):
        raise ValueError(f"{name}: {len(axes)} axis names {tuple(axes)} for shape {tuple(shape)}")
    spec: list[Any] = []
    used: set[str] = set()
    for dim, logical in zip(shape, axes):
        target = rules.get(logical) if logical is not None else None
        if logical is not None and logical not in rules:
            raise ValueError(f"{name}: logical axis {logical!r} has no sharding rule")
        if target is None:
            spec.append(None)
            continue
        mesh_axes = (target,) if isinstance(target, str) else tuple(target)
        mesh_axes = tuple(a for a in mesh_axes if mesh.shape[a] > 1)
        size = math.prod(mesh.shape[a] for a in mesh_axes)
        if not mesh_axes:
            spec.append(None)
        elif dim % size or used & set(mesh_axes):
            log.info("%s: dim %d (%s) stays replicated over %s", name, dim, logical, mesh_axes)
            spec.append(None)
        else:
            used |= set(mesh_axes)
            spec.append(mesh_axes[0] if len(mesh_axes) == 1 else mesh_axes)
    return PartitionSpec(*spec)


def state_shardings(abstract_state: nnx.State, mesh: Mesh, rules: Rules = DEFAULT_RULES):
    """NamedSharding for every variable of an (abstract) nnx.State, from its axis names."""

    def one(path, var):
        axes = var.get_metadata().get("out_sharding")
        shape = var.get_value().shape
        if axes is None:
            axes = (None,) * len(shape)
        name = "/".join(map(str, path))
        return var.replace(NamedSharding(mesh, logical_to_spec(shape, axes, mesh, rules,
                                                               name=name)))

    return nnx.map_state(one, abstract_state)


def create_sharded_params(
    build: Any, mesh: Mesh, rules: Rules = DEFAULT_RULES, *, init_on: str = "auto"
) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, params) of `build()` (e.g. `lambda: LM(cfg, rngs=nnx.Rngs(seed))`),
    placed in their shards.

    init_on="device": the constructor runs under `jit` with the target shardings as
    outputs, so no device ever holds a full copy (used on CPU and TPU). "host": it runs
    on the host CPU and each device receives only its slices. On GPUs XLA compiles the
    sharded random initialisation very slowly (over 3 minutes for a 190M model on an
    H100, against 6 s on a CPU), so "auto" picks "host" there. Both give the same values.
    """
    if init_on == "auto":
        init_on = "host" if jax.default_backend() == "gpu" else "device"
    if init_on not in ("device", "host"):
        raise ValueError(f"init_on={init_on!r} is not one of auto, device, host")
    abstract = nnx.eval_shape(build)
    graphdef, abstract_params = nnx.split(abstract, nnx.Param)
    shardings = state_shardings(abstract_params, mesh, rules)

    def init() -> nnx.State:
        return nnx.split(build(), nnx.Param)[1]

    if init_on == "device":
        return graphdef, jax.jit(init, out_shardings=shardings)()
    host = jax.jit(init, backend="cpu")()

    def place(var, sharding_var):
        value = np.asarray(var.get_value())
        sharding = sharding_var.get_value()
        return var.replace(jax.make_array_from_callback(value.shape, sharding,
                                                        lambda index: value[index]))

    return graphdef, jax.tree.map(place, host, shardings,
                                  is_leaf=lambda x: isinstance(x, nnx.Variable))


def batch_sharding(mesh: Mesh, rules: Rules = DEFAULT_RULES, ndim: int = 2) -> NamedSharding:
    """Sharding of a [b, t, ...] batch array: rows over the batch axes, the rest replicated."""
    target = rules.get("batch")
    return NamedSharding(mesh, PartitionSpec(target, *([None] * (ndim - 1))))


# ---------------------------------------------------------------------------- activations
_active: list[tuple[Mesh, Rules]] = []


@contextlib.contextmanager
def activation_sharding(mesh: Mesh, rules: Rules = DEFAULT_RULES) -> Iterator[None]:
    """Within this context, `constrain` pins activations to the mesh (while tracing)."""
    _active.append((mesh, rules))
    try:
        yield
    finally:
        _active.pop()


def active_mesh() -> tuple[Mesh, Rules] | None:
    """The mesh and rules of the innermost `activation_sharding` context, if any."""
    return _active[-1] if _active else None


def global_from_replicated_host(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A host array that every process holds in full -> one global array laid out by
    `sharding` (each process places only its devices' slices)."""
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def constrain(x: jax.Array, axes: Sequence[str | None]) -> jax.Array:
    """Sharding constraint on an activation by logical axes; a no-op outside a mesh."""
    if not _active:
        return x
    mesh, rules = _active[-1]
    spec = logical_to_spec(x.shape, axes, mesh, rules, name="activation")
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


# ---------------------------------------------------------------------------- multi-host
def initialize_distributed() -> None:
    """`jax.distributed.initialize()` when this process is one of several hosts.

    Multi-host launches set the coordinator through the environment: on TPU pods and
    SLURM clusters jax finds it itself; elsewhere set JAX_COORDINATOR_ADDRESS,
    JAX_NUM_PROCESSES and JAX_PROCESS_ID (as `launch/local.sh` does). A single process
    needs nothing.
    """
    env = os.environ
    explicit = "JAX_COORDINATOR_ADDRESS" in env
    if explicit:
        jax.distributed.initialize(
            coordinator_address=env["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(env["JAX_NUM_PROCESSES"]),
            process_id=int(env["JAX_PROCESS_ID"]),
        )
    elif "SLURM_JOB_ID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        jax.distributed.initialize()
    elif env.get("TPU_WORKER_HOSTNAMES") and "," in env["TPU_WORKER_HOSTNAMES"]:
        jax.distributed.initialize()
    else:
        return
    log.info("process %d of %d, %d local / %d global devices", jax.process_index(),
             jax.process_count(), jax.local_device_count(), jax.device_count())


def param_sharding_fn(mesh: Mesh, rules: Rules = DEFAULT_RULES):
    """`(path, abstract Param) -> NamedSharding`, for restoring checkpoints onto a mesh."""

    def fn(path, var) -> NamedSharding:
        shape = var.get_value().shape
        axes = var.get_metadata().get("out_sharding") or (None,) * len(shape)
        spec = logical_to_spec(shape, axes, mesh, rules, name="/".join(map(str, path)))
        return NamedSharding(mesh, spec)

    return fn
