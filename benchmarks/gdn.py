"""Gated DeltaNet speed: our implementations vs fla's Triton kernel, FlashQLA and cuDNN
attention.

Same run, same GPU, same shapes (bf16, H heads, Dk = `--head_dim`, Dv = `--value_dim`,
by default the same):
    xla        hybrid_jax chunked UT/WY form under jit (the reference tier)
    pallas     hybrid_jax Pallas Triton kernels (`pallas_gpu.py`), through the dispatcher:
               the forward outside differentiation (bf16) is the fused one, an A-and-P
               kernel and one state pass that forms V' on chip (no W or U in memory)
    pallas_fused  the same kernels with the fused forward under differentiation too
               (gdn_impl=pallas_fused; the reverse state pass then reads A, not W)
    pallas_unfused  the same kernels with no fused forward (the wy kernel and the state
               pass; the default before 2026-12-08)
    fla        flash-linear-attention `chunk_gated_delta_rule` (torch/Triton), if importable,
               called with FLA_FLASH_QLA=0 so the Triton path is what is timed (its
               backward's dqkwg kernel on TileLang where tilelang is importable, as
               fla does on Hopper; the row says which: `fla_peer.py`)
    flashqla   the same fla call with FLA_FLASH_QLA=1: fla 0.6.0 then hands it to FlashQLA
               (Qwen's fused TileLang forward and backward for Hopper, K = V = 128, bf16 /
               fp16, beta in (0, 1)), if `flash_qla` is importable and fla's FlashQLA
               backend accepts the inputs (else the row says why, nothing silently falls
               back to Triton). Bundle: ../shared/tools/flashqla_bundle.sh
    cudnn_attn causal softmax attention through jax.nn.dot_product_attention(cudnn)
    IMPL@P     one of ours with each sequence cut into P pieces run side by side
               (`kernels/gdn/split.py`, intra-sequence parallelism), e.g. pallas@4
    IMPL:k=v   one of the pallas ones with Pallas kernel tuning fields (`KernelConfig`),
               e.g. pallas:wy_block=32, pallas_fused@2:wy_block=32:num_warps=8
Modes: fwd and fwd+bwd (gradients wrt q, k, v, g, beta). Prints times, tokens/s and
ratios against `xla` per shape, then a summary table (Pallas against fla and against its
own forward) and, with flashqla among the impls, the peer table (Pallas against fla
Triton and FlashQLA), and writes every number to JSON: after each step (cross-check,
breakdown, sweep, each shape), with "complete": false until the end, so a run stopped by
a lent machine's time limit keeps what it measured. `--check` first runs each
implementation at small shapes against the float32 per-token recurrence
(`gdn_check.py`: outputs, final state and gradients, max abs / relative error), so a
peer is known to compute the same function. `--sweep` times Pallas kernel variants
(V-block width, warps) at one shape. Not a test: run it on the GPU machine.

    python benchmarks/gdn.py --out=/tmp/gdn.json --seq_lens=2048,4096,8192,16384
    python benchmarks/gdn.py --impls=pallas,fla,flashqla --seq_lens=4096,8192 \
        --check='1,4096,4;2,1024,4' --out=/tmp/gdn_qla.json
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os

os.environ.setdefault("FLA_FLASH_QLA", "0")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from fla_peer import (  # noqa: E402  (benchmarks/ is on sys.path)
    fla_backward_note,
    fla_call,
    flashqla_refusal,
    versions,
)
from gdn_check import cross_check, gdn_inputs, is_ours, our_impl, parse_shapes  # noqa: E402
from timing import time_jax, time_torch  # noqa: E402

from hybrid_jax.kernels.gdn import (  # noqa: E402
    gated_delta_rule_pallas_gpu,
)
from hybrid_jax.kernels.gdn import pallas_common as pc  # noqa: E402
from hybrid_jax.kernels.gdn.pallas_gpu import _BACKEND as be  # noqa: E402
from hybrid_jax.kernels.gdn.pallas_gpu import gpu_config  # noqa: E402

INTERPRET = False  # --interpret: Pallas interpreter, to smoke-test this script on CPU



def bench_fn(fn, b, t, h, d, dv):
    """fwd and fwd+bwd times (ms) of fn(q, k, v, g, beta) -> (o, state)."""
    args = gdn_inputs(b, t, h, d, dv)
    fwd = jax.jit(lambda *a: fn(*a)[0])
    loss = lambda *a: jnp.sum(fn(*a)[0].astype(jnp.float32))
    fwd_bwd = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3, 4)))
    return {"fwd": time_jax(fwd, *args), "fwd+bwd": time_jax(fwd_bwd, *args)}


def bench_ours(impl, b, t, h, d, dv):
    return bench_fn(our_impl(impl), b, t, h, d, dv)


def parse_variant(variant: str) -> dict[str, int]:
    """'block_v=32,num_warps_state=4' -> {'block_v': 32, 'num_warps_state': 4}; '' -> {}."""
    items = [item.strip() for item in variant.split(",") if item.strip()]
    return {key: int(val) for key, val in (item.split("=") for item in items)}


def sweep(spec: str, b, t, h, d, dv) -> list[dict]:
    """Time Pallas variants at one shape. `spec`: variants separated by ';', each a
    comma-separated list of key=int over block_v and the KernelConfig launch fields
    (num_warps, num_warps_state, num_warps_grads, num_stages_state, block_v_wy,
    block_v_grads, pad_v)."""
    rows = []
    for variant in spec.split(";"):
        kw = parse_variant(variant)
        fn = functools.partial(gated_delta_rule_pallas_gpu, interpret=INTERPRET, **kw)
        try:
            r = bench_fn(fn, b, t, h, d, dv)
        except Exception as e:  # a variant that does not compile: report, go on
            r = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
        rows.append({"variant": kw, "times_ms": r})
        print(f"sweep B={b} T={t} H={h} D={d} Dv={dv} {kw}: {r}", flush=True)
    return rows


def breakdown(spec: str, b, t, h, d, dv) -> list[dict]:
    """Time each Pallas kernel alone (ms) at one shape, per variant of `spec` (as --sweep):
    the forward's wy and state passes (plain, and saving the backward's residuals), the
    fused forward (both kernels; plain and saving), the reverse state pass (reading W,
    and reading A as after the fused forward) and the gradient kernels. Tells which
    kernel to go after. Each part is its own jitted call (timed as in timing.py);
    `prepare` includes copies of q, k, v that the fused program does not make."""
    q, k, v, g, beta = gdn_inputs(b, t, h, d, dv)
    rows = []
    for variant in spec.split(";"):
        kw = parse_variant(variant)
        try:
            cfg = gpu_config(q, k, v, scale=None, chunk=64, interpret=INTERPRET,
                             **{"block_v": None, **kw})
            rows.append(_breakdown_variant(kw, cfg, q, k, v, g, beta))
        except Exception as e:  # a variant that does not compile or fit: report, go on
            rows.append({"variant": kw, "failed": f"{type(e).__name__}: "
                                                  f"{str(e).splitlines()[0][:160]}"})
        print(f"breakdown B={b} T={t} H={h} D={d} Dv={dv} " + json.dumps(rows[-1]), flush=True)
    return rows


def _breakdown_variant(kw, cfg, q, k, v, g, beta) -> dict:
    p = pc.prepare(q, k, v, g, beta, None, None, 64, cfg.pad_v)
    wy = lambda p, save: be.wy(cfg, p.q, p.k, p.v, p.beta, p.gamma, p.rel, save=save)
    state = lambda p, w, u, pp, save: be.state_fwd(cfg, p.q, p.k, w, u, pp, p.gamma,
                                                   p.rel, p.h0, save=save)
    w, u, pp, a = jax.jit(wy, static_argnums=1)(p, True)
    _, _, states, v_new = jax.jit(state, static_argnums=4)(p, w, u, pp, True)
    do, dht = jnp.ones_like(p.v), jnp.zeros_like(p.h0)
    bwd = lambda p, w, pp, do: be.state_bwd(cfg, p.q, p.k, w, pp, p.gamma, p.rel, do, dht)
    dstates, dvn, _ = jax.jit(bwd)(p, w, pp, do)
    fused_cfg = dataclasses.replace(cfg, fused_fwd=1)
    fused = lambda p, save: be.fused_forward(fused_cfg, p.q, p.k, p.v, p.beta, p.gamma,
                                             p.rel, p.h0, save=save)
    grads = lambda p, a, vn, st, dst, do, dvn: be.grads(
        cfg, p.q, p.k, p.v, p.beta, p.gamma, p.rel, a, vn, st, dst, do, dvn)
    parts = {
        "prepare": (jax.jit(lambda *a: pc.prepare(*a, None, None, 64, cfg.pad_v)),
                    (q, k, v, g, beta)),
        "wy": (jax.jit(lambda p: wy(p, False)), (p,)),
        "wy(save)": (jax.jit(lambda p: wy(p, True)), (p,)),
        "state_fwd": (jax.jit(lambda *x: state(*x, False)), (p, w, u, pp)),
        "state_fwd(save)": (jax.jit(lambda *x: state(*x, True)), (p, w, u, pp)),
        "fused_forward": (jax.jit(lambda p: fused(p, False)), (p,)),
        "fused_forward(save)": (jax.jit(lambda p: fused(p, True)), (p,)),
        "state_bwd": (jax.jit(bwd), (p, w, pp, do)),
        "state_bwd(from A)": (jax.jit(lambda p, a, pp, do: be.state_bwd(
            cfg, p.q, p.k, None, pp, p.gamma, p.rel, do, dht, a=a, beta=p.beta)),
            (p, a, pp, do)),
        "grads": (jax.jit(grads), (p, a, v_new, states, dstates, do, dvn)),
    }
    return {"variant": kw, **{name: time_jax(fn, *fn_args)
                              for name, (fn, fn_args) in parts.items()}}


def bench_cudnn_attention(b, t, h, d):
    ks = jax.random.split(jax.random.key(1), 3)
    q, k, v = (jax.random.normal(kk, (b, t, h, d), jnp.bfloat16) for kk in ks)
    attn = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=True,
                                                        implementation="cudnn")
    fwd = jax.jit(attn)
    fwd_bwd = jax.jit(jax.grad(lambda *a: jnp.sum(attn(*a).astype(jnp.float32)), (0, 1, 2)))
    return {"fwd": time_jax(fwd, q, k, v), "fwd+bwd": time_jax(fwd_bwd, q, k, v)}


def _fla_inputs(b, t, h, d, dv):
    import torch

    dev = "cuda"
    q = torch.nn.functional.normalize(torch.randn(b, t, h, d, device=dev), dim=-1).bfloat16()
    k = torch.nn.functional.normalize(torch.randn(b, t, h, d, device=dev), dim=-1).bfloat16()
    v = torch.randn(b, t, h, dv, device=dev, dtype=torch.bfloat16)
    g = torch.nn.functional.logsigmoid(torch.randn(b, t, h, device=dev))
    beta = torch.randn(b, t, h, device=dev).sigmoid().bfloat16()
    return q, k, v, g, beta


def bench_fla(b, t, h, d, dv, *, flash_qla: bool = False):
    """fla's Triton path (flash_qla=False) or FlashQLA through fla (True): ms of fwd and
    fwd+bwd (gradients of sum(o) wrt q, k, v, g, beta, returned, not accumulated)."""
    import torch
    from triton.testing import do_bench

    q, k, v, g, beta = _fla_inputs(b, t, h, d, dv)
    if flash_qla and (why := flashqla_refusal(q, k, v, g, beta)):
        return f"unavailable: {why}"
    chunk_gated_delta_rule = fla_call(flash_qla)
    fwd = lambda: chunk_gated_delta_rule(q, k, v, g, beta)  # noqa: E731

    # the ratio tables use `fwd` (timing.py's method, as ours); `fwd_do_bench` is Triton's
    # own per-call CUDA-event timing, the method behind the anchors' fla numbers
    out = {"fwd": time_torch(fwd), "fwd_do_bench": do_bench(fwd, return_mode="median")}
    leaves = [x.detach().requires_grad_() for x in (q, k, v, g, beta)]

    def fwd_bwd():
        o, _ = chunk_gated_delta_rule(*leaves)
        return torch.autograd.grad(o.float().sum(), leaves)

    if not flash_qla:
        out["backward"] = fla_backward_note()
    try:
        out["fwd+bwd"] = time_torch(fwd_bwd)
    except RuntimeError as e:  # fla refuses its backward on Hopper with Triton < 3.7.1
        out["fwd+bwd"] = f"refused: {str(e).splitlines()[0][:160]}"
    return out


def fla_breakdown(b, t, h, d, dv) -> dict:
    """fla's forward stages, each timed alone (ms), beside `breakdown`'s Pallas kernels:
    the gate's chunk cumsum, the intra-chunk WY stage (K K^T, the inverse, W and U), the
    state pass (per-chunk states and V') and the output kernel (parallel over chunks).
    Reaches into fla 0.6.0's internal functions; an API change is reported, not fatal."""
    try:
        from fla.ops.common.chunk_delta_h import chunk_gated_delta_rule_fwd_h
        from fla.ops.common.chunk_o import chunk_fwd_o
        from fla.ops.gated_delta_rule.chunk_fwd import chunk_gated_delta_rule_fwd_intra
        from fla.ops.utils import chunk_local_cumsum
        from fla.ops.utils.constant import RCP_LN2
        q, k, v, g, beta = _fla_inputs(b, t, h, d, dv)
        gc = chunk_local_cumsum(g, chunk_size=64, scale=RCP_LN2)
        w, u, _ = chunk_gated_delta_rule_fwd_intra(k=k, v=v, g=gc, beta=beta, chunk_size=64)
        states, v_new, _ = chunk_gated_delta_rule_fwd_h(k=k, w=w, u=u, g=gc, chunk_size=64)
        stages = {
            "cumsum": lambda: chunk_local_cumsum(g, chunk_size=64, scale=RCP_LN2),
            "wy": lambda: chunk_gated_delta_rule_fwd_intra(k=k, v=v, g=gc, beta=beta,
                                                           chunk_size=64),
            "state_fwd": lambda: chunk_gated_delta_rule_fwd_h(k=k, w=w, u=u, g=gc,
                                                              chunk_size=64),
            "output": lambda: chunk_fwd_o(q=q, k=k, v=v_new, h=states, g=gc,
                                          scale=d ** -0.5, chunk_size=64),
        }
        row = {name: time_torch(fn) for name, fn in stages.items()}
    except Exception as e:  # fla missing or its internals moved: say so, go on
        row = {"failed": f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"}
    print(f"fla breakdown B={b} T={t} H={h} D={d} Dv={dv} " + json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq_lens", default="2048,4096,8192,16384")
    parser.add_argument("--tokens", type=int, default=16384, help="b * t per measurement")
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--head_dim", type=int, default=128, help="Dk (and attention's D)")
    parser.add_argument("--value_dim", type=int, default=0, help="Dv (0: --head_dim); "
                        "the release's GDN: --head_dim=96 --value_dim=192")
    parser.add_argument("--impls", default="xla,pallas,fla,cudnn_attn")
    parser.add_argument("--out", default="gdn_benchmark.json")
    parser.add_argument("--sweep", default="",
                        help="Pallas variants timed at T=--sweep_seq_len (B = tokens / T) "
                             "before the main table, e.g. "
                             "'block_v=64;block_v=32,num_warps_state=4'")
    parser.add_argument("--sweep_seq_len", type=int, default=4096)
    parser.add_argument("--breakdown", default="",
                        help="time each Pallas kernel alone at T=4096 for these variants "
                             "(syntax of --sweep; '' for the defaults only: pass ' '), and "
                             "fla's forward stages too when fla is among --impls")
    parser.add_argument("--check", default="",
                        help="cross-check every impl against the float32 recurrence at "
                             "these 'B,T,H' shapes (';'-separated, K and V as timed) "
                             "before timing, e.g. '1,4096,4;2,1024,4'")
    parser.add_argument("--interpret", action="store_true",
                        help="run the Pallas kernels in the interpreter (CPU smoke test)")
    args = parser.parse_args()
    global INTERPRET
    INTERPRET = args.interpret
    h, d = args.heads, args.head_dim
    dv = args.value_dim or d
    results = []
    impls = args.impls.split(",")
    unknown = [i for i in impls if not is_ours(i) and i not in ("fla", "flashqla", "cudnn_attn")]
    if unknown:
        parser.error(f"--impls: unknown {', '.join(unknown)} (xla, pallas, pallas_fused, "
                     "pallas_unfused, IMPL@P, IMPL:key=val, fla, flashqla, cudnn_attn)")
    report = {"device": str(jax.devices()[0]), "jax": jax.__version__, "peers": versions(),
              "impls": impls, "complete": False, "results": results, "cross_check": [],
              "pallas_sweep": [], "pallas_breakdown": [], "fla_breakdown": {}}

    def save() -> None:
        """Write what is measured so far (atomically): a call cut by its time limit still
        leaves every finished row, with "complete": false."""
        tmp = f"{args.out}.tmp"
        with open(tmp, "w") as f:
            json.dump(report, f, indent=2)
        os.replace(tmp, args.out)

    save()
    for shape in parse_shapes(args.check):
        report["cross_check"].append(cross_check(shape, d, dv, impls))
        save()
    b4 = max(1, args.tokens // 4096)
    if args.breakdown:
        report["pallas_breakdown"] = breakdown(args.breakdown.strip(), b4, 4096, h, d, dv)
        if "fla" in impls:
            report["fla_breakdown"] = fla_breakdown(b4, 4096, h, d, dv)
        save()
    t_sw = args.sweep_seq_len
    if args.sweep:
        report["pallas_sweep"] = sweep(args.sweep, max(1, args.tokens // t_sw), t_sw, h, d, dv)
        save()
    for t in (int(x) for x in args.seq_lens.split(",") if x):
        b = max(1, args.tokens // t)
        row = {"b": b, "t": t, "h": h, "d": d, "dv": dv, "device": str(jax.devices()[0])}
        for impl in impls:
            try:
                if is_ours(impl):
                    row[impl] = bench_ours(impl, b, t, h, d, dv)
                elif impl in ("fla", "flashqla"):
                    row[impl] = bench_fla(b, t, h, d, dv, flash_qla=impl == "flashqla")
                elif impl == "cudnn_attn":
                    row[impl] = bench_cudnn_attention(b, t, h, d)
            except Exception as e:  # report, keep measuring the others
                row[impl] = f"unavailable: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
        results.append(row)
        save()
        print_row(row, impls)
    print_summary(results)
    if "flashqla" in impls:
        print_peers(results, impls)
    report["complete"] = True
    save()
    print(f"wrote {args.out}")


def _ms(row, impl, mode):
    r = row.get(impl)
    x = r.get(mode) if isinstance(r, dict) else None
    return x if isinstance(x, float) else None


def print_summary(results) -> None:
    """One line per T: the Pallas kernel against fla, XLA, cuDNN attention and itself."""
    def cell(x, fmt="{:8.3f}"):
        return fmt.format(x) if x is not None else f"{'-':>8}"

    def ratio(a, b):
        return a / b if a is not None and b is not None else None

    print("\nms (bf16)            fwd: pallas      fla      xla    cudnn | fwd+bwd: pallas"
          "      xla    cudnn | fla/pallas fwd | pallas (fwd+bwd)/fwd")
    for row in results:
        p_f, p_b = _ms(row, "pallas", "fwd"), _ms(row, "pallas", "fwd+bwd")
        print(f"B={row['b']:<2} T={row['t']:<6} H={row['h']} D={row['d']}  "
              f"{cell(p_f)} {cell(_ms(row, 'fla', 'fwd'))} {cell(_ms(row, 'xla', 'fwd'))} "
              f"{cell(_ms(row, 'cudnn_attn', 'fwd'))} |         {cell(p_b)} "
              f"{cell(_ms(row, 'xla', 'fwd+bwd'))} {cell(_ms(row, 'cudnn_attn', 'fwd+bwd'))} | "
              f"{cell(ratio(_ms(row, 'fla', 'fwd'), p_f), '{:14.2f}x')} | "
              f"{cell(ratio(p_b, p_f), '{:19.2f}x')}")


def print_peers(results, impls) -> None:
    """Issue 23's table: each of our implementations against FlashQLA and fla Triton,
    ms, and our speed as a multiple of the peer's (> 1: ours faster)."""
    def cell(x, fmt="{:8.3f}"):
        return fmt.format(x) if x is not None else f"{'-':>8}"

    def ratio(a, b):
        return a / b if a is not None and b is not None else None

    ours = [impl for impl in impls if is_ours(impl)]
    width = max([len(impl) for impl in ours] + [10])
    print(f"\nms (bf16) {'':<{width - 8}}  fwd   fwd+bwd | speed / FlashQLA's: fwd  fwd+bwd | "
          "fwd speed / fla Triton's")
    for row in results:
        q_f, q_b, t_f = (_ms(row, "flashqla", "fwd"), _ms(row, "flashqla", "fwd+bwd"),
                         _ms(row, "fla", "fwd"))
        print(f"B={row['b']} T={row['t']} H={row['h']} K={row['d']} V={row['dv']}: "
              f"FlashQLA {cell(q_f).strip()} / {cell(q_b).strip()}, fla Triton fwd "
              f"{cell(t_f).strip()}")
        for impl in ours:
            f, b = _ms(row, impl, "fwd"), _ms(row, impl, "fwd+bwd")
            print(f"  {impl:<{width}} {cell(f)} {cell(b, '{:9.3f}')} |"
                  f"{cell(ratio(q_f, f), '{:23.2f}x')} {cell(ratio(q_b, b), '{:7.2f}x')} |"
                  f"{cell(ratio(t_f, f), '{:24.2f}x')}")
        if isinstance(row.get("flashqla"), str):
            print(f"  flashqla: {row['flashqla']}")


def print_row(row, impls) -> None:
    tokens = row["b"] * row["t"]
    print(f"\nB={row['b']} T={row['t']} H={row['h']} D={row['d']} Dv={row['dv']} "
          f"on {row['device']}")
    base = row.get("xla") if isinstance(row.get("xla"), dict) else None
    for impl in impls:
        r = row.get(impl)
        if not isinstance(r, dict):
            print(f"  {impl:<11} {r}")
            continue
        cells = []
        for mode in ("fwd", "fwd+bwd"):
            ms = r.get(mode)
            if not isinstance(ms, float):
                cells.append(f"{mode}: {ms}")
                continue
            ratio = f" ({base[mode] / ms:5.2f}x xla)" if base and isinstance(
                base.get(mode), float) else ""
            cells.append(f"{mode} {ms:8.3f} ms {tokens / ms / 1e3:7.2f} Mtok/s{ratio}")
        if isinstance(r.get("fwd_do_bench"), float):
            cells.append(f"fwd by do_bench {r['fwd_do_bench']:.3f} ms")
        if "backward" in r:
            cells.append(f"backward: {r['backward']}")
        print(f"  {impl:<11} " + " | ".join(cells))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
