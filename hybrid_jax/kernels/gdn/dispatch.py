"""`gated_delta_rule`: one entry point, implementation chosen by `GdnImpl`.

    xla        chunked UT/WY form in plain JAX (`chunked.py`): runs everywhere.
    recurrent  per-token scan (`reference.py`): the ground truth, slow; for tests.
    pallas     Pallas kernels: Triton on GPU (`pallas_gpu.py`), Mosaic on TPU
               (`pallas_tpu.py`). Elsewhere, like the attention kernels, they run in
               Pallas' interpret mode (slow; for tests), logged once: the GPU kernel,
               or the TPU kernel if HYBRID_JAX_GDN_PALLAS_INTERPRET=tpu.
               On GPU (bf16) the forward outside differentiation is the fused one
               (an A-and-P kernel and one state pass; `pallas_gpu._Triton.fused_forward`),
               the forward under differentiation the wy kernel and the state pass.
    pallas_fused  the GPU kernels with the fused forward under differentiation too
               (`fused_save=1`); in interpret mode off GPU, refused on TPU.
    pallas_unfused  the GPU kernels with no fused forward at all (`fused_fwd=0`): the
               default before 2026-12-08, kept for side-by-side timings; as
               pallas_fused off GPU and on TPU.
    auto       pallas on GPU and TPU, xla on CPU; the choice is logged once.

`pieces` > 1 runs any of them with each sequence cut into that many pieces side by side
(`split.py`: intra-sequence parallelism for small batch x heads; about 2 + K/V times the
state-pass work).
"""

from __future__ import annotations

import os

from hybrid_jax.kernels.gdn.chunked import gated_delta_rule_chunked
from hybrid_jax.kernels.gdn.pallas_gpu import gated_delta_rule_pallas_gpu
from hybrid_jax.kernels.gdn.pallas_tpu import gated_delta_rule_pallas_tpu
from hybrid_jax.kernels.gdn.reference import gated_delta_rule_recurrent
from hybrid_jax.kernels.gdn.split import gated_delta_rule_split
from hybrid_jax.kernels.impl import GdnImpl, announce, parse, platform
from hybrid_jax.typing import GdnBeta, GdnGate, GdnQK, GdnState, GdnV, SegmentIds

PALLAS_INTERPRET_ENV = "HYBRID_JAX_GDN_PALLAS_INTERPRET"
# The GPU kernels' named variants: their fused-forward fields (`pallas_common.KernelConfig`).
GPU_VARIANTS = {
    GdnImpl.PALLAS_FUSED: {"fused_fwd": 1, "fused_save": 1},
    GdnImpl.PALLAS_UNFUSED: {"fused_fwd": 0, "fused_save": 0},
}


def resolve_gdn_impl(impl: str | GdnImpl) -> GdnImpl:
    """The concrete implementation `impl` stands for on this platform."""
    choice = parse(GdnImpl, impl, "gdn_impl")
    if choice is GdnImpl.AUTO:
        plat = platform()
        if plat in ("gpu", "tpu"):
            kernel = "Triton" if plat == "gpu" else "Mosaic"
            announce("gated_delta_rule", "pallas", f"auto on {plat}: {kernel} kernels")
            return GdnImpl.PALLAS
        announce("gated_delta_rule", "xla", f"auto on {plat}: chunked XLA form")
        return GdnImpl.XLA
    return choice  # type: ignore[return-value]


def pallas_target() -> tuple[str, bool]:
    """(kernel family 'gpu' | 'tpu', interpret?) for impl='pallas' on this platform."""
    plat = platform()
    if plat in ("gpu", "tpu"):
        return plat, False
    target = os.environ.get(PALLAS_INTERPRET_ENV, "gpu").lower()
    if target not in ("gpu", "tpu"):
        raise ValueError(f"{PALLAS_INTERPRET_ENV}={target!r}: expected 'gpu' or 'tpu'")
    announce("gated_delta_rule", "pallas",
             f"{target} kernels in interpret mode on {plat}: slow, for tests")
    return target, True


def gated_delta_rule(
    q: GdnQK,
    k: GdnQK,
    v: GdnV,
    g: GdnGate,
    beta: GdnBeta,
    *,
    scale: float | None = None,
    initial_state: GdnState | None = None,
    segment_ids: SegmentIds | None = None,
    chunk_size: int = 64,
    impl: str | GdnImpl = GdnImpl.AUTO,
    pieces: int = 1,
) -> tuple[GdnV, GdnState]:
    """Gated delta rule over [b, t, n, *] inputs; see `reference.py` for the contract.

    Returns the output [b, t, n, v] (v's dtype) and the final state [b, n, k, v] fp32.
    """
    if pieces != 1:
        def whole(*args, **kwargs):
            return gated_delta_rule(*args, chunk_size=chunk_size, impl=impl, **kwargs)

        return gated_delta_rule_split(whole, q, k, v, g, beta, pieces=pieces,
                                      chunk_size=chunk_size, scale=scale,
                                      initial_state=initial_state, segment_ids=segment_ids)
    choice = resolve_gdn_impl(impl)
    kwargs = dict(scale=scale, initial_state=initial_state, segment_ids=segment_ids)
    if choice is GdnImpl.RECURRENT:
        return gated_delta_rule_recurrent(q, k, v, g, beta, **kwargs)
    if choice is GdnImpl.PALLAS:
        target, interpret = pallas_target()
        fn = gated_delta_rule_pallas_gpu if target == "gpu" else gated_delta_rule_pallas_tpu
        return fn(q, k, v, g, beta, chunk_size=chunk_size, interpret=interpret, **kwargs)
    if choice in GPU_VARIANTS:
        if platform() == "tpu":
            raise ValueError(f"gdn_impl={choice.value!r} is a GPU (Triton) kernel; on TPU "
                             "use 'pallas' or 'auto'")
        interpret = platform() != "gpu"
        if interpret:
            announce("gated_delta_rule", choice.value,
                     f"gpu kernels in interpret mode on {platform()}: slow, for tests")
        return gated_delta_rule_pallas_gpu(q, k, v, g, beta, chunk_size=chunk_size,
                                           interpret=interpret, **GPU_VARIANTS[choice],
                                           **kwargs)
    return gated_delta_rule_chunked(q, k, v, g, beta, chunk_size=chunk_size, **kwargs)
