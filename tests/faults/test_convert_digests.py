"""Issue 24, "checkpoints and exports carry content digests that are checked on restore":
hybrid_jax checkpoints (convert and training exports) and HF exports of ours.

Before (274948b): 64 flipped bytes in a parameter file restored silently.
"""

from __future__ import annotations

import json
import logging
import pathlib
import shutil

import jax
import numpy as np
import pytest
from flax import nnx

from hybrid_jax.convert import checkpoint, export
from hybrid_jax.convert.safetensors_io import CheckpointError, SafetensorsCheckpoint, load_hf_model
from hybrid_jax.errors import UserError
from hybrid_jax.models.lm import LM
from hybrid_jax.models.presets import research_model


@pytest.fixture(scope="module")
def model():
    return LM(research_model("hybrid", "tiny"), rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory) -> pathlib.Path:
    return checkpoint.save_model(tmp_path_factory.mktemp("ck") / "ckpt", model)


@pytest.fixture
def ckpt(saved, tmp_path) -> pathlib.Path:
    d = tmp_path / "ckpt"
    shutil.copytree(saved, d)
    return d


def largest_file(directory: pathlib.Path) -> pathlib.Path:
    return max((p for p in directory.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def flip(path: pathlib.Path, offset: int, n: int = 64) -> None:
    """Invert n bytes of `path` from `offset` (the issue's fault: 64 flipped bytes)."""
    raw = bytearray(path.read_bytes())
    for i in range(offset, offset + n):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def leaves(m) -> dict:
    return {tuple(p): np.asarray(v.get_value())
            for p, v in nnx.to_flat_state(nnx.state(m, nnx.Param))}


# ---------------------------------------------------------------------------- checkpoints
def test_flipped_bytes_in_parameters_are_refused(ckpt):
    data = largest_file(ckpt / "params")
    flip(data, data.stat().st_size // 2)
    rel = str(data.relative_to(ckpt))
    with pytest.raises(CheckpointError, match=f"{rel}: sha256 differs") as e:
        checkpoint.load_model(ckpt)
    assert isinstance(e.value, UserError) and "\n" not in str(e.value)


def test_flipped_bytes_are_refused_on_a_sharded_restore(ckpt):
    data = largest_file(ckpt / "params")
    flip(data, 100)
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    with pytest.raises(CheckpointError, match="sha256 differs"):
        checkpoint.restore_state(ckpt, sharding=lambda path, var: one)


@pytest.mark.parametrize("fault, match", [
    ("edit config", "model_config.json: sha256 differs"),
    ("truncate", r"has \d+ bytes, \d+ were written"),
    ("delete file", "is missing"),
    ("delete manifest", "manifest.json is missing"),
    ("garble manifest", "not a hybrid_jax.manifest/1 manifest"),
])
def test_every_fault_names_the_file(ckpt, fault, match):
    if fault == "edit config":
        text = (ckpt / "model_config.json").read_text()  # same length: only the digest
        assert '"rope_theta": 500000.0' in text
        (ckpt / "model_config.json").write_text(text.replace("500000.0", "500001.0"))
    elif fault == "truncate":
        data = largest_file(ckpt / "params")
        data.write_bytes(data.read_bytes()[:-10])
    elif fault == "delete file":
        (ckpt / "params" / "manifest.ocdbt").unlink()
    elif fault == "delete manifest":
        (ckpt / "manifest.json").unlink()
    else:
        (ckpt / "manifest.json").write_text("{\"format\": 3")
    with pytest.raises(CheckpointError, match=match):
        checkpoint.load_model(ckpt)


def test_intact_checkpoint_restores_exactly_and_legacy_ones_with_a_warning(
        model, ckpt, caplog):
    a = leaves(model)
    b = leaves(checkpoint.load_model(ckpt))
    assert all(a[p].tobytes() == b[p].tobytes() for p in a)
    # A checkpoint from before digests: no "manifest" key, no manifest.json.
    meta = json.loads((ckpt / "model_config.json").read_text())
    meta.pop("manifest")
    (ckpt / "model_config.json").write_text(json.dumps(meta, indent=2))
    (ckpt / "manifest.json").unlink()
    with caplog.at_level(logging.WARNING, logger="hybrid_jax.convert"):
        c = leaves(checkpoint.load_model(ckpt))
    assert "restoring unchecked" in caplog.text
    assert all(a[p].tobytes() == c[p].tobytes() for p in a)


def test_training_exports_carry_a_manifest(model, tmp_path):
    """hybrid_jax.train.checkpoints.export_params writes through save_checkpoint."""
    from hybrid_jax.train.checkpoints import export_params

    d = export_params(tmp_path / "final", model.cfg, nnx.state(model, nnx.Param),
                      source={"step": 1})
    assert checkpoint.verify_checkpoint(d)
    flip(largest_file(d / "params"), 0)
    with pytest.raises(CheckpointError, match="sha256 differs"):
        checkpoint.restore_state(d)


# ---------------------------------------------------------------------------- HF exports
@pytest.fixture
def hf_export(model, tmp_path) -> pathlib.Path:
    return export.export_model(tmp_path / "hf", model, max_shard_bytes=60_000)


def _tensor_bytes(d: pathlib.Path, name: str) -> tuple[pathlib.Path, int]:
    info = SafetensorsCheckpoint(d).info(name)
    return info.file, info.begin


def test_hf_export_flipped_tensor_bytes_name_the_tensor(hf_export):
    name = "model.layers.0.linear_attn.q_proj.weight"
    file, begin = _tensor_bytes(hf_export, name)
    flip(file, begin + 8, 4)
    with pytest.raises(CheckpointError, match=f"tensor {name}: sha256 differs"):
        load_hf_model(hf_export)


def test_hf_export_header_and_small_files_are_checked(hf_export):
    shard = sorted(hf_export.glob("*.safetensors"))[0]
    raw = bytearray(shard.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    header = raw[8 : 8 + n].decode()
    assert '"F32"' in header
    raw[8 : 8 + n] = header.replace('"F32"', '"I32"', 1).encode()  # same length
    shard.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="header differs"):
        SafetensorsCheckpoint(hf_export)
    text = (hf_export / "config.json").read_text()  # an edit of the same length
    assert '"rms_norm_eps": 1e-06' in text
    (hf_export / "config.json").write_text(text.replace("1e-06", "1e-03"))
    with pytest.raises(CheckpointError, match="config.json: sha256 differs.*delete "
                       "hybrid_jax_export.json"):
        SafetensorsCheckpoint(hf_export)


def test_hf_export_without_manifest_reads_as_any_hf_directory(model, hf_export):
    (hf_export / "hybrid_jax_export.json").unlink()
    a, b = leaves(model), leaves(load_hf_model(hf_export))
    assert all(a[p].tobytes() == b[p].tobytes() for p in a)
