"""Safetensors reading/writing, checked against the safetensors library, and bad input."""

from __future__ import annotations

import json
import pathlib

import ml_dtypes
import numpy as np
import pytest

from hybrid_jax.convert import safetensors_io as sio
from hybrid_jax.convert.checkpoint import convert_hf_checkpoint
from hybrid_jax.convert.hf_config import HfConfigError
from hybrid_jax.convert.key_map import KeyMapError

RNG = np.random.default_rng(0)


def _specs_and_arrays():
    arrays = {
        "a.weight": RNG.standard_normal((7, 5)).astype(np.float32),
        "b.bias": RNG.standard_normal((3,)).astype(ml_dtypes.bfloat16),
        "c.conv": RNG.standard_normal((6, 1, 4)).astype(np.float16),
        "d.big": RNG.standard_normal((40, 9)).astype(np.float32),
    }
    specs = [sio.TensorSpec(k, v.shape, v.dtype) for k, v in arrays.items()]
    return specs, arrays


def test_writer_is_read_by_the_safetensors_library(tmp_path):
    from safetensors import safe_open

    specs, arrays = _specs_and_arrays()
    sio.write_safetensors(tmp_path, specs, arrays.items())
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "pt"}
        for name, x in arrays.items():
            got = f.get_tensor(name).float().numpy()
            np.testing.assert_array_equal(got, x.astype(np.float32))


def test_sharded_write_and_sliced_reads(tmp_path, monkeypatch):
    specs, arrays = _specs_and_arrays()
    files = sio.write_safetensors(tmp_path, specs, arrays.items(), max_shard_bytes=200)
    index = json.loads((tmp_path / sio.INDEX_NAME).read_text())
    assert len(files) == len(set(index["weight_map"].values())) + 1 == 3
    ckpt = sio.SafetensorsCheckpoint(tmp_path)
    assert ckpt.shapes() == {k: v.shape for k, v in arrays.items()}
    monkeypatch.setattr(sio, "_READ_CHUNK_BYTES", 100)  # force the row-block path
    for name, x in arrays.items():
        got = ckpt.read(name)
        assert got.dtype == x.dtype
        np.testing.assert_array_equal(got, x)
    big = arrays["d.big"]
    for index in [(slice(3, 30), slice(2, 7)), (slice(None), slice(8, 9)),
                  (slice(39, 40), slice(None))]:
        np.testing.assert_array_equal(ckpt.read("d.big", index), big[index])


def test_truncated_shard(tmp_path):
    specs, arrays = _specs_and_arrays()
    sio.write_safetensors(tmp_path, specs, arrays.items())
    f = tmp_path / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(sio.CheckpointError, match="truncated") as e:
        sio.SafetensorsCheckpoint(tmp_path)
    assert "model.safetensors" in str(e.value)


def test_missing_index_and_missing_shard(tmp_path):
    specs, arrays = _specs_and_arrays()
    sio.write_safetensors(tmp_path, specs, arrays.items(), max_shard_bytes=200)
    index = tmp_path / sio.INDEX_NAME
    spec = json.loads(index.read_text())
    index.unlink()
    with pytest.raises(sio.CheckpointError, match="no model.safetensors.index.json"):
        sio.SafetensorsCheckpoint(tmp_path)
    spec["weight_map"]["e.extra"] = "model-00001-of-00002.safetensors"
    index.write_text(json.dumps(spec))
    with pytest.raises(sio.CheckpointError, match="lacks 1 tensor.*e.extra"):
        sio.SafetensorsCheckpoint(tmp_path)
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(sio.CheckpointError, match="absent: model-00002-of-00002"):
        sio.SafetensorsCheckpoint(tmp_path)


def test_pickled_weights_are_refused_without_unpickling(tmp_path):
    # Not a valid pickle at all: refusing must not depend on reading it.
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(sio.CheckpointError, match="never unpickles.*save_pretrained"):
        sio.SafetensorsCheckpoint(tmp_path)


def _copy_hf(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_bad_checkpoints_leave_no_output(olmo3_dir, tmp_path):
    """Each bad input raises a clear error before anything is written."""
    out = tmp_path / "out"
    trunc = _copy_hf(olmo3_dir, tmp_path / "trunc")
    f = trunc / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(sio.CheckpointError, match="truncated"):
        convert_hf_checkpoint(trunc, out)

    renamed = _copy_hf(olmo3_dir, tmp_path / "renamed")
    ckpt = sio.SafetensorsCheckpoint(renamed)
    tensors = {k: ckpt.read(k) for k in ckpt.tensors}
    tensors["model.layers.0.mlp.extra.weight"] = tensors.pop("model.layers.0.mlp.up_proj.weight")
    from safetensors.numpy import save_file
    save_file(tensors, str(renamed / "model.safetensors"))
    with pytest.raises(KeyMapError, match="mlp.extra.weight.*\n.*missing.*up_proj"):
        convert_hf_checkpoint(renamed, out)

    vocab = _copy_hf(olmo3_dir, tmp_path / "vocab")
    cfg = json.loads((vocab / "config.json").read_text())
    cfg["vocab_size"] = 300
    (vocab / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(KeyMapError, match="vocab mismatch"):
        convert_hf_checkpoint(vocab, out)

    cfg["model_type"] = "olmo2"
    (vocab / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(HfConfigError, match="olmo2"):
        convert_hf_checkpoint(vocab, out)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs
