"""Do the timed GDN implementations compute the same function? `benchmarks/gdn.py --check`.

At a few small shapes, every implementation among the benchmark's runs on the same bf16
inputs (q, k l2-normalised, v, g = log-sigmoid gate: the log decay per token, beta in
(0, 1) after its sigmoid, scale K^-0.5, no in-kernel l2 norm, no initial state), and
its output, final state and gradients of a fixed random linear function of the output
(wrt q, k, v, g, beta) are compared with hybrid_jax's float32 per-token recurrence
(`gated_delta_rule_recurrent`, products at HIGHEST precision) on the same values:

    err = {"max_abs": max |x - ref|, "rel": ||x - ref|| / ||ref||}   (Frobenius)

Implementations: ours (`pallas`, `xla`) through the dispatcher; fla's Triton path and
FlashQLA through fla's `chunk_gated_delta_rule` (`fla_peer.py`), torch
on the same values (bf16 values cross frameworks exactly: both round to nearest even,
and a bf16 value is exact in float32). A peer whose backward refuses to run (fla's
Triton backward on Hopper with Triton 3.6) gets its forward checked alone. An
implementation that is not available is reported with the reason.

bf16 kernels are expected near rel 1e-2 (bf16 operands, float32 accumulation; the
kernel tests' bound is 2e-2): a rel well above that, or a gate/scale convention that
differs, shows as rel ~1 here, so `MISMATCH` is printed above `MISMATCH_REL`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from fla_peer import (  # benchmarks/ is on sys.path
    fla_backward_note,
    fla_call,
    flashqla_refusal,
    to_torch,
)

from hybrid_jax.kernels.gdn import (
    gated_delta_rule,
    gated_delta_rule_pallas_gpu,
    gated_delta_rule_recurrent,
)
from hybrid_jax.kernels.gdn.dispatch import GPU_VARIANTS
from hybrid_jax.kernels.gdn.split import gated_delta_rule_split
from hybrid_jax.kernels.impl import GdnImpl

MISMATCH_REL = 3e-2
NAMES = ("o", "state", "dq", "dk", "dv", "dg", "dbeta")


OURS = ("xla", "pallas", "pallas_fused", "pallas_unfused")


def parse_ours(impl: str) -> tuple[str, int, dict[str, int]] | None:
    """'NAME[@P][:key=val...]' -> (NAME, P, tuning), or None if it is not one of ours.

    NAME is one of OURS; '@P' cuts each sequence into P >= 1 pieces run side by side;
    each ':key=val' is a Pallas kernel tuning field (`KernelConfig`, an int), for the
    pallas ones only: 'pallas:wy_block=32', 'pallas_fused@2:wy_block=32:num_warps=8'.
    """
    head, *fields = impl.split(":")
    name, _, pieces = head.partition("@")
    if name not in OURS or (pieces and not (pieces.isdigit() and int(pieces) >= 1)):
        return None
    tuning = {}
    for field in fields:
        key, eq, val = field.partition("=")
        if not (eq and key.isidentifier() and val.lstrip("-").isdigit()) or name == "xla":
            return None
        tuning[key] = int(val)
    return name, int(pieces or 1), tuning


def is_ours(impl: str) -> bool:
    """One of OURS, maybe cut into pieces and tuned: see `parse_ours`."""
    return parse_ours(impl) is not None


def our_impl(impl: str) -> Callable:
    """(q, k, v, g, beta) -> (o, state) of one of our timed implementations: xla, pallas,
    pallas_fused and pallas_unfused (the Triton kernels with the fused forward under
    differentiation too / nowhere: `dispatch.GPU_VARIANTS`), through the dispatcher;
    with tuning fields the Triton kernels directly (interpreted off GPU), the variant's
    fields first; 'IMPL@P' runs IMPL with each sequence cut into P pieces side by side
    (`kernels/gdn/split.py`)."""
    parsed = parse_ours(impl)
    if parsed is None:
        raise ValueError(f"not one of ours: {impl}")
    name, pieces, tuning = parsed
    if not tuning:  # (off GPU the dispatcher runs the Pallas kernels interpreted)
        return lambda *a: gated_delta_rule(*a, impl=name, pieces=pieces)
    tuning = {**GPU_VARIANTS.get(GdnImpl(name), {}), **tuning}
    interpret = jax.default_backend() != "gpu"

    def whole(*a, **kw):
        return gated_delta_rule_pallas_gpu(*a, interpret=interpret, **tuning, **kw)

    if pieces == 1:
        return whole
    return lambda *a: gated_delta_rule_split(whole, *a, pieces=pieces)


def gdn_inputs(b, t, h, d, dv, seed=0):
    """(q, k, v, g, beta) of the benchmarks: unit-norm bf16 q / k, bf16 v and beta,
    float32 log-gates, [b, t, h, d|dv] (gdn.py times these; the check below uses them too)."""
    ks = jax.random.split(jax.random.key(seed), 5)
    q = jax.random.normal(ks[0], (b, t, h, d), jnp.float32)
    k = jax.random.normal(ks[1], (b, t, h, d), jnp.float32)
    q = (q / jnp.linalg.norm(q, axis=-1, keepdims=True)).astype(jnp.bfloat16)
    k = (k / jnp.linalg.norm(k, axis=-1, keepdims=True)).astype(jnp.bfloat16)
    v = jax.random.normal(ks[2], (b, t, h, dv), jnp.bfloat16)
    g = jax.nn.log_sigmoid(jax.random.normal(ks[3], (b, t, h), jnp.float32))
    beta = jax.nn.sigmoid(jax.random.normal(ks[4], (b, t, h), jnp.float32)).astype(jnp.bfloat16)
    return q, k, v, g, beta


def check_inputs(b: int, t: int, h: int, d: int, dv: int, seed: int = 7):
    """(q, k, v, g, beta) as in gdn.py's timing inputs, and the output weights w
    [b, t, h, dv] float32 of the checked loss sum(o * w)."""
    w = jax.random.normal(jax.random.key(seed + 1), (b, t, h, dv), jnp.float32)
    return gdn_inputs(b, t, h, d, dv, seed), w


def _errors(got: list, ref: list) -> dict[str, dict[str, float]]:
    out = {}
    for name, x, r in zip(NAMES, got, ref):
        if x is None:
            continue
        x, r = np.asarray(x, np.float64), np.asarray(r, np.float64)
        if x.shape != r.shape:
            raise ValueError(f"{name}: shape {x.shape} != reference {r.shape}")
        out[name] = {"max_abs": float(np.max(np.abs(x - r))),
                     "rel": float(np.linalg.norm(x - r) / max(np.linalg.norm(r), 1e-30))}
    return out


def _jax_outputs(fn: Callable, inputs, w) -> list:
    """[o, state, dq, dk, dv, dg, dbeta] of fn(q, k, v, g, beta) -> (o, state)."""
    def loss(*a):
        o, s = fn(*a)
        return jnp.sum(o.astype(jnp.float32) * w), (o, s)

    grads, (o, s) = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3, 4), has_aux=True))(*inputs)
    return [o, s, *grads]


def reference_outputs(inputs, w) -> list:
    """The float32 recurrence on the bf16 inputs' values (exact products)."""
    f32 = [x.astype(jnp.float32) for x in inputs]
    with jax.default_matmul_precision("highest"):
        return _jax_outputs(gated_delta_rule_recurrent, f32, w)


def torch_outputs(fn: Callable, inputs, w, device: str = "cuda") -> tuple[list, str | None]:
    """[o, state, dq, dk, dv, dg, dbeta] of a torch `fn(q, k, v, g, beta,
    output_final_state=True) -> (o, state)` on the same values, and why the gradients
    are missing (None if they are there)."""
    import torch

    leaves = [to_torch(x, device).requires_grad_() for x in inputs]
    o, s = fn(*leaves, output_final_state=True)
    fwd = [o.detach().float().cpu().numpy(), s.detach().float().cpu().numpy()]
    try:
        loss = (o.float() * to_torch(w, device)).sum()
        grads = torch.autograd.grad(loss, leaves)
    except RuntimeError as e:  # fla's Triton backward on Hopper with Triton < 3.7.1
        return fwd + [None] * 5, f"backward refused: {str(e).splitlines()[0][:160]}"
    return fwd + [x.float().cpu().numpy() for x in grads], None


def cross_check(shape: tuple[int, int, int], d: int, dv: int, impls: list[str]) -> dict:
    """Errors of each of `impls` (xla, pallas, pallas_fused, fla, flashqla; others
    skipped) against the recurrence at (b, t, h) = shape, K = d, V = dv."""
    b, t, h = shape
    inputs, w = check_inputs(b, t, h, d, dv)
    ref = reference_outputs(inputs, w)
    row: dict = {"b": b, "t": t, "h": h, "d": d, "dv": dv}
    for impl in impls:
        try:
            if is_ours(impl):
                got = _jax_outputs(our_impl(impl), inputs, w)
                row[impl] = _errors(got, ref)
            elif impl in ("fla", "flashqla"):
                if impl == "flashqla" and (why := flashqla_refusal(*map(to_torch, inputs))):
                    row[impl] = f"unavailable: {why}"
                    continue
                got, why_no_grads = torch_outputs(fla_call(impl == "flashqla"), inputs, w)
                row[impl] = _errors(got, ref)
                if why_no_grads:
                    row[impl]["gradients"] = why_no_grads
                elif impl == "fla":
                    row[impl]["gradients"] = fla_backward_note()
        except Exception as e:  # a missing package or a refusal: say so, check the rest
            row[impl] = f"unavailable: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
    print_check(row, impls)
    return row


def print_check(row: dict, impls: list[str]) -> None:
    print(f"\ncross-check B={row['b']} T={row['t']} H={row['h']} K={row['d']} V={row['dv']} "
          "against the float32 recurrence (rel Frobenius error / max abs error):")
    for impl in impls:
        r = row.get(impl)
        if r is None:
            continue
        if not isinstance(r, dict):
            print(f"  {impl:<9} {r}")
            continue
        cells = [f"{name} {e['rel']:.1e}/{e['max_abs']:.1e}"
                 for name, e in r.items() if isinstance(e, dict)]
        bad = [name for name, e in r.items() if isinstance(e, dict) and
               not e["rel"] <= MISMATCH_REL]
        note = f"  MISMATCH in {', '.join(bad)}" if bad else ""
        print(f"  {impl:<9} " + "  ".join(cells) + note)
        if "gradients" in r:
            print(f"  {'':<9} gradients: {r['gradients']}")


def parse_shapes(spec: str) -> list[tuple[int, int, int]]:
    """'1,4096,4;2,1024,4' -> [(1, 4096, 4), (2, 1024, 4)] (B, T, H)."""
    shapes = []
    for item in spec.split(";"):
        if item.strip():
            b, t, h = (int(x) for x in item.split(","))
            shapes.append((b, t, h))
    return shapes
