"""XLA compile time of the Pallas GDN kernels alone, by shape and q / k dtype (GPU).

Lowers and compiles the Pallas GDN op (`gated_delta_rule_pallas_gpu`) by itself, forward
or forward + backward, from abstract inputs, each configuration in its own process
(`isolated.run_row`), and prints lowering and compile seconds. This located the Olmo
Hybrid 7B scorer's slow first call: float32 q / k beside bf16 v put the kernels on their
float32 path, one of which took 69.5 s to compile on an H100 (bf16: 3.1 s;
`results/h100_gdn_kernel_compile.json`).

    python benchmarks/gdn_compile_time.py --shapes=1x8192x30x96x192,4x4096x32x128x128 \
        --qk_dtypes=bfloat16,float32 --programs=forward,grad --out=gdn_compile.json

Shapes are BxTxHxKxV. On CPU the kernels would run in interpret mode, which says nothing
about Triton; run it on the GPU machine.
"""

from __future__ import annotations

import argparse
import json
import time

from isolated import run_row  # benchmarks/ is on sys.path when run as a script


def compile_once(shape: str, qk_dtype: str, program: str, tuning: dict) -> dict:
    import jax
    import jax.numpy as jnp

    from hybrid_jax.kernels.gdn import gated_delta_rule_pallas_gpu

    b, t, h, dk, dv = (int(x) for x in shape.split("x"))
    spec = jax.ShapeDtypeStruct
    args = (spec((b, t, h, dk), qk_dtype), spec((b, t, h, dk), qk_dtype),
            spec((b, t, h, dv), jnp.bfloat16), spec((b, t, h), jnp.float32),
            spec((b, t, h), jnp.float32))

    def forward(*a):
        return gated_delta_rule_pallas_gpu(*a, **tuning)[0]

    if program == "forward":
        fn = jax.jit(forward)
    else:
        fn = jax.jit(jax.grad(lambda *a: forward(*a).astype(jnp.float32).sum(),
                              argnums=(0, 1, 2, 3, 4)))
    t0 = time.perf_counter()
    lowered = fn.lower(*args)
    t1 = time.perf_counter()
    lowered.compile()
    t2 = time.perf_counter()
    return {"shape": shape, "qk_dtype": qk_dtype, "v_dtype": "bfloat16", "program": program,
            "tuning": tuning, "lower_s": t1 - t0, "compile_s": t2 - t1,
            "triton_kernels": lowered.as_text().count("__gpu$xla.gpu.triton"),
            "backend": jax.default_backend(), "device": jax.devices()[0].device_kind,
            "jax": jax.__version__}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default="1x8192x30x96x192,4x4096x32x128x128",
                   help="BxTxHxKxV, comma-separated")
    p.add_argument("--qk_dtypes", default="bfloat16,float32")
    p.add_argument("--programs", default="forward,grad", help="forward | grad (all inputs)")
    p.add_argument("--tuning", default="{}", help="KernelConfig fields as JSON")
    p.add_argument("--timeout_s", type=int, default=300)
    p.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--out", default="gdn_compile_time.json")
    args = p.parse_args()
    tuning = json.loads(args.tuning)

    rows = []
    for shape in args.shapes.split(","):
        for qk_dtype in args.qk_dtypes.split(","):
            for program in args.programs.split(","):
                if program not in ("forward", "grad"):
                    raise SystemExit(f"--programs: unknown program {program!r}")
                if args.isolate:
                    flags = [f"--shapes={shape}", f"--qk_dtypes={qk_dtype}",
                             f"--programs={program}", f"--tuning={args.tuning}"]
                    row = run_row(__file__, flags, timeout_s=args.timeout_s,
                                  ident={"shape": shape, "qk_dtype": qk_dtype,
                                         "program": program})
                else:
                    row = compile_once(shape, qk_dtype, program, tuning)
                rows.append(row)
                head = f"{shape:>20} q/k {qk_dtype:<9} {program:<8}"
                if "error" in row:
                    print(f"{head} {row['error']}", flush=True)
                else:
                    print(f"{head} lower {row['lower_s']:.1f} s, compile {row['compile_s']:.1f}"
                          f" s, {row['triton_kernels']} Triton kernels", flush=True)
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
