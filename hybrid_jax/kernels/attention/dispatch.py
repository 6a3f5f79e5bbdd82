"""`dot_product_attention`: one entry point, implementation chosen by `AttentionImpl`.

    xla     plain-jnp masked reference (`reference.py`): any mask, any platform.
    cudnn   `jax.nn.dot_product_attention(implementation='cudnn')` on NVIDIA GPUs:
            causal or causal + left window, bf16/fp16, no segment ids.
    pallas  Pallas flash attention with segment ids (not built yet).
    splash  TPU splash attention (not built yet).
    auto    cudnn on GPU where it applies, else xla.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hybrid_jax.kernels.attention.reference import attention_reference, check_attention_args
from hybrid_jax.kernels.impl import AttentionImpl, announce, parse, platform
from hybrid_jax.typing import AttentionOut, Keys, Queries, SegmentIds, Values

_CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)


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
    if choice is AttentionImpl.AUTO:
        if backend == "gpu" and why_not_cudnn is None:
            announce("attention", "cudnn", "auto on gpu")
            return AttentionImpl.CUDNN
        reason = f"auto on {backend}"
        if backend == "gpu":
            reason += f"; not cudnn: {why_not_cudnn}"
        announce("attention", "xla", reason)
        return AttentionImpl.XLA
    if choice is AttentionImpl.CUDNN:
        if backend != "gpu":
            raise ValueError(f"attention_impl='cudnn' needs a GPU; this backend is {backend}")
        if why_not_cudnn is not None:
            raise ValueError(f"attention_impl='cudnn' cannot run these inputs: {why_not_cudnn}")
    if choice in (AttentionImpl.PALLAS, AttentionImpl.SPLASH):
        raise NotImplementedError(
            f"attention_impl='{choice.value}' is not built yet; use 'auto', 'xla' or 'cudnn'"
        )
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
    check_attention_args(q, k, v, causal, window)
    choice = resolve_attention_impl(impl, q, k, causal=causal, segment_ids=segment_ids)
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
    return attention_reference(
        q, k, v, causal=causal, window=window, segment_ids=segment_ids, scale=scale
    )
