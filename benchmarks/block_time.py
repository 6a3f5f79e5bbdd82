"""Where a 7B scoring window's time goes: each block type of the release shapes, timed alone.

For each model (random bf16 weights, made on the host and moved over), one window of
`--seq_len` tokens, forward only, timed as in timing.py:
    block        the whole residual block (norms, mixer, MLP)
    mixer        the attention or Gated DeltaNet layer alone
    mlp          the SwiGLU MLP alone
    kernel       the attention / gated_delta_rule op alone at the layer's shapes
    mixer_noseg  (attention) the mixer without segment ids, as the scoring loop now
                 runs one-document windows (`Batch.drop_trivial_segments`): `auto` then
                 takes cuDNN; with ids (packed windows) it takes the Pallas kernel
and per model the sum of its blocks over the layer pattern (e.g. 24 x swa + 8 x full),
beside the scorer's window time if `--window_ms` gives it (the rest: embedding, the
vocab head, glue). Run on the GPU machine:

    python benchmarks/block_time.py --out=$OUT/block_time.json
"""

from __future__ import annotations

import argparse
import collections
import json

import jax
import jax.numpy as jnp
from flax import nnx
from gdn import gdn_inputs  # benchmarks/ is on sys.path when run as a script
from timing import time_jax

from hybrid_jax.kernels.attention import dot_product_attention
from hybrid_jax.kernels.gdn import gated_delta_rule
from hybrid_jax.models.blocks import make_block
from hybrid_jax.models.presets import get_model_config


def _build(make):
    """(graphdef, state on the default device) of `make()`, built on the host CPU (random
    init compiles slowly on GPUs: `sharding.create_sharded_params`)."""
    with jax.default_device(jax.devices("cpu")[0]):
        graphdef, state = nnx.split(make())
    return graphdef, jax.device_put(state, jax.devices()[0])


def time_layer_type(cfg, layer_type: str, t: int) -> dict[str, float]:
    b, d = 1, cfg.d_model
    x = jax.random.normal(jax.random.key(0), (b, t, d), jnp.float32).astype(cfg.compute_dtype)
    seg = jnp.ones((b, t), jnp.int32)  # one document, ids kept (as packed windows pass)
    pos = jnp.broadcast_to(jnp.arange(t), (b, t))
    graphdef, state = _build(lambda: make_block(cfg, layer_type, rngs=nnx.Rngs(0)))
    block = lambda s, x: nnx.merge(graphdef, s)(x, positions=pos, segment_ids=seg)  # noqa: E731
    row = {"block": time_jax(jax.jit(block), state, x)}
    model = nnx.merge(graphdef, state)
    if layer_type == "gdn":
        mg, ms = nnx.split(model.gdn)
        row["mixer"] = time_jax(jax.jit(lambda s, x: nnx.merge(mg, s)(x, segment_ids=seg)),
                                ms, x)
        args = gdn_inputs(b, t, cfg.gdn_heads, cfg.gdn_key_dim, cfg.gdn_value_dim)
        row["kernel"] = time_jax(jax.jit(lambda *a: gated_delta_rule(
            *a, segment_ids=seg, impl=cfg.gdn_impl)[0]), *args)
    else:
        mg, ms = nnx.split(model.attn)
        for name, s in (("mixer", seg), ("mixer_noseg", None)):
            row[name] = time_jax(jax.jit(lambda st, x, s=s: nnx.merge(mg, st)(
                x, positions=pos, segment_ids=s)), ms, x)
        h, hd = cfg.n_heads, cfg.head_dim
        q = jax.random.normal(jax.random.key(2), (b, t, h, hd)).astype(cfg.compute_dtype)
        window = cfg.sliding_window if layer_type == "swa" else None
        row["kernel"] = time_jax(jax.jit(lambda q: dot_product_attention(
            q, q, q, causal=True, window=window, segment_ids=seg,
            impl=cfg.attention_impl)), q)
    mlp_g, mlp_s = nnx.split(model.mlp)
    row["mlp"] = time_jax(jax.jit(lambda s, x: nnx.merge(mlp_g, s)(x)), mlp_s, x)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="olmo3_7b,olmo_hybrid_7b")
    ap.add_argument("--seq_len", type=int, default=8192)
    ap.add_argument("--window_ms", default="",
                    help="the scorer's measured ms per window, per model: "
                         "'olmo3_7b=203.5,olmo_hybrid_7b=213.1'")
    ap.add_argument("--overrides", default="",
                    help="ModelConfig overrides for every model, e.g. a CPU smoke run: "
                         "'d_model=64,n_heads=2,n_kv_heads=2,head_dim=32,mlp_dim=128,"
                         "gdn_heads=2,gdn_key_dim=16,gdn_value_dim=32,sliding_window=16'")
    ap.add_argument("--out", default="block_time.json")
    args = ap.parse_args()
    window_ms = dict((k, float(v)) for k, v in
                     (item.split("=") for item in args.window_ms.split(",") if item))
    overrides = {k: int(v) for k, v in
                 (item.split("=") for item in args.overrides.split(",") if item)}
    results = {}
    for name in args.models.split(","):
        cfg = get_model_config(name, dtype="bfloat16", param_dtype="bfloat16", **overrides)
        counts = collections.Counter(cfg.layer_types)
        rows = {lt: time_layer_type(cfg, lt, args.seq_len) for lt in counts}
        total = sum(counts[lt] * rows[lt]["block"] for lt in counts)
        results[name] = {"layer_counts": dict(counts), "rows_ms": rows, "blocks_ms": total,
                         "window_ms": window_ms.get(name)}
        print(f"\n{name}: T={args.seq_len}, layers {dict(counts)}")
        for lt, row in rows.items():
            print(f"  {lt:<5} " + "  ".join(f"{k} {v:7.3f}" for k, v in row.items()))
        rest = (f"; window {window_ms[name]:.1f} ms, rest {window_ms[name] - total:.1f}"
                if name in window_ms else "")
        print(f"  blocks over the pattern: {total:.1f} ms{rest}")
    with open(args.out, "w") as f:
        json.dump({"device": str(jax.devices()[0]), "jax": jax.__version__,
                   "seq_len": args.seq_len, "results": results}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
