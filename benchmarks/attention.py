"""Attention speed: our Pallas flash attention vs cuDNN vs the XLA reference, one run.

bf16, B x T x H x D (default 4 x {4k, 8k, 16k, 32k} x 32 x 128), causal, over
    window    full causal, or a sliding window of 4096 keys
    segments  none; `one` (segment ids given, one document per row: the mask's cost
              alone); `docs` (each row packs random documents, mean length T / 4)
    mode      fwd, and fwd+bwd (vjp of all of q, k, v)
Implementations:
    pallas         hybrid_jax flash attention as the dispatcher runs it
                   (`kernels/attention/pallas_gpu.py`): on a Hopper GPU the forward is
                   the Mosaic GPU kernel (`mosaic_gpu.py`), the backward Triton
    pallas_triton  the same with the Triton forward (the only forward before 2026-11-24)
    pallas_mosaic  the Mosaic forward, required (an error where it cannot run)
    cudnn   jax.nn.dot_product_attention(implementation='cudnn'); it takes no segment
            ids, so the segment rows compare against cuDNN's time without them
    xla     hybrid_jax plain-jnp reference; skipped where its [B, H, T, T] float32
            logits would not fit (reported as skipped, with the estimate)
FLOPs count only visible (query, key) pairs: 4·H·D per pair forward (2·B·H·T²·D for
full causal, the anchors' convention), fwd+bwd = 3.5 x fwd. Times: median over
repeats of `--iters` back-to-back calls after warm-up. Prints a ratio table last and
writes every number to JSON. Not a test: run it on the GPU machine.

    python benchmarks/attention.py --out=benchmarks/results/h100_attention.json
    python benchmarks/attention.py --sweep   # block sizes at T=4096, causal
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from timing import time_jax  # benchmarks/ is on sys.path when run as a script

from hybrid_jax.kernels.attention.pallas_gpu import BlockSizes, flash_attention
from hybrid_jax.kernels.attention.reference import attention_reference

XLA_MEMORY_LIMIT = 60e9  # bytes of logits-sized buffers we let the XLA reference try


def documents(b: int, t: int, kind: str, seed: int = 0) -> np.ndarray | None:
    """[b, t] segment ids: None, one document per row, or random documents of mean t/4."""
    if kind == "none":
        return None
    if kind == "one":
        return np.zeros((b, t), np.int32)
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(b):
        lengths = []
        while sum(lengths) < t:
            lengths.append(int(rng.integers(1, t // 2)))
        rows.append(np.repeat(np.arange(len(lengths)), lengths)[:t])
    return np.stack(rows).astype(np.int32)


def visible_pairs(t: int, window: int | None, seg: np.ndarray | None) -> float:
    """Mean over rows of the number of (query, key) pairs the mask lets through."""
    if seg is None:
        seg = np.zeros((1, t), np.int32)
    total = 0
    for row in seg:
        starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
        for lo, hi in zip(starts, np.r_[starts[1:], t]):
            n = hi - lo
            i = np.arange(n)
            total += np.minimum(i + 1, window or n).sum()
    return total / len(seg)


INTERPRET = False  # --interpret: run the Pallas kernel in the interpreter (CPU smoke test)
# --impls names of flash_attention's forward kernels (the backward is Triton's in all)
PALLAS_FORWARDS = {"pallas": "auto", "pallas_triton": "triton", "pallas_mosaic": "mosaic"}


def make_fns(impl: str, window: int | None, seg: jax.Array | None,
             blocks: BlockSizes | None = None) -> tuple[Callable, Callable]:
    if impl in PALLAS_FORWARDS:  # pallas: the default (Mosaic forward on Hopper)
        attn = lambda q, k, v: flash_attention(q, k, v, window=window, segment_ids=seg,
                                               block_sizes=blocks, interpret=INTERPRET,
                                               forward=PALLAS_FORWARDS[impl])
    elif impl == "cudnn":
        attn = lambda q, k, v: jax.nn.dot_product_attention(
            q, k, v, is_causal=True, implementation="cudnn",
            local_window_size=None if window is None else (window - 1, 0))
    else:
        attn = lambda q, k, v: attention_reference(q, k, v, window=window, segment_ids=seg)

    def fwd_bwd(q, k, v, do):
        _, vjp = jax.vjp(attn, q, k, v)
        return vjp(do)

    return jax.jit(attn), jax.jit(fwd_bwd)


def inputs(b: int, t: int, h: int, d: int) -> tuple[jax.Array, ...]:
    ks = jax.random.split(jax.random.key(0), 4)
    return tuple(jax.random.normal(kk, (b, t, h, d), jnp.bfloat16) for kk in ks)


def run_grid(args: argparse.Namespace) -> list[dict]:
    b, h, d = args.batch, args.heads, args.head_dim
    records: list[dict] = []
    for t in args.seq_lens:
        q, k, v, do = inputs(b, t, h, d)
        for window in (None, args.window):
            for seg_kind in ("none", "one", "docs"):
                seg_np = documents(b, t, seg_kind)
                seg = None if seg_np is None else jnp.asarray(seg_np)
                fwd_flops = 4.0 * b * h * d * visible_pairs(t, window, seg_np)
                for impl in args.impls:
                    if impl == "cudnn" and seg_kind != "none":
                        continue
                    fwd, fwd_bwd = make_fns(impl, window, seg)
                    for mode in ("fwd", "fwd+bwd"):
                        rec = dict(impl=impl, T=t, window=window or "full",
                                   segments=seg_kind, mode=mode, B=b, H=h, D=d)
                        buffers = 3 if mode == "fwd" else 5
                        need = buffers * b * h * t * t * 4
                        if impl == "xla" and need > XLA_MEMORY_LIMIT:
                            rec["skipped"] = (f"XLA reference needs ~{need / 1e9:.0f} GB "
                                              f"of [B,H,T,T] buffers (limit "
                                              f"{XLA_MEMORY_LIMIT / 1e9:.0f})")
                            records.append(rec)
                            continue
                        fn_args = (q, k, v) if mode == "fwd" else (q, k, v, do)
                        fn = fwd if mode == "fwd" else fwd_bwd
                        flops = fwd_flops * (1.0 if mode == "fwd" else 3.5)
                        try:
                            iters = max(3, min(50, int(2e13 / flops)))
                            ms = time_jax(fn, *fn_args, iters=iters)
                            rec.update(ms=ms, tflops=flops / ms / 1e9, flops=flops)
                        except Exception as e:  # OOM or a compile failure: record it
                            rec["error"] = f"{type(e).__name__}: {str(e)[:300]}"
                        records.append(rec)
                        print(json.dumps(rec), flush=True)
    return records


def _configs(spec: str, width: int) -> list[tuple[int, ...]]:
    """'128,32,4,4;64,64,4,3' -> [(128, 32, 4, 4), (64, 64, 4, 3)], each of `width` ints."""
    out = [tuple(int(x) for x in item.split(",")) for item in spec.split(";") if item.strip()]
    for cfg in out:
        if len(cfg) != width:
            raise ValueError(f"sweep config {cfg}: expected {width} integers")
    return out


def sweep(args: argparse.Namespace) -> list[dict]:
    """Block sizes and launch parameters at T=4096, causal, no segments."""
    b, h, d, t = args.batch, args.heads, args.head_dim, 4096
    q, k, v, do = inputs(b, t, h, d)
    fwd_flops = 4.0 * b * h * d * visible_pairs(t, None, None)
    out = []
    fwd_cfgs = _configs(args.sweep_fwd, 4) if args.sweep_fwd else [
        (128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (128, 64, 8, 4),
        (128, 128, 8, 2), (64, 64, 4, 3), (128, 32, 4, 4)]
    for bq, bk, warps, stages in fwd_cfgs:
        blocks = BlockSizes(block_q=bq, block_k=bk, num_warps=warps, num_stages=stages)
        fwd, _ = make_fns("pallas_triton", None, None, blocks)
        rec = dict(kind="fwd", block_q=bq, block_k=bk, num_warps=warps, num_stages=stages)
        try:
            ms = time_jax(fwd, q, k, v, iters=20)
            rec.update(ms=ms, tflops=fwd_flops / ms / 1e9)
        except Exception as e:
            rec["error"] = f"{type(e).__name__}: {str(e)[:300]}"
        print(json.dumps(rec), flush=True)
        out.append(rec)
    bwd_cfgs = [] if args.sweep_bwd == "-" else _configs(args.sweep_bwd, 6) if args.sweep_bwd else [
        (32, 128, 128, 32, 4, 3), (64, 128, 128, 64, 8, 2), (32, 128, 128, 32, 8, 2),
        (64, 64, 64, 64, 4, 2), (64, 128, 128, 64, 8, 3), (32, 64, 64, 32, 4, 3)]
    for bq_dkv, bk_dkv, bq_dq, bk_dq, warps, stages in bwd_cfgs:
        blocks = BlockSizes(block_q_dkv=bq_dkv, block_k_dkv=bk_dkv, block_q_dq=bq_dq,
                            block_k_dq=bk_dq, num_warps_bwd=warps, num_stages_bwd=stages)
        _, fwd_bwd = make_fns("pallas_triton", None, None, blocks)
        rec = dict(kind="fwd+bwd", **{f.name: getattr(blocks, f.name)
                                      for f in dataclasses.fields(blocks)})
        try:
            ms = time_jax(fwd_bwd, q, k, v, do, iters=10)
            rec.update(ms=ms, tflops=3.5 * fwd_flops / ms / 1e9)
        except Exception as e:
            rec["error"] = f"{type(e).__name__}: {str(e)[:300]}"
        print(json.dumps(rec), flush=True)
        out.append(rec)
    return out


def ratio_table(records: list[dict]) -> str:
    """pallas vs cudnn vs xla per (T, window, segments, mode)."""
    by = {(r["impl"], r["T"], r["window"], r["segments"], r["mode"]): r for r in records}
    keys = sorted({(r["T"], str(r["window"]), r["segments"], r["mode"]) for r in records},
                  key=lambda x: (x[0], x[1], x[2], x[3]))
    lines = ["| T | window | segments | mode | pallas ms | pallas TF/s | cudnn ms | cudnn TF/s"
             " | cudnn/pallas time | xla ms |", "|" + "---|" * 10]

    def get(impl, t, w, s, m):
        w = int(w) if w.isdigit() else w
        return by.get((impl, t, w, s, m), {})

    for t, w, s, m in keys:
        p, x = get("pallas", t, w, s, m), get("xla", t, w, s, m)
        c = get("cudnn", t, w, "none", m)  # cuDNN has no segment ids: its no-segment time
        ratio = f"{c['ms'] / p['ms']:.2f}" if "ms" in p and "ms" in c else "-"
        fmt = lambda r, k, f: f.format(r[k]) if k in r else ("skip" if "skipped" in r or
                                                             "error" in r else "-")
        lines.append(f"| {t} | {w} | {s} | {m} | {fmt(p, 'ms', '{:.3f}')} | "
                     f"{fmt(p, 'tflops', '{:.0f}')} | {fmt(c, 'ms', '{:.3f}')} | "
                     f"{fmt(c, 'tflops', '{:.0f}')} | {ratio} | {fmt(x, 'ms', '{:.2f}')} |")
    return "\n".join(lines)


def summary(records: list[dict], window: int) -> list[str]:
    """The issue's acceptance numbers, where the grid has them."""
    by = {(r["impl"], r["T"], r["window"], r["segments"], r["mode"]): r.get("ms")
          for r in records}
    out = []
    for m in ("fwd", "fwd+bwd"):
        p, c = by.get(("pallas", 4096, "full", "none", m)), by.get(("cudnn", 4096, "full",
                                                                     "none", m))
        if p and c:
            out.append(f"causal T=4096 {m}: pallas at {c / p:.2f}x cuDNN speed (target 0.8)")
        tmax = max(r["T"] for r in records)
        full, win = (by.get(("pallas", tmax, w, "none", m)) for w in ("full", window))
        if full and win:
            out.append(f"T={tmax} {m}: window {window} is {full / win:.2f}x faster than full "
                       f"causal (target 5)")
        for s in ("one", "docs"):
            ratios = []
            for t in sorted({r["T"] for r in records}):
                for w in ("full", window):
                    seg, base = by.get(("pallas", t, w, s, m)), by.get(("pallas", t, w, "none", m))
                    if seg and base:
                        ratios.append(seg / base)
            if ratios:
                out.append(f"{m}: time with segments '{s}' / without: "
                           f"{min(ratios):.2f}..{max(ratios):.2f} (target <= 1)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="")
    ap.add_argument("--seq_lens", default="4096,8192,16384,32768")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--head_dim", type=int, default=128)
    ap.add_argument("--window", type=int, default=4096)
    ap.add_argument("--impls", default="pallas,pallas_triton,cudnn,xla")
    ap.add_argument("--sweep", action="store_true", help="block-size sweep only")
    ap.add_argument("--sweep_fwd", default="",
                    help="forward configs 'block_q,block_k,num_warps,num_stages;...'")
    ap.add_argument("--sweep_bwd", default="",
                    help="backward configs 'block_q_dkv,block_k_dkv,block_q_dq,block_k_dq,"
                         "num_warps_bwd,num_stages_bwd;...' ('-' skips the backward sweep)")
    ap.add_argument("--interpret", action="store_true", help="Pallas interpreter (CPU smoke)")
    args = ap.parse_args()
    global INTERPRET
    INTERPRET = args.interpret
    args.seq_lens = [int(x) for x in args.seq_lens.split(",")]
    args.impls = args.impls.split(",")
    result = {"device": str(jax.devices()[0].device_kind), "jax": jax.__version__}
    if args.sweep:
        result["sweep"] = sweep(args)
    else:
        records = run_grid(args)
        result["records"] = records
        result["summary"] = summary(records, args.window)
        print(ratio_table(records))
        print("\n".join(result["summary"]))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
