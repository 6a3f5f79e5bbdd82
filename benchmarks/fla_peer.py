"""fla's `chunk_gated_delta_rule` as a peer of our GDN kernels: its Triton path or FlashQLA.

fla 0.6.0 wraps `chunk_gated_delta_rule` in a backend dispatcher (fla/backends.py): at
every call it takes the first registered backend that is importable, enabled and
accepts the inputs, else its own Triton kernels. For gated_delta_rule the one GPU
backend is FlashQLA (package `flash_qla`, Qwen's fused TileLang forward and backward;
fla/ops/gated_delta_rule/backends/flash_qla.py), enabled unless FLA_FLASH_QLA=0, and it
accepts only SM90 / SM100 GPUs, bf16 / fp16 q = k = v dtypes, K = V = 128, no in-kernel
gate or beta sigmoid, no negative eigenvalues. fla passes the call on unchanged
(`flash_qla.chunk_gated_delta_rule(q, k, v, g, beta, scale, initial_state,
output_final_state, use_qk_l2norm_in_kernel, state_v_first, cu_seqlens, auto_cp=True)`,
layout [B, T, H, K], g the natural-log decay per token, beta after its sigmoid, scale
K^-0.5 by default), so "FlashQLA" here is exactly what an fla user gets with it installed.

`fla_backend(flash_qla)` sets FLA_FLASH_QLA around a call (fla reads it per call), and
`flashqla_refusal` asks fla's own backend whether it would take the inputs, so a
FlashQLA row never silently times the Triton path.

fla's "Triton path" is not all Triton once tilelang is importable (the FlashQLA bundle
brings it): on Hopper with Triton >= 3.4 fla refuses its Triton `chunk_bwd_dqkwg`
(wrong results, fla #640) and its 'common' TileLang backend takes that one backward
kernel instead (fla/ops/common/backends/tilelang). So without tilelang fla's backward
refuses, with it it runs; `fla_backward_note` says which, and the rows record it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import numpy as np


@contextlib.contextmanager
def fla_backend(flash_qla: bool) -> Iterator[None]:
    """FLA_FLASH_QLA=1 (FlashQLA allowed) or 0 (fla's Triton path) inside the block."""
    old = os.environ.get("FLA_FLASH_QLA")
    os.environ["FLA_FLASH_QLA"] = "1" if flash_qla else "0"
    try:
        yield
    finally:
        if old is None:
            del os.environ["FLA_FLASH_QLA"]
        else:
            os.environ["FLA_FLASH_QLA"] = old


def flashqla_refusal(q, k, v, g, beta) -> str | None:
    """Why fla would not hand these torch inputs to FlashQLA (None: it will)."""
    try:
        from fla.ops.gated_delta_rule.backends.flash_qla import FlashQLABackend
    except ImportError as e:
        return f"this fla has no FlashQLA backend ({e})"
    backend = FlashQLABackend()
    if not backend.is_available():
        return "flash_qla is not importable (the bundle is not on PYTHONPATH)"
    try:
        import flash_qla  # noqa: F401  (tilelang, tvm-ffi: fails here, not mid-timing)
    except Exception as e:
        return f"import flash_qla failed: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
    accepted, reason = backend.verify("chunk_gated_delta_rule", q, k, v, g, beta)
    return None if accepted else f"fla's FlashQLA backend refuses: {reason}"


def fla_call(flash_qla: bool) -> Callable:
    """fla's chunk_gated_delta_rule on its Triton path (False) or handed to FlashQLA."""
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule

    def call(*args, **kw):
        with fla_backend(flash_qla):
            return chunk_gated_delta_rule(*args, **kw)

    return call


def fla_backward_note() -> str:
    """Which kernel fla's non-FlashQLA backward would use for chunk_bwd_dqkwg here."""
    try:
        from fla.ops.common.backends.tilelang import CommonTileLangBackend
    except ImportError as e:
        return f"triton (no TileLang backend: {e})"
    backend = CommonTileLangBackend()
    if backend.is_available() and backend.is_enabled():
        return "tilelang chunk_bwd_dqkwg (fla's Hopper workaround), the rest Triton"
    return "triton (fla refuses it on Hopper with Triton 3.4 .. 3.7.0)"


def to_torch(x, device: str = "cuda"):
    """A jax array as a torch tensor of the same values: bf16 stays bf16, else float32."""
    import jax.numpy as jnp
    import torch

    dtype = torch.bfloat16 if x.dtype == jnp.bfloat16 else torch.float32
    return torch.from_numpy(np.array(x.astype(jnp.float32))).to(device, dtype)


def versions() -> dict[str, str | None]:
    """Installed versions of the peer's packages (None: not importable)."""
    from importlib import metadata

    out = {}
    for dist in ("fla-core", "flash-linear-attention", "flash-qla", "tilelang", "triton",
                 "torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out
