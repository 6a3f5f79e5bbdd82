"""Where a jitted call's device time goes: kernel times from a profiler trace, grouped.

    from op_profile import profile_ops, print_profile
    prof = profile_ops(jitted_fn, *args, calls=3)   # {"kernels": [...], "categories": {...}}
    print_profile(prof)

`jax.profiler.trace` records `calls` calls (after one untimed call); the trace is read
back with `jax.profiler.ProfileData` and each kernel's time summed per call. On a GPU
the kernels are the events on the device plane's stream lines; on a CPU (a smoke run)
the XLA thunks on the host plane. Each kernel gets a category from its name (and its
HLO op), so that a window's time reads as matmuls / attention / GDN / other fusions:

    gemm       cuBLAS / cuBLASLt / CUTLASS matrix products
    cudnn      cuDNN kernels (fused attention)
    pallas     Triton kernels from Pallas (our attention and GDN kernels)
    fusion     XLA's own fused kernels (elementwise, reductions, convolutions, copies)
    other      anything else (memcpy, memset, ...)
"""

from __future__ import annotations

import collections
import glob
import re
import tempfile
from collections.abc import Callable
from typing import Any

_CATEGORIES = (  # first match wins; tested against the kernel name, then the HLO op
    ("cudnn", re.compile(r"cudnn|fmha|flash_fprop|flash_bprop|sdpa", re.I)),
    ("gemm", re.compile(r"gemm|xmma|cutlass|nvjet|cublas|matmul|\bdot\b|sm\d+_.*_tn", re.I)),
    ("pallas", re.compile(r"_kernel\b|pallas|triton|gdn_|flash_attention", re.I)),
    ("fusion", re.compile(r"fusion|reduce|convolution|transpose|copy|concatenate|"
                          r"dynamic[-_]update|slice|scatter|gather|broadcast|select", re.I)),
)


def categorize(kernel: str, hlo_op: str = "") -> str:
    """The category (see the module docstring) of a kernel, by its name, then its HLO op."""
    for text in (kernel, hlo_op):
        for name, pattern in _CATEGORIES:
            if text and pattern.search(text):
                return name
    return "other"


def _events(space) -> list[tuple[str, str, float]]:
    """(kernel name, hlo op, duration ns) of every device kernel in a trace; the host's
    XLA thunks where no device plane holds any (CPU runs)."""
    device = [p for p in space.planes if p.name.startswith("/device:")]
    out = []
    for plane in device:
        for line in plane.lines:
            if not line.name.startswith("Stream"):
                continue
            for e in line.events:
                stats = dict(e.stats)
                out.append((e.name, str(stats.get("hlo_op", "")), float(e.duration_ns)))
    if out:
        return out
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            for e in line.events:
                stats = dict(e.stats)
                if "hlo_op" in stats:
                    out.append((e.name, str(stats["hlo_op"]), float(e.duration_ns)))
    return out


def profile_ops(fn: Callable, *args: Any, calls: int = 3, top: int = 40) -> dict:
    """Per-call device time of the jitted `fn(*args)`, by kernel and by category (ms).

    Returns {"calls", "total_ms", "categories": {cat: ms}, "kernels": [{"kernel",
    "hlo_op", "category", "ms", "count"}] (the `top` slowest, by time per call)}.
    """
    import jax
    from jax.profiler import ProfileData

    jax.block_until_ready(fn(*args))  # compiled and warm before the trace starts
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            for _ in range(calls):
                jax.block_until_ready(fn(*args))
        paths = glob.glob(f"{d}/**/*.xplane.pb", recursive=True)
        if not paths:
            raise RuntimeError(f"jax.profiler.trace wrote no .xplane.pb under {d}")
        events = _events(ProfileData.from_file(paths[0]))
    if not events:
        raise RuntimeError("the trace holds no kernel events (no device plane, no XLA "
                           "thunks on the host): is the profiler supported here?")
    by_kernel: dict[tuple[str, str], list[float]] = collections.defaultdict(lambda: [0.0, 0])
    for name, hlo_op, ns in events:
        row = by_kernel[(name, hlo_op)]
        row[0] += ns
        row[1] += 1
    kernels = [{"kernel": name, "hlo_op": hlo_op, "category": categorize(name, hlo_op),
                "ms": ns / 1e6 / calls, "count": count / calls}
               for (name, hlo_op), (ns, count) in by_kernel.items()]
    kernels.sort(key=lambda k: -k["ms"])
    categories: dict[str, float] = collections.defaultdict(float)
    for k in kernels:
        categories[k["category"]] += k["ms"]
    return {"calls": calls, "total_ms": sum(categories.values()),
            "categories": dict(sorted(categories.items(), key=lambda kv: -kv[1])),
            "kernels": kernels[:top]}


def print_profile(prof: dict, top: int = 20, width: int = 70) -> None:
    """The category totals, then the `top` slowest kernels, one line each."""
    total = prof["total_ms"]
    print(f"device time per call: {total:.2f} ms (kernels summed; {prof['calls']} calls traced)")
    for cat, ms in prof["categories"].items():
        print(f"  {cat:<8} {ms:9.2f} ms  {100 * ms / total:5.1f}%")
    print("  slowest kernels (ms per call, launches per call):")
    for k in prof["kernels"][:top]:
        name = k["kernel"] if len(k["kernel"]) <= width else k["kernel"][:width - 3] + "..."
        print(f"    {k['ms']:8.3f} {k['count']:6.0f}x  {k['category']:<7} {name}"
              f"  [{k['hlo_op'][:30]}]")
