"""One way to time a GPU call, for JAX and torch alike, so that ratios compare like with like.

Method: after `warmup` calls, `repeats` times run `iters` calls back to back and wait once
at the end; the time of one call is the median over repeats of (elapsed / iters). Host
dispatch overlaps with the GPU's work, as it does inside a model, so a call costs its
device time (plus launch gaps only where the host cannot keep up, which is then a real
cost of that implementation). Timing each call with a wait after it instead adds a
host round trip (~0.1 ms on the H100 machine) to every measurement; Triton's
`do_bench` (CUDA events around each call, an L2 flush between calls) leaves it out.
Mixing the two methods in one ratio flattered whichever side `do_bench` timed: before
this module, benchmarks/gdn.py timed our kernels the first way and fla's with do_bench.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def _time(call: Callable[[], Any], wait: Callable[[Any], None], *, iters: int,
          repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        wait(call())
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = None
        for _ in range(iters):
            out = call()
        wait(out)
        runs.append((time.perf_counter() - t0) / iters)
    return 1e3 * statistics.median(runs)


def time_jax(fn: Callable, *args, iters: int = 20, repeats: int = 5, warmup: int = 2) -> float:
    """ms per call of the jitted `fn(*args)` (see the module docstring)."""
    import jax

    return _time(lambda: fn(*args), jax.block_until_ready, iters=iters, repeats=repeats,
                 warmup=warmup)


def time_torch(fn: Callable[[], Any], *, iters: int = 20, repeats: int = 5,
               warmup: int = 2) -> float:
    """ms per call of `fn()` on the current CUDA device (same method as `time_jax`)."""
    import torch

    return _time(fn, lambda _: torch.cuda.synchronize(), iters=iters, repeats=repeats,
                 warmup=warmup)
