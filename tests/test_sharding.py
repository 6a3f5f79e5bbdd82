"""Mesh construction and logical-axis rules."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from hybrid_jax.models.lm import LM, abstract_lm
from hybrid_jax.models.presets import olmo_hybrid_7b, research_model
from hybrid_jax.sharding import (
    DEFAULT_RULES,
    create_sharded_params,
    logical_to_spec,
    make_mesh,
    state_shardings,
)

from .conftest import with_devices


def test_make_mesh_sizes_and_errors(request):
    if not with_devices(8, request):
        return
    mesh = make_mesh({"data": -1, "tensor": 2})
    assert dict(mesh.shape) == {"data": 4, "fsdp": 1, "tensor": 2}
    with pytest.raises(ValueError, match="needs 6 devices; there are 8"):
        make_mesh({"data": 3, "tensor": 2})
    with pytest.raises(ValueError, match="unknown mesh axes"):
        make_mesh({"model": 8})
    assert dict(make_mesh({"data": 1}, jax.devices()[:1]).shape)["data"] == 1


def test_logical_rules_with_fallback(request):
    if not with_devices(8, request):
        return
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    assert logical_to_spec((64, 128), ("embed", "mlp"), mesh) == P("fsdp", "tensor")
    # 30 heads x 128 = 3840 divides by 2; 30 heads alone do not divide by 4.
    assert logical_to_spec((3840, 30), ("embed", None), mesh) == P("fsdp", None)
    assert logical_to_spec((8, 3), ("batch", "heads"), mesh) == P(("data", "fsdp"), None)
    with pytest.raises(ValueError, match="no sharding rule"):
        logical_to_spec((4,), ("experts",), mesh)


def test_sharded_creation_matches_unsharded_values(request):
    if not with_devices(8, request):
        return
    cfg = research_model("hybrid", "tiny", vocab_size=128)
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    build = lambda: LM(cfg, rngs=nnx.Rngs(3))
    _, sharded = create_sharded_params(build, mesh)
    _, host = create_sharded_params(build, mesh, init_on="host")  # the GPU path
    _, single = create_sharded_params(build, make_mesh({"data": 1}, jax.devices()[:1]))
    for (path, a), (_, b), (_, c) in zip(nnx.to_flat_state(sharded), nnx.to_flat_state(single),
                                         nnx.to_flat_state(host)):
        assert np.array_equal(np.asarray(a.get_value()), np.asarray(b.get_value())), path
        assert np.array_equal(np.asarray(a.get_value()), np.asarray(c.get_value())), path
        assert a.get_value().sharding == c.get_value().sharding, path
    kernel = sharded["layers"][0]["gdn"]["q_proj"]["kernel"].get_value()
    assert kernel.sharding.spec == P("fsdp", "tensor")
    assert len(kernel.addressable_shards) == 8


def test_release_shapes_shard_on_any_mesh(request):
    if not with_devices(8, request):
        return
    mesh = make_mesh({"fsdp": 2, "tensor": 4})
    state = nnx.state(abstract_lm(olmo_hybrid_7b()), nnx.Param)
    shardings = state_shardings(state, mesh, DEFAULT_RULES)
    assert jax.tree.leaves(shardings)
