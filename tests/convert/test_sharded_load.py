"""Loading onto a 2 x 2 device mesh (4 host CPU devices, in a subprocess): every
device's shard is read from its own rows of the file, values equal an unsharded load,
and an orbax checkpoint restores onto the same shardings."""

from __future__ import annotations

import os
import sys
import textwrap

from .. import processes

SCRIPT = textwrap.dedent("""
    import sys
    import jax
    import numpy as np
    from flax import nnx
    from jax.sharding import Mesh, PartitionSpec as P

    from hybrid_jax.convert import checkpoint, safetensors_io as sio
    from hybrid_jax.convert.hf_config import load_model_config

    hf_dir, ckpt_dir = sys.argv[1], sys.argv[2]
    assert len(jax.devices()) == 4
    mesh = Mesh(np.array(jax.devices()).reshape(2, 2), ("fsdp", "tensor"))
    rules = {"embed": "fsdp", "heads": "tensor", "kv_heads": "tensor", "mlp": "tensor",
             "vocab": "tensor"}
    cfg = load_model_config(hf_dir)

    rows_read = []
    orig = sio.SafetensorsCheckpoint._read_rows
    def counting(self, info, r0, r1):
        rows_read.append((info.shape, r1 - r0))
        return orig(self, info, r0, r1)
    sio.SafetensorsCheckpoint._read_rows = counting

    sharding = sio.logical_sharding(mesh, rules)
    state = sio.load_hf_state(hf_dir, cfg, sharding=sharding)
    sio.SafetensorsCheckpoint._read_rows = orig
    ref = dict(nnx.to_flat_state(sio.load_hf_state(hf_dir, cfg)))
    flat = dict(nnx.to_flat_state(state))
    for path, v in flat.items():
        np.testing.assert_array_equal(np.asarray(v.get_value()),
                                      np.asarray(ref[path].get_value()), err_msg=str(path))
    embed = flat[("embed",)].get_value()
    assert embed.sharding.spec == P("tensor", "fsdp"), embed.sharding.spec
    assert {s.data.shape for s in embed.addressable_shards} == {(128, 32)}
    kernel = flat[("layers", 0, "mlp", "gate_proj", "kernel")].get_value()
    assert kernel.sharding.spec == P("fsdp", "tensor")
    # No read of the [256, 64] embedding covered more than its shard's 128 rows.
    assert max(n for shape, n in rows_read if shape == (256, 64)) == 128
    # [64, 128] HF down_proj -> kernel [128, 64] ('mlp', 'embed'): HF rows are 'embed'.
    assert max(n for shape, n in rows_read if shape == (64, 128)) == 32

    checkpoint.save_checkpoint(ckpt_dir, cfg, ((p, np.asarray(v.get_value()))
                                               for p, v in ref.items()))
    restored = dict(nnx.to_flat_state(checkpoint.restore_state(ckpt_dir, sharding=sharding)))
    for path, v in flat.items():
        r = restored[path].get_value()
        assert r.sharding == v.get_value().sharding, path
        np.testing.assert_array_equal(np.asarray(r), np.asarray(v.get_value()))
    print("SHARDED OK")
""")


def test_load_onto_a_mesh(hybrid_dir, tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = processes.run([sys.executable, "-c", SCRIPT, hybrid_dir, tmp_path / "c"], env=env,
                         timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "SHARDED OK" in proc.stdout
