"""`dot_product_attention`: one entry point, implementation chosen by `AttentionImpl`.

    xla     plain-jnp masked reference (`reference.py`): any mask, any platform; it
            materialises the [t, s] logits, so it is for tests and short sequences.
    cudnn   `jax.nn.dot_product_attention(implementation='cudnn')` on NVIDIA GPUs:
            causal or causal + left window, bf16/fp16, no segment ids.
    pallas  Pallas flash attention (`pallas_gpu.py`): every mask, segment ids
            included, GQA, head dims up to 256 (other than powers of two zero-padded
            to the next one: exact); Triton kernels, and on Hopper GPUs (bf16 / fp16,
            kernel head dims 64 / 128) the forward of `mosaic_gpu.py`.
            $HYBRID_JAX_ATTENTION_FORWARD = auto | triton | mosaic picks that forward
            (default auto: Mosaic where it runs), for A/B runs of a whole model.
    splash  TPU splash attention (`splash.py`), shard_map-ed over the active mesh;
            any head dim (splash's blocks span the whole head dim).
    auto    GPU: cudnn where it applies (no segment ids), else pallas, else xla;
            TPU: splash; CPU: xla. On a GPU every head dim of the preset ladder
            (16, 48, 64, 80, 96, 128) takes cudnn or pallas, never the dense xla path.

`pallas` and `splash` also run off their hardware, through the Pallas interpreter:
slow, for tests only, and announced as such. The choice is logged once per distinct
(choice, reason) through `hybrid_jax.kernels.impl.announce`.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from hybrid_jax.kernels.attention.pallas_gpu import (
    flash_attention,
    kernel_head_dim,
    pallas_unsupported_reason,
)
from hybrid_jax.kernels.attention.reference import attention_reference, check_attention_args
from hybrid_jax.kernels.attention.splash import splash_attention
from hybrid_jax.kernels.impl import AttentionImpl, announce, parse, platform
from hybrid_jax.typing import AttentionOut, Keys, Queries, SegmentIds, Values

_CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)
FORWARD_ENV = "HYBRID_JAX_ATTENTION_FORWARD"


def pallas_forward() -> str:
    """The flash-attention forward kernel `pallas` runs: $HYBRID_JAX_ATTENTION_FORWARD
    (auto | triton | mosaic), default auto."""
    forward = os.environ.get(FORWARD_ENV, "auto").strip().lower() or "auto"
    if forward not in ("auto", "triton", "mosaic"):
        raise ValueError(f"{FORWARD_ENV}={forward!r}: expected auto, triton or mosaic")
    return forward


def _padding_note(h: int) -> str:
    hp = kernel_head_dim(h)
    return "" if hp == h else f"; head dim {h} zero-padded to {hp}"


def cudnn_unsupported_reason(
    q: Queries, k: Keys, *, causal: bool, segment_ids: SegmentIds | None
) -> str | None:
    """Why cuDNN fused attention cannot run these inputs, or None if it can."""
    if q.dtype not in _CUDNN_DTYPES:
        return f"dtype {q.dtype} (cuDNN needs bfloat16 or float16)"
    if segment_ids is not None:
        return "segment ids (cuDNN takes no document mask; a dense mask is slow)"
    if not causal:
        return "non-causal attention"
    if q.shape[1] != k.shape[1]:
        return "queries shorter than keys (decode)"
    h = q.shape[-1]
    if h % 8 or h > 128:
        return f"head dim {h} (cuDNN path needs a multiple of 8, at most 128)"
    return None


def resolve_attention_impl(
    impl: str | AttentionImpl,
    q: Queries,
    k: Keys,
    *,
    causal: bool,
    segment_ids: SegmentIds | None,
    backend: str | None = None,
) -> AttentionImpl:
    """The concrete implementation `impl` stands for, for these inputs on `backend`."""
    choice = parse(AttentionImpl, impl, "attention_impl")
    backend = backend or platform()
    why_not_cudnn = cudnn_unsupported_reason(q, k, causal=causal, segment_ids=segment_ids)
    why_not_pallas = pallas_unsupported_reason(q, k)
    if choice is AttentionImpl.AUTO:
        if backend == "gpu":
            if why_not_cudnn is None:
                announce("attention", "cudnn", "auto on gpu")
                return AttentionImpl.CUDNN
            if why_not_pallas is None:
                announce("attention", "pallas", f"auto on gpu; not cudnn: {why_not_cudnn}"
                                                f"{_padding_note(q.shape[-1])}")
                return AttentionImpl.PALLAS
            announce("attention", "xla", f"auto on gpu; not cudnn: {why_not_cudnn}; "
                                         f"not pallas: {why_not_pallas}")
            return AttentionImpl.XLA
        if backend == "tpu":
            announce("attention", "splash", "auto on tpu")
            return AttentionImpl.SPLASH
        announce("attention", "xla", f"auto on {backend}")
        return AttentionImpl.XLA
    if choice is AttentionImpl.CUDNN:
        if backend != "gpu":
            raise ValueError(f"attention_impl='cudnn' needs a GPU; this backend is {backend}")
        if why_not_cudnn is not None:
            raise ValueError(f"attention_impl='cudnn' cannot run these inputs: {why_not_cudnn}")
    if choice is AttentionImpl.PALLAS:
        if why_not_pallas is not None:
            raise ValueError(f"attention_impl='pallas' cannot run these inputs: {why_not_pallas}")
        if backend != "gpu":
            announce("attention", "pallas", f"interpret mode on {backend} (no Triton): "
                                            "slow, for tests")
    if choice is AttentionImpl.SPLASH and backend != "tpu":
        announce("attention", "splash", f"interpret mode on {backend} (no TPU): slow, for tests")
    return choice


def dot_product_attention(
    q: Queries,
    k: Keys,
    v: Values,
    *,
    causal: bool = True,
    window: int | None = None,
    segment_ids: SegmentIds | None = None,
    scale: float | None = None,
    impl: str | AttentionImpl = AttentionImpl.AUTO,
) -> AttentionOut:
    """Attention with causal / sliding-window / document masks; see `reference.py`."""
    check_attention_args(q, k, v, causal, window, segment_ids)
    backend = platform()
    choice = resolve_attention_impl(impl, q, k, causal=causal, segment_ids=segment_ids,
                                    backend=backend)
    masks = dict(causal=causal, window=window, segment_ids=segment_ids, scale=scale)
    if choice is AttentionImpl.CUDNN:
        return jax.nn.dot_product_attention(
            q,
            k,
            v,
            scale=scale,
            is_causal=causal,
            # jax counts keys left of the query: (W - 1, 0) is a window of W keys.
            local_window_size=None if window is None else (window - 1, 0),
            implementation="cudnn",
        )
    if choice is AttentionImpl.PALLAS:
        return flash_attention(q, k, v, **masks, interpret=backend != "gpu",
                               forward=pallas_forward())
    if choice is AttentionImpl.SPLASH:
        return splash_attention(q, k, v, **masks, interpret=backend != "tpu")
    return attention_reference(q, k, v, **masks)
