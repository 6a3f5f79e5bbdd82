"""Issue 24, defect 3 (bad weights): NaN / Inf and integer weights are refused, naming
the tensor, on import (whole or sliced reads) and on export. Before, all were accepted
(every logit then non-finite; an int32 weight silently cast)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from flax import nnx

from hybrid_jax.convert import checkpoint, export
from hybrid_jax.convert.safetensors_io import (
    CheckpointError,
    count_nonfinite,
    load_hf_model,
    load_hf_state,
)
from hybrid_jax.errors import UserError
from hybrid_jax.models.lm import LM
from hybrid_jax.models.presets import research_model
from tests.convert.conftest import write_variant

from .convert_models import build, save

NORM = "model.layers.1.post_attention_layernorm.weight"
KERNEL = "model.layers.2.mlp.up_proj.weight"


@pytest.fixture(scope="module")
def olmo3(tmp_path_factory):
    model = build("olmo3", seed=2)
    d = save(model, tmp_path_factory.mktemp("olmo3"))
    return d, {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def _variant(olmo3, tmp_path, name, change):
    src, tensors = olmo3
    tensors = dict(tensors)
    tensors[name] = change(tensors[name].copy())
    return write_variant(src, tmp_path / "bad", tensors)


def _poison(values, at):
    def change(x):
        x.reshape(-1)[list(at)] = values
        return x
    return change


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nonfinite_weight_is_refused_naming_tensor_and_count(olmo3, tmp_path, value):
    d = _variant(olmo3, tmp_path, KERNEL, _poison(value, (0, 5, 77)))
    with pytest.raises(CheckpointError, match=f"{KERNEL} holds 3 NaN/Inf") as e:
        checkpoint.convert_hf_checkpoint(d, tmp_path / "ckpt", dtype="float32")
    assert isinstance(e.value, UserError) and "\n" not in str(e.value)
    assert not (tmp_path / "ckpt").exists()


def test_nonfinite_weight_is_refused_in_sliced_mesh_reads(olmo3, tmp_path):
    import jax

    d = _variant(olmo3, tmp_path, NORM, _poison(np.nan, (3,)))
    from hybrid_jax.convert.hf_config import load_model_config

    cfg = load_model_config(d)
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    with pytest.raises(CheckpointError, match=f"{NORM} holds 1 NaN/Inf"):
        load_hf_state(d, cfg, sharding=lambda path, var: one)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_])
def test_integer_weight_is_refused_not_cast(olmo3, tmp_path, dtype):
    d = _variant(olmo3, tmp_path, NORM, lambda x: (x * 10).astype(dtype))
    with pytest.raises(CheckpointError, match=rf"not floating point.*{NORM} \((I32|I64|BOOL)\)"):
        load_hf_model(d)


def test_export_refuses_nonfinite_and_overflowing_params(tmp_path):
    model = LM(research_model("transformer", "tiny"), rngs=nnx.Rngs(0))
    params = {tuple(p): np.asarray(v.get_value())
              for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    path = ("layers", 1, "mlp", "up_proj", "kernel")
    assert path in params, sorted(params)[:8]
    bad = dict(params)
    bad[path] = params[path].copy()
    bad[path][0, :2] = np.inf
    with pytest.raises(CheckpointError, match="layers/1/mlp/up_proj/kernel holds 2 NaN/Inf"):
        export.export_hf(tmp_path / "hf", model.cfg, bad)
    assert not (tmp_path / "hf").exists()
    big = dict(params)
    big[path] = params[path].copy()
    big[path][0, 0] = 1e6  # beyond float16's 65504
    with pytest.raises(CheckpointError, match="1 value.*overflow float16"):
        export.export_hf(tmp_path / "hf", model.cfg, big, dtype="float16")
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, ml_dtypes.bfloat16])
def test_count_nonfinite_equals_numpy(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(3 * (1 << 16) + 123).astype(dtype)  # chunk edges included
    at = rng.choice(x.size - 2, 40, replace=False)
    x[at[:10]], x[at[10:25]], x[at[25:]] = np.nan, np.inf, -np.inf
    x[-2], x[-1] = np.finfo(dtype).max, np.finfo(dtype).min  # large but finite
    assert int(np.sum(~np.isfinite(x.astype(np.float64)))) == 40  # numpy, in float64
    assert count_nonfinite(x) == 40
    assert count_nonfinite(x.reshape(-1, 1)[::2]) == int(np.sum(~np.isfinite(
        x[::2].astype(np.float64))))  # a strided view is read right too
