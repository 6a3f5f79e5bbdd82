"""Training throughput and MFU of the study's presets (synthetic tokens, one step fn).

For each architecture x size: build the model sharded over all local devices (data
parallel), bf16 compute with fp32 parameters and AdamW state, then time the jitted
training step (the same `make_train_step` the trainer uses) on random tokens.
Prints tokens/s and MFU per device and writes JSON. Not a test: run on the GPU machine.

    python benchmarks/train_throughput.py --sizes=60m,190m,1b --out=train.json
    # issue 22's small-preset target: the 60m transformer >= 0.9x the recurrent's tokens/s
    python benchmarks/train_throughput.py --sizes=60m --seq_len=1024 --batch=64
Anchor: OLMo-core reports about 55k tokens/s per H100 for a 1B transformer.

The batch's segment ids are given (one document per row), as the trainer's packed
windows give them, so GPU attention takes the Pallas kernel (cuDNN takes no document
mask); `--attention_impl` (the model's `attention_impl`) and `--attention_forward`
($HYBRID_JAX_ATTENTION_FORWARD: the Pallas forward, auto | triton | mosaic) pick others
for A/B rows, e.g. `--attention_impl=xla` for the dense-mask path.

Each (architecture, size) runs in its own process under `--timeout_s`, so that one
model's out-of-memory (which can leave the allocator fragmented) or minutes-long
compile costs only its own row; `--no-isolate` runs them all in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax
import numpy as np
import optax
from flax import nnx
from isolated import run_row  # benchmarks/ is on sys.path when run as a script

from hybrid_jax.data.batch import Batch
from hybrid_jax.kernels.attention.dispatch import FORWARD_ENV
from hybrid_jax.models.lm import LM, count_params
from hybrid_jax.models.presets import research_model
from hybrid_jax.sharding import (
    activation_sharding,
    batch_sharding,
    create_sharded_params,
    make_mesh,
)
from hybrid_jax.train.flops import peak_flops_per_device, training_flops_per_token
from hybrid_jax.train.state import TrainState
from hybrid_jax.train.step import make_train_step


def bench(arch: str, size: str, *, seq_len: int, batch: int, steps: int, remat: bool,
          gdn_impl: str, loss_chunk: int, profile: bool = False,
          attention_impl: str = "auto", vocab_size: int = 0) -> dict:
    extra = {"vocab_size": vocab_size} if vocab_size else {}
    cfg = research_model(arch, size, dtype="bfloat16", param_dtype="float32", remat=remat,
                         gdn_impl=gdn_impl, attention_impl=attention_impl, **extra)
    mesh = make_mesh({"data": -1})
    graphdef, params = create_sharded_params(lambda: LM(cfg, rngs=nnx.Rngs(0)), mesh)
    n_params = count_params(nnx.merge(graphdef, params))
    tx = optax.adamw(1e-4, weight_decay=0.1)
    state = jax.jit(lambda p: TrainState.create(p, tx))(params)
    bsh = batch_sharding(mesh)
    step = make_train_step(graphdef, tx, loss_chunk=loss_chunk,
                           state_sharding=jax.tree.map(lambda x: x.sharding, state),
                           batch_sharding=bsh)
    rows = np.random.default_rng(0).integers(0, cfg.vocab_size, (batch, seq_len + 1))
    data = jax.device_put(Batch.from_rows(rows), bsh)
    with activation_sharding(mesh):
        t0 = time.perf_counter()
        state, m = step(state, data)
        jax.block_until_ready(m["loss"])
        compile_s = time.perf_counter() - t0
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            state, m = step(state, data)
            jax.block_until_ready(m["loss"])
            times.append(time.perf_counter() - t0)
        if profile:  # the step donates its state: thread it through the traced calls
            from op_profile import profile_ops  # benchmarks/ is on sys.path as a script

            def one_step():
                nonlocal state
                state, metrics = step(state, data)
                return metrics["loss"]

            prof = profile_ops(one_step)
    dt = statistics.median(times)
    tok_s = batch * seq_len / dt
    peak = peak_flops_per_device()
    flops = training_flops_per_token(cfg, seq_len)
    return {
        "arch": arch, "size": size, "params": n_params, "seq_len": seq_len, "batch": batch,
        "step_s": dt, "tokens_per_s": tok_s, "tokens_per_s_per_device": tok_s / jax.device_count(),
        "mfu": None if peak is None else tok_s * flops / (peak * jax.device_count()),
        "compile_s": compile_s, "loss": float(m["loss"]), "remat": remat,
        "loss_chunk": loss_chunk, "head_dim": cfg.head_dim, "attention_impl": attention_impl,
        "attention_forward": os.environ.get(FORWARD_ENV, "auto"), "vocab_size": cfg.vocab_size,
        "device": jax.devices()[0].device_kind, "devices": jax.device_count(),
        **({"profile": prof} if profile else {}),
    }


def run_isolated(arch: str, size: str, args: argparse.Namespace) -> dict:
    """One (arch, size) in a child process of this script; its row, or why there is none."""
    flags = [f"--archs={arch}", f"--sizes={size}", f"--seq_len={args.seq_len}",
             f"--batch={args.batch}", f"--steps={args.steps}", f"--gdn_impl={args.gdn_impl}",
             f"--loss_chunk={args.loss_chunk}", f"--attention_impl={args.attention_impl}",
             f"--attention_forward={args.attention_forward}", f"--vocab_size={args.vocab_size}",
             *(["--remat"] if args.remat else []), *(["--profile"] if args.profile else [])]
    return run_row(__file__, flags, timeout_s=args.timeout_s,
                   ident={"arch": arch, "size": size})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", default="transformer,hybrid,recurrent")
    p.add_argument("--sizes", default="60m,190m,370m,1b")
    p.add_argument("--seq_len", type=int, default=4096)
    p.add_argument("--batch", type=int, default=4, help="global windows per step")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--remat", action="store_true")
    p.add_argument("--gdn_impl", default="auto")
    p.add_argument("--loss_chunk", type=int, default=256,
                   help="LM-head positions per piece; 0: full logits (train.loss_chunk)")
    p.add_argument("--attention_impl", default="auto",
                   help="the model's attention_impl: auto | xla | cudnn | pallas | splash")
    p.add_argument("--attention_forward", default="auto", choices=("auto", "triton", "mosaic"),
                   help="the Pallas attention forward ($HYBRID_JAX_ATTENTION_FORWARD)")
    p.add_argument("--vocab_size", type=int, default=0,
                   help="model vocabulary (0: the preset's, 100352; the GPU study: 32768)")
    p.add_argument("--profile", action="store_true",
                   help="also trace a few steps and print their device time by kernel and "
                        "category (op_profile.py); kept in the JSON rows")
    p.add_argument("--out", default="train_throughput.json")
    p.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True,
                   help="one process per (arch, size)")
    p.add_argument("--timeout_s", type=int, default=900, help="per (arch, size), isolated")
    args = p.parse_args()
    os.environ[FORWARD_ENV] = args.attention_forward  # read at trace time, child included
    results = []
    print(f"T={args.seq_len} B={args.batch} attention_impl={args.attention_impl} "
          f"forward={args.attention_forward}")
    print(f"{'arch':<12}{'size':<6}{'params':>12}{'tok/s/dev':>12}{'MFU':>8}{'compile':>9}")
    for size in args.sizes.split(","):
        for arch in args.archs.split(","):
            if args.isolate:
                r = run_isolated(arch, size, args)
            else:
                try:
                    r = bench(arch, size, seq_len=args.seq_len, batch=args.batch,
                              steps=args.steps, remat=args.remat, gdn_impl=args.gdn_impl,
                              loss_chunk=args.loss_chunk, profile=args.profile,
                              attention_impl=args.attention_impl, vocab_size=args.vocab_size)
                except Exception as e:  # e.g. out of memory: report and go on
                    r = {"arch": arch, "size": size, "error": f"{type(e).__name__}: {e}"[:300]}
            if "error" in r:
                print(f"{arch:<12}{size:<6} {r['error']}")
            else:
                mfu = "-" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
                print(f"{arch:<12}{size:<6}{r['params']:>12,}{r['tokens_per_s_per_device']:>12,.0f}"
                      f"{mfu:>8}{r['compile_s']:>8.0f}s", flush=True)
                if "profile" in r:
                    from op_profile import print_profile
                    print_profile(r["profile"])
            results.append(r)
            with open(args.out, "w") as f:
                json.dump(results, f, indent=2)
    print_ratios(results)
    print(f"wrote {args.out}")


def print_ratios(results: list[dict]) -> None:
    """Per size, each architecture's tokens/s over the recurrent's (same run)."""
    speed = {(r["size"], r["arch"]): r["tokens_per_s"] for r in results if "error" not in r}
    for (size, arch), tok_s in speed.items():
        base = speed.get((size, "recurrent"))
        if base and arch != "recurrent":
            print(f"{size} {arch} / recurrent tokens/s: {tok_s / base:.2f}x")


if __name__ == "__main__":
    main()
