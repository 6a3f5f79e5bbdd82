"""Compile time and memory of the scoring and training programs, by model and depth.

Compiles from shapes alone (abstract parameters: no memory, no initialisation, so a 7B
program compiles in seconds of setup): for each model and each depth (the first N
entries of its layer pattern) it times tracing, lowering and XLA's compile of one
program, counts the Pallas kernels (Triton / Mosaic custom calls) in it, and reads
XLA's buffer assignment (argument, output, aliased and temporary GiB per device), so
whether a step fits in memory is known without running it. Compile time that grows by
the same amount per GDN layer says the per-layer kernel copies are compiled one by one;
time flat in depth says they are compiled once.

    python benchmarks/compile_time.py --models=olmo3_7b,olmo_hybrid_7b \
        --layers=4,8,16,32 --program=score --out=compile.json

Each (model, depth) compiles in its own process (`--timeout_s` each), so that caches of
one compile do not flatter the next. On CPU the kernels follow `--gdn_impl` (auto:
XLA; pallas: interpret mode), so CPU numbers say nothing about Triton compile time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from isolated import run_row  # benchmarks/ is on sys.path when run as a script


def compile_once(model: str, layers: int, program: str, seq_len: int, batch: int,
                 gdn_impl: str, remat: bool) -> dict:
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from hybrid_jax.data.batch import Batch
    from hybrid_jax.models.lm import abstract_lm
    from hybrid_jax.models.presets import get_model_config
    from hybrid_jax.scoring.score import make_scorer
    from hybrid_jax.train.state import TrainState
    from hybrid_jax.train.step import make_train_step

    dtype = "bfloat16"
    param_dtype = "bfloat16" if program == "score" else "float32"
    cfg = get_model_config(model, dtype=dtype, param_dtype=param_dtype, gdn_impl=gdn_impl,
                           remat=remat)
    if layers > len(cfg.layer_types):
        raise ValueError(f"{model} has {len(cfg.layer_types)} layers, not {layers}")
    cfg = dataclasses.replace(cfg, layer_types=cfg.layer_types[:layers])
    graphdef, params = nnx.split(abstract_lm(cfg), nnx.Param)
    tokens = jax.ShapeDtypeStruct((batch, seq_len), jnp.int32)
    data = Batch(tokens, tokens, tokens, jax.ShapeDtypeStruct((batch, seq_len), jnp.bool_))
    if program == "score":
        fn, args = make_scorer(graphdef), (params, data)
    else:  # the trainer's step: loss, gradients, AdamW update
        tx = optax.adamw(1e-4, weight_decay=0.1)
        state = jax.eval_shape(lambda p: TrainState.create(p, tx), params)
        fn, args = make_train_step(graphdef, tx), (state, data)

    t0 = time.perf_counter()
    traced = fn.trace(*args)
    t1 = time.perf_counter()
    lowered = traced.lower()
    t2 = time.perf_counter()
    compiled = lowered.compile()
    t3 = time.perf_counter()
    text = lowered.as_text()
    mem = compiled.memory_analysis()
    gib = {name: None if mem is None else getattr(mem, f"{name}_size_in_bytes") / 2**30
           for name in ("argument", "output", "alias", "temp")}
    return {"model": model, "layers": layers, "program": program, "seq_len": seq_len,
            "batch": batch, "gdn_impl": gdn_impl, "remat": remat,
            "layer_types": dict(sorted({t: cfg.layer_types.count(t)
                                        for t in set(cfg.layer_types)}.items())),
            "trace_s": t1 - t0, "lower_s": t2 - t1, "compile_s": t3 - t2,
            "memory_gib": gib,
            "triton_kernels": text.count("__gpu$xla.gpu.triton"),
            "mosaic_kernels": text.count("tpu_custom_call"),
            "backend": jax.default_backend(), "device": jax.devices()[0].device_kind}


def run_isolated(args: argparse.Namespace, model: str, layers: int) -> dict:
    flags = [f"--models={model}", f"--layers={layers}", f"--program={args.program}",
             f"--seq_len={args.seq_len}", f"--batch={args.batch}",
             f"--gdn_impl={args.gdn_impl}", *(["--remat"] if args.remat else [])]
    return run_row(__file__, flags, timeout_s=args.timeout_s,
                   ident={"model": model, "layers": layers, "program": args.program})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="olmo3_7b,olmo_hybrid_7b")
    p.add_argument("--layers", default="4,8,16,32", help="depths (first N layers)")
    p.add_argument("--program", choices=("score", "train"), default="score",
                   help="score: the scorer's forward; train: loss and parameter gradients")
    p.add_argument("--seq_len", type=int, default=8192)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--gdn_impl", default="auto")
    p.add_argument("--remat", action="store_true", help="rematerialise each block (train)")
    p.add_argument("--timeout_s", type=int, default=900)
    p.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--out", default="compile_time.json")
    args = p.parse_args()

    rows = []
    for model in args.models.split(","):
        for layers in map(int, args.layers.split(",")):
            if args.isolate:
                row = run_isolated(args, model, layers)
            else:
                row = compile_once(model, layers, args.program, args.seq_len, args.batch,
                                   args.gdn_impl, args.remat)
            rows.append(row)
            if "error" in row:
                print(f"{model:>16} {layers:3d} layers: {row['error']}", flush=True)
            else:
                print(f"{model:>16} {layers:3d} layers {row['layer_types']}: trace "
                      f"{row['trace_s']:.1f} s, lower {row['lower_s']:.1f} s, compile "
                      f"{row['compile_s']:.1f} s, {row['triton_kernels']} Triton / "
                      f"{row['mosaic_kernels']} Mosaic kernels, temporaries "
                      f"{row['memory_gib']['temp']:.2f} GiB", flush=True)
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
