"""Registers, spills, shared memory and tensor-core instructions of the Pallas attention
kernels for sm_90a, without a GPU.

Two steps, because jax and a standalone Triton usually live in different environments:

    # 1. with hybrid_jax's jax: lower the three kernels (export for CUDA) and write their
    #    Triton IR, one .ttir file per kernel, plus the launch parameters (on a machine
    #    without a GPU this needs jax <= 0.10: 0.11 compiles Triton while lowering)
    python benchmarks/attention_compile_report.py dump /tmp/ttir --kv_heads=32 \
        --blocks='{"block_q": 128, "block_k": 64}'
    # 2. with `pip install triton` (3.6 was used): compile each file for sm_90a and run
    #    ptxas -v on the PTX
    python benchmarks/attention_compile_report.py compile /tmp/ttir

The compile step uses upstream Triton, not the Triton inside XLA that jax runs on the
GPU, so its numbers are close but not identical to what runs there. A kernel that spills
(nonzero stack frame), needs more than 227 KiB of shared memory, or shows `mma.sync`
instead of `wgmma` will be slow or fail to launch: fix that before spending GPU time.
Step 1 reaches into jax's private Pallas-Triton lowering to capture the IR.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import re

from triton_offline import compile_report  # benchmarks/ is on sys.path when run as a script


def dump(out: pathlib.Path, args: argparse.Namespace) -> None:
    import jax
    import jax.numpy as jnp
    from jax import export
    from jax._src.pallas.triton import pallas_call_registration as registration

    from hybrid_jax.kernels.attention import pallas_gpu

    lower = registration.lowering.lower_jaxpr_to_triton_module
    modules: list[str] = []

    def capture(*a, **kw):
        result = lower(*a, **kw)
        modules.append(result.module.operation.get_asm(enable_debug_info=False))
        return result

    registration.lowering.lower_jaxpr_to_triton_module = capture
    blocks = pallas_gpu.default_block_sizes(jnp.dtype(args.dtype), args.head_dim)
    blocks = dataclasses.replace(blocks, **json.loads(args.blocks))
    b, t, n, g, h = args.batch, args.seq_len, args.heads, args.kv_heads, args.head_dim
    q = jax.ShapeDtypeStruct((b, t, n, h), jnp.dtype(args.dtype))
    kv = jax.ShapeDtypeStruct((b, t, g, h), jnp.dtype(args.dtype))
    seg = jax.ShapeDtypeStruct((b, t), jnp.int32)

    def fwd_bwd(q, k, v, seg):
        attn = lambda q, k, v: pallas_gpu.flash_attention(
            q, k, v, window=args.window, segment_ids=seg if args.segments else None,
            block_sizes=blocks)
        o, vjp = jax.vjp(attn, q, k, v)
        return o, vjp(o)

    try:
        export.export(jax.jit(fwd_bwd), platforms=["cuda"], disabled_checks=[
            export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")])(q, kv, kv, seg)
    finally:
        registration.lowering.lower_jaxpr_to_triton_module = lower
    out.mkdir(parents=True, exist_ok=True)
    launch = {"fwd": (blocks.num_warps, blocks.num_stages)}
    for text in modules:
        name = re.search(r"tt.func public @(\w+)", text).group(1)
        (out / f"{name}.ttir").write_text(text)
        warps, stages = launch.get(name.rsplit("_", 1)[-1],
                                   (blocks.num_warps_bwd, blocks.num_stages_bwd))
        (out / f"{name}.json").write_text(json.dumps({"num_warps": warps,
                                                      "num_stages": stages}))
        print(f"wrote {out / name}.ttir (num_warps={warps}, num_stages={stages})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("step", choices=["dump", "compile"])
    ap.add_argument("dir", type=pathlib.Path)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq_len", type=int, default=4096)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv_heads", type=int, default=32)
    ap.add_argument("--head_dim", type=int, default=128)
    ap.add_argument("--window", type=int, default=None)
    ap.add_argument("--segments", action="store_true")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--blocks", default="{}", help="BlockSizes fields as JSON")
    args = ap.parse_args()
    if args.step == "dump":
        dump(args.dir, args)
    else:
        compile_report(args.dir)


if __name__ == "__main__":
    main()
