"""`gated_delta_rule`: one entry point, implementation chosen by `GdnImpl`.

    xla        chunked UT/WY form in plain JAX (`chunked.py`): runs everywhere.
    recurrent  per-token scan (`reference.py`): the ground truth, slow; for tests.
    pallas     fused Pallas kernels for GPU / TPU (not built yet).
    auto       the fastest available for the platform (today: xla everywhere).
"""

from __future__ import annotations

from hybrid_jax.kernels.gdn.chunked import gated_delta_rule_chunked
from hybrid_jax.kernels.gdn.reference import gated_delta_rule_recurrent
from hybrid_jax.kernels.impl import GdnImpl, announce, parse, platform
from hybrid_jax.typing import GdnBeta, GdnGate, GdnQK, GdnState, GdnV, SegmentIds


def resolve_gdn_impl(impl: str | GdnImpl) -> GdnImpl:
    """The concrete implementation `impl` stands for on this platform."""
    choice = parse(GdnImpl, impl, "gdn_impl")
    if choice is GdnImpl.AUTO:
        announce("gated_delta_rule", "xla", f"auto on {platform()}: chunked XLA form")
        return GdnImpl.XLA
    if choice is GdnImpl.PALLAS:
        raise NotImplementedError(
            "gdn_impl='pallas': the Pallas GDN kernels are not built yet; "
            "use gdn_impl='xla' (chunked) or 'auto'"
        )
    return choice  # type: ignore[return-value]


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
) -> tuple[GdnV, GdnState]:
    """Gated delta rule over [b, t, n, *] inputs; see `reference.py` for the contract.

    Returns the output [b, t, n, v] (v's dtype) and the final state [b, n, k, v] fp32.
    """
    choice = resolve_gdn_impl(impl)
    kwargs = dict(scale=scale, initial_state=initial_state, segment_ids=segment_ids)
    if choice is GdnImpl.RECURRENT:
        return gated_delta_rule_recurrent(q, k, v, g, beta, **kwargs)
    return gated_delta_rule_chunked(q, k, v, g, beta, chunk_size=chunk_size, **kwargs)
