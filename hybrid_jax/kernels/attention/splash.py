"""TPU attention through splash attention (`jax.experimental.pallas.ops.tpu.splash_attention`),
sharded with `shard_map` over the mesh's batch and head axes.

Masks are splash's lazy masks, built once per shape and cached: `CausalMask` for full
causal attention, `LocalMask(window=(W - 1, 0))` for a sliding window of W keys (which
is causal as well), `FullMask` otherwise. Splash turns a mask into per-block metadata at
build time and skips fully masked blocks, so a window of W costs O(T·W). Documents go
through splash's `SegmentIds`, compared per element in the blocks that are visited;
they are the document index (`hybrid_jax.segments.document_index`), so ids that repeat
in non-adjacent documents stay apart.

Layout and cost: splash wants [heads, seq, head_dim] per example, so q, k, v are
transposed from [b, t, n, h] (one copy each) and the batch is vmapped. Grouped-query
attention vmaps splash's multi-query kernel over the kv heads, each serving its group
of n // g query heads, so K and V are never repeated. Splash takes no softmax scale:
q is multiplied by it first (in q's dtype). Queries shorter than the keys are
front-padded to one per key, so the mask is always square (self-attention), and all
sequences are zero-padded to a whole number of blocks; padded keys carry a document id
(-1) no real query has, and the padded queries' outputs are dropped.

Sharding: inside `activation_sharding(mesh)` (or with `mesh=`), the call runs under
`shard_map`, batch rows split over the rules' batch axes and heads over the tensor axis
when it divides both n and g; each device runs splash on its shard, with no
communication. Without a mesh it runs on the default device.

`interpret=True` runs the Pallas TPU interpreter on any backend (CPU tests).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.pallas.ops.tpu import splash_attention as sa
from jax.sharding import Mesh, PartitionSpec

from hybrid_jax import sharding as sharding_lib
from hybrid_jax.kernels.attention.reference import check_attention_args
from hybrid_jax.segments import document_index
from hybrid_jax.typing import AttentionOut, Keys, Queries, SegmentIds, Values

_MIN_BLOCK = 128  # the TPU lane width: splash blocks are multiples of it


def splash_mask(
    length: int, *, causal: bool, window: int | None, rep: int
) -> sa.MultiHeadMask:
    """The lazy splash mask of `rep` identical heads, self-attention over `length` tokens."""
    shape = (length, length)
    if window is not None:
        mask: sa.Mask = sa.LocalMask(shape, window_size=(window - 1, 0), offset=0)
    elif causal:
        mask = sa.CausalMask(shape)
    else:
        mask = sa.FullMask(shape)
    return sa.MultiHeadMask([mask] * rep)


def default_block_size(t: int) -> int:
    """Splash block length for a (padded) sequence: 512, or less for short sequences."""
    return min(512, -(-t // _MIN_BLOCK) * _MIN_BLOCK)


@functools.lru_cache(maxsize=64)
def _kernel(
    length: int, causal: bool, window: int | None, rep: int, block: int, interpret: bool
) -> sa.splash_attention_kernel.SplashAttentionKernel:
    blocks = sa.BlockSizes(
        block_q=block, block_kv=block, block_kv_compute=block,
        block_q_dkv=block, block_kv_dkv=block, block_kv_dkv_compute=block,
        block_q_dq=block, block_kv_dq=block,
    )
    # Built eagerly even when first asked for inside a trace: the kernel holds the
    # mask's block metadata as concrete arrays and is cached across traces.
    with jax.ensure_compile_time_eval():
        return sa.make_splash_mqa_single_device(
            splash_mask(length, causal=causal, window=window, rep=rep),
            block_sizes=blocks,
            interpret=interpret,
        )


def _partition_specs(
    b: int, n: int, g: int, mesh: Mesh, rules: sharding_lib.Rules
) -> tuple[PartitionSpec, PartitionSpec, PartitionSpec]:
    """(q spec, k/v spec, segment spec): batch over the batch axes, heads over the
    tensor axis when it divides both query and kv heads."""
    batch = sharding_lib.logical_to_spec((b,), ("batch",), mesh, rules, name="attention")[0]
    head_axes = rules.get("heads")
    head = None
    if head_axes is not None:
        names = (head_axes,) if isinstance(head_axes, str) else tuple(head_axes)
        names = tuple(a for a in names if mesh.shape[a] > 1)
        size = math.prod(mesh.shape[a] for a in names)
        if names and n % size == 0 and g % size == 0:
            head = names[0] if len(names) == 1 else names
    return (PartitionSpec(batch, None, head, None), PartitionSpec(batch, None, head, None),
            PartitionSpec(batch, None))


def _local_splash(
    q: jax.Array, k: jax.Array, v: jax.Array, seg: jax.Array | None, *, causal: bool,
    window: int | None, block: int, interpret: bool,
) -> jax.Array:
    """Splash on one device's (padded) shard: q [b, sp, n, h], k/v [b, sp, g, h], seg [b, sp]."""
    b, sp, n, h = q.shape
    g = k.shape[2]
    rep = n // g
    kernel = _kernel(sp, causal, window, rep, block, interpret)
    qg = q.reshape(b, sp, g, rep, h).transpose(0, 2, 3, 1, 4)  # [b, g, rep, tp, h]
    kg, vg = (x.transpose(0, 2, 1, 3) for x in (k, v))  # [b, g, sp, h]

    def one(qx, kx, vx, seg):
        return kernel(qx, kx, vx, segment_ids=seg)

    if seg is None:
        per_group = jax.vmap(lambda qx, kx, vx: one(qx, kx, vx, None))
        o = jax.vmap(per_group)(qg, kg, vg)
    else:
        per_group = jax.vmap(one, in_axes=(0, 0, 0, None))
        o = jax.vmap(lambda qx, kx, vx, sx: per_group(qx, kx, vx, sa.SegmentIds(sx, sx)))(
            qg, kg, vg, seg)
    return o.transpose(0, 3, 1, 2, 4).reshape(b, sp, n, h)


def splash_attention(
    q: Queries,
    k: Keys,
    v: Values,
    *,
    causal: bool = True,
    window: int | None = None,
    segment_ids: SegmentIds | None = None,
    scale: float | None = None,
    block_size: int | None = None,
    mesh: Mesh | None = None,
    rules: sharding_lib.Rules | None = None,
    interpret: bool = False,
) -> AttentionOut:
    """softmax(q k^T * scale + mask) v through splash attention; masks of `reference.py`.

    Args:
      q: [b, t, n, h]; k, v: [b, s, g, h], s >= t, n % g == 0.
      segment_ids: [b, s] document ids of the keys (the queries are the last t keys).
      block_size: splash block length (a multiple of 128); default `default_block_size`.
      mesh, rules: shard over this mesh; default: the `activation_sharding` context's.
      interpret: run the Pallas TPU interpreter (any backend; slow, for tests).
    Returns:
      [b, t, n, h] in q's dtype.
    """
    check_attention_args(q, k, v, causal, window, segment_ids)
    b, t, n, h = q.shape
    s, g = k.shape[1], k.shape[2]
    block = block_size or default_block_size(max(t, s))
    if block % _MIN_BLOCK:
        raise ValueError(f"splash block_size must be a multiple of {_MIN_BLOCK}, got {block}")
    sp = -(-s // block) * block
    scale = h**-0.5 if scale is None else scale
    q = (q * jnp.asarray(scale, jnp.float32)).astype(q.dtype)

    seg = None
    if segment_ids is not None or (not causal and sp > s):
        doc = (document_index(segment_ids) if segment_ids is not None
               else jnp.zeros((b, s), jnp.int32))
        seg = jnp.pad(doc, ((0, 0), (0, sp - s)), constant_values=-1)
    # Queries fill all s key positions (the first s - t are dummies), so the mask is
    # square; then everything is padded to a whole number of blocks.
    qp = jnp.pad(q, ((0, 0), (s - t, sp - s), (0, 0), (0, 0)))
    kp, vp = (jnp.pad(x, ((0, 0), (0, sp - s), (0, 0), (0, 0))) for x in (k, v))

    run = functools.partial(_local_splash, causal=causal, window=window, block=block,
                            interpret=interpret)
    if mesh is not None:
        active = (mesh, rules or sharding_lib.DEFAULT_RULES)
    else:
        active = sharding_lib.active_mesh()
    if active is not None and np.prod(list(active[0].shape.values())) > 1:
        m, r = active
        q_spec, kv_spec, seg_spec = _partition_specs(b, n, g, m, r)
        in_specs = (q_spec, kv_spec, kv_spec, None if seg is None else seg_spec)
        run = jax.shard_map(run, mesh=m, in_specs=in_specs, out_specs=q_spec,
                            check_vma=False)
    return run(qp, kp, vp, seg)[:, s - t : s]
