"""Choosing an implementation for an op, and saying once which one was chosen.

Every op in `hybrid_jax.kernels` has a plain-jnp reference that is its ground truth
and, where it pays, faster implementations. Callers pass an enum value (`auto` by
default); `auto` is resolved by platform and input properties, and the choice is logged
once per distinct (op, choice, reason) so a run's log says what actually ran.
"""

from __future__ import annotations

import enum
import logging

import jax

log = logging.getLogger("hybrid_jax.kernels")

_announced: set[tuple[str, str, str]] = set()


class GdnImpl(str, enum.Enum):
    """Gated DeltaNet implementations. `xla` is the chunked UT/WY form in plain JAX."""

    AUTO = "auto"
    XLA = "xla"
    PALLAS = "pallas"
    PALLAS_FUSED = "pallas_fused"  # GPU kernels, fused forward under differentiation too
    PALLAS_UNFUSED = "pallas_unfused"  # GPU kernels, no fused forward (for A/B timings)
    RECURRENT = "recurrent"  # per-token lax.scan ground truth: slow, for tests


class AttentionImpl(str, enum.Enum):
    """Attention implementations. `xla` is the plain-jnp masked reference."""

    AUTO = "auto"
    XLA = "xla"
    CUDNN = "cudnn"
    PALLAS = "pallas"
    SPLASH = "splash"


def parse(enum_cls: type[enum.Enum], value: str | enum.Enum, field: str) -> enum.Enum:
    """`value` as a member of `enum_cls`, or a ValueError naming `field` and the choices."""
    if isinstance(value, enum_cls):
        return value
    try:
        return enum_cls(str(value).lower())
    except ValueError:
        choices = ", ".join(m.value for m in enum_cls)  # type: ignore[attr-defined]
        raise ValueError(f"{field}={value!r} is not one of: {choices}") from None


def platform() -> str:
    """'cpu', 'gpu' or 'tpu': the backend that jitted code runs on by default."""
    return jax.default_backend()


def announce(op: str, choice: str, reason: str) -> None:
    """Log the implementation chosen for `op`, once per distinct choice and reason."""
    key = (op, choice, reason)
    if key not in _announced:
        _announced.add(key)
        log.info("%s: using %s (%s)", op, choice, reason)
