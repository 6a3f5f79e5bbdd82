"""One forward + backward of the Pallas GDN and attention kernels, to run under a profiler.

Each jitted call runs once: the Pallas kernels launch only when the compiled program
runs (Triton compiles ahead of it), so a kernel-name filter sees exactly one launch of
each GDN kernel (`gdn_*`) and attention kernel (`flash_attention_*`):

    ncu -k regex:'gdn|flash' --section SpeedOfLight --section LaunchStats \
        --section Occupancy python benchmarks/kernel_profile.py --gdn_tuning=block_v=128

Not a test: run it on the GPU machine.
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp

from benchmarks.gdn import gdn_inputs, parse_variant
from hybrid_jax.kernels.attention.pallas_gpu import BlockSizes, flash_attention
from hybrid_jax.kernels.gdn import gated_delta_rule_pallas_gpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq_len", type=int, default=4096)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--head_dim", type=int, default=128)
    ap.add_argument("--gdn_tuning", default="", help="as benchmarks/gdn.py --sweep, one variant")
    ap.add_argument("--attention_blocks", default="",
                    help="BlockSizes fields, e.g. 'block_q=128,block_k=32,num_warps=4'")
    ap.add_argument("--skip", default="", help="'gdn' or 'attention' to leave one out")
    args = ap.parse_args()
    b, t, h, d = args.batch, args.seq_len, args.heads, args.head_dim
    calls = []
    if args.skip != "gdn":
        gdn = functools.partial(gated_delta_rule_pallas_gpu, **parse_variant(args.gdn_tuning))
        loss = lambda *a: jnp.sum(gdn(*a)[0].astype(jnp.float32))
        calls.append((jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3, 4))), gdn_inputs(b, t, h, d, d)))
    if args.skip != "attention":
        blocks = BlockSizes(**parse_variant(args.attention_blocks))
        attn = functools.partial(flash_attention, causal=True, block_sizes=blocks)
        loss = lambda q, k, v: jnp.sum(attn(q, k, v).astype(jnp.float32))
        ks = jax.random.split(jax.random.key(1), 3)
        qkv = tuple(jax.random.normal(kk, (b, t, h, d), jnp.bfloat16) for kk in ks)
        calls.append((jax.jit(jax.grad(loss, argnums=(0, 1, 2))), qkv))
    for fn, fn_args in calls:
        jax.block_until_ready(fn(*fn_args))
    print(f"ran {len(calls)} forward + backward calls once each")


if __name__ == "__main__":
    main()
