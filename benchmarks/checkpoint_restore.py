"""What the checkpoint digests cost: restore time with and without the manifest check.

    python benchmarks/checkpoint_restore.py [--model=transformer_60m] [--repeats=5] \
        [--dtype=float32] [--mesh] [--out=restore.json]

Saves one random model (convert/checkpoint.py: orbax params + model_config.json +
manifest.json), then restores it `repeats` times each way, alternating so that both
see the same page cache: `restore_state(verify=False)` (274948b's restore) and
`verify=True` (manifest checked: one sequential sha256 pass over the files, then the
same restore). Also times `verify_checkpoint` alone. With --mesh the parameters go
onto a mesh of every device, first dim sharded where it divides (each device reads its
own slice; the check still reads each file once per process). Prints the medians and
their ratio; writes JSON. Not a test.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import tempfile
import time

import jax
import numpy as np


def _sharding_fn(mesh: jax.sharding.Mesh):
    from jax.sharding import NamedSharding, PartitionSpec

    n = mesh.devices.size

    def fn(path, var):
        shape = var.get_value().shape
        spec = ("d",) if shape and shape[0] % n == 0 else ()
        return NamedSharding(mesh, PartitionSpec(*spec))

    return fn


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="transformer_60m")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--mesh", action="store_true")
    p.add_argument("--dir", default=None, help="where to write the checkpoint (default: tmp)")
    p.add_argument("--out", default=None)
    args = p.parse_args()

    from flax import nnx

    from hybrid_jax.convert import checkpoint
    from hybrid_jax.models.lm import LM
    from hybrid_jax.models.presets import get_model_config

    cfg = get_model_config(args.model, dtype=args.dtype, param_dtype=args.dtype)
    model = LM(cfg, rngs=nnx.Rngs(0))
    n_params = sum(int(np.prod(v.get_value().shape))
                   for _, v in nnx.to_flat_state(nnx.state(model, nnx.Param)))
    root = pathlib.Path(args.dir or tempfile.mkdtemp(prefix="restore_bench_"))
    t0 = time.perf_counter()
    ckpt = checkpoint.save_checkpoint(
        root / "ckpt", cfg,
        ((tuple(k), v.get_value()) for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))),
        overwrite=True)
    save_s = time.perf_counter() - t0
    del model
    nbytes = sum(f.stat().st_size for f in ckpt.rglob("*") if f.is_file())
    sharding = None
    if args.mesh:
        mesh = jax.sharding.Mesh(np.array(jax.devices()), ("d",))
        sharding = _sharding_fn(mesh)

    def restore(verify: bool) -> float:
        t = time.perf_counter()
        state = checkpoint.restore_state(ckpt, cfg, sharding=sharding, verify=verify)
        jax.block_until_ready(jax.tree.leaves(state))
        return time.perf_counter() - t

    restore(False)  # warm: page cache, orbax / tensorstore start-up
    times: dict[str, list[float]] = {"unchecked": [], "checked": [], "check_only": []}
    for _ in range(args.repeats):
        times["unchecked"].append(restore(False))
        times["checked"].append(restore(True))
        t = time.perf_counter()
        checkpoint.verify_checkpoint(ckpt)
        times["check_only"].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    row = {
        "model": args.model, "dtype": args.dtype, "params": n_params, "files_bytes": nbytes,
        "devices": [str(d) for d in jax.devices()], "mesh": args.mesh,
        "host": platform.node(), "cpus": __import__("os").cpu_count(), "save_s": save_s,
        "median_s": med, "times_s": times,
        "checked_over_unchecked": med["checked"] / med["unchecked"],
        "check_GB_per_s": nbytes / med["check_only"] / 1e9,
    }
    print(f"{args.model} ({n_params / 1e6:.1f}M params, {nbytes / 2**20:.0f} MiB on disk, "
          f"{len(jax.devices())} device(s){', mesh' if args.mesh else ''}): restore "
          f"{med['unchecked']:.3f} s unchecked, {med['checked']:.3f} s checked "
          f"(x{row['checked_over_unchecked']:.2f}); the check alone {med['check_only']:.3f} s "
          f"= {row['check_GB_per_s']:.2f} GB/s")
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
