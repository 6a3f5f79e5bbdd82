"""hybrid_jax -> HF -> hybrid_jax is bit-exact; transformers scores exported models alike;
orbax checkpoints restore exactly."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from hybrid_jax.convert import checkpoint, export, parity
from hybrid_jax.convert.safetensors_io import load_hf_model
from hybrid_jax.models.lm import LM
from hybrid_jax.models.presets import research_model


def _leaves(model) -> dict:
    return {tuple(p): np.asarray(v.get_value())
            for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def assert_bit_exact(a, b) -> None:
    la, lb = _leaves(a), _leaves(b)
    assert la.keys() == lb.keys()
    for p in la:
        assert la[p].dtype == lb[p].dtype, p
        assert la[p].tobytes() == lb[p].tobytes(), p


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_hybrid_round_trip_bit_exact(hybrid_dir, tmp_path, dtype):
    cfg, ckpt = checkpoint.convert_hf_checkpoint(hybrid_dir, tmp_path / "ckpt", dtype=dtype)
    model = checkpoint.load_model(ckpt)
    if dtype == "bfloat16":
        assert model.layers[0].gdn.A_log.get_value().dtype == np.float32
        assert model.embed.get_value().dtype == np.dtype("bfloat16")
    hf = export.export_checkpoint(ckpt, tmp_path / "hf", max_shard_bytes=20_000)
    assert (hf / "model.safetensors.index.json").is_file()
    back = load_hf_model(hf, dtype=dtype)
    assert_bit_exact(model, back)
    # and once more through an orbax checkpoint
    again = checkpoint.load_model(checkpoint.save_model(tmp_path / "ckpt2", back))
    assert_bit_exact(model, again)


@pytest.mark.parametrize("arch, seq", [("transformer", 40), ("hybrid", 80)])
def test_models_trained_here_score_alike_in_transformers(tmp_path, arch, seq):
    """A research model (random init) exported to HF: transformers computes its logits."""
    cfg = research_model(arch, "tiny")
    model = LM(cfg, rngs=nnx.Rngs(3))
    hf_dir = export.export_model(tmp_path / "hf", model)
    hf_model = parity.load_transformers_model(hf_dir)
    toks = np.random.default_rng(0).integers(0, cfg.vocab_size, (1, seq))
    report = parity.compare(hf_model, model, toks)
    print(report.format())
    assert report.ok()
    assert_bit_exact(model, load_hf_model(hf_dir))


def test_orbax_restore_casts_to_the_requested_dtype(tmp_path):
    cfg = research_model("hybrid", "tiny")
    model = LM(cfg, rngs=nnx.Rngs(0))
    ckpt = checkpoint.save_model(tmp_path / "c", model)
    assert checkpoint.load_checkpoint_config(ckpt) == cfg
    bf = checkpoint.load_model(ckpt, cfg.replace(param_dtype="bfloat16", dtype="bfloat16"))
    w = bf.layers[0].gdn.q_proj.kernel.get_value()
    assert w.dtype == np.dtype("bfloat16")
    np.testing.assert_array_equal(
        np.asarray(w), np.asarray(model.layers[0].gdn.q_proj.kernel.get_value()
                                  ).astype(w.dtype))
    with pytest.raises(checkpoint.CheckpointExistsError):
        checkpoint.save_model(ckpt, model)
