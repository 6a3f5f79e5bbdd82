"""Registers, spills, shared memory and tensor-core instructions of the Pallas GDN
kernels (`hybrid_jax/kernels/gdn/pallas_gpu.py`) for sm_90a, without a GPU.

Two steps, because jax and a standalone Triton usually live in different environments:

    # 1. with hybrid_jax's jax (<= 0.10 on a machine without a GPU: 0.11 wants a GPU
    #    device to lower Triton): lower forward + backward for CUDA and write each
    #    kernel's Triton IR plus its launch parameters
    python benchmarks/gdn_compile_report.py dump /tmp/gdn_ttir --dtype=bfloat16 \
        --head_dims=128,128 --tuning='{"block_v": 64}'
    #    (--forward: the forward outside differentiation, for bf16 the fused forward's
    #    two kernels; --tuning='{"fused_fwd": 0}' the wy kernel and the state pass;
    #    without --forward, '{"fused_save": 1}' lowers the fused forward under autodiff)
    # 2. with `pip install triton` (3.6 was used): compile each kernel for sm_90a with its
    #    launch parameters and run ptxas -v on the PTX
    python benchmarks/gdn_compile_report.py compile /tmp/gdn_ttir

Upstream Triton is not the Triton inside XLA that jax runs on the GPU: the numbers are
close, not identical. Step 1 reaches into jax's private Pallas-Triton lowering (and
reads the launch parameters from its caller's frame).
"""

from __future__ import annotations

import argparse
import inspect
import json
import pathlib

from triton_offline import compile_report  # benchmarks/ is on sys.path when run as a script


def dump(out: pathlib.Path, args: argparse.Namespace) -> None:
    import jax
    import jax.numpy as jnp
    from jax._src.pallas.triton import pallas_call_registration as registration

    from hybrid_jax.kernels.gdn import gated_delta_rule_pallas_gpu

    lower = registration.lowering.lower_jaxpr_to_triton_module
    captured: list[dict] = []

    def capture_module(jaxpr, *a, **kw):
        result = lower(jaxpr, *a, **kw)
        caller = inspect.currentframe().f_back.f_locals  # pallas_call_lowering's
        captured.append({"name": jaxpr.debug_info.func_name,
                         "num_warps": caller["num_warps"], "num_stages": caller["num_stages"],
                         "ir": result.module.operation.get_asm(enable_debug_info=False)})
        return result

    registration.lowering.lower_jaxpr_to_triton_module = capture_module
    dk, dv = (int(x) for x in args.head_dims.split(","))
    b, t, n, dtype = args.batch, args.seq_len, args.heads, jnp.dtype(args.dtype)
    avals = [jax.ShapeDtypeStruct(s, d) for s, d in (
        ((b, t, n, dk), dtype), ((b, t, n, dk), dtype), ((b, t, n, dv), dtype),
        ((b, t, n), jnp.float32), ((b, t, n), dtype))]
    tuning = json.loads(args.tuning)

    def loss(*a):
        return jnp.sum(gated_delta_rule_pallas_gpu(*a, **tuning)[0].astype(jnp.float32))

    program = jax.jit(loss) if args.forward else jax.jit(jax.grad(loss, tuple(range(5))))
    program.trace(*avals).lower(lowering_platforms=("cuda",))
    out.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    for i, kernel in enumerate(captured):
        if kernel["ir"] in seen:  # the backward re-runs the forward's wy kernel shape
            continue
        seen.add(kernel["ir"])
        stem = out / f"{i:02d}_{kernel['name']}"
        stem.with_suffix(".ttir").write_text(kernel.pop("ir"))
        stem.with_suffix(".json").write_text(json.dumps(kernel))
    print(f"wrote {len(seen)} kernels to {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["dump", "compile"])
    parser.add_argument("dir", type=pathlib.Path)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq_len", type=int, default=256)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--head_dims", default="128,128", help="K,V")
    parser.add_argument("--tuning", default="{}",
                        help="JSON keyword arguments of gated_delta_rule_pallas_gpu")
    parser.add_argument("--forward", action="store_true",
                        help="lower the forward alone, outside differentiation (what "
                             "scoring runs; for bf16 the fused forward's kernels)")
    args = parser.parse_args()
    if args.step == "dump":
        dump(args.dir, args)
    else:
        compile_report(args.dir)


if __name__ == "__main__":
    main()
