"""Benchmark scripts that mean something on CPU run there: compile_time.py, with one row
in a child process (benchmarks/isolated.py) and one that reports its own error."""

from __future__ import annotations

import json
import sys

from . import processes

SCRIPT = processes.ROOT / "benchmarks" / "compile_time.py"


def test_compile_time_rows_by_depth(tmp_path):
    out = tmp_path / "compile.json"
    run = processes.run([sys.executable, SCRIPT, "--models=hybrid_tiny", "--layers=1,4,9",
                         "--seq_len=64", "--program=train", f"--out={out}"], timeout=380)
    assert run.returncode == 0, run.stderr[-3000:]
    one, four, too_deep = json.loads(out.read_text())
    assert one["layer_types"] == {"gdn": 1} and four["layer_types"] == {"full": 1, "gdn": 3}
    for row in (one, four):
        assert row["backend"] == "cpu" and row["triton_kernels"] == 0
        assert min(row["trace_s"], row["lower_s"], row["compile_s"]) > 0
    assert too_deep["error"].endswith("hybrid_tiny has 4 layers, not 9")


def test_op_profile_groups_kernels(monkeypatch):
    """benchmarks/op_profile.py: kernel names map to categories; a traced CPU call comes
    back as per-call kernel times that add up to the total and fit in the wall time."""
    import time

    import jax
    import jax.numpy as jnp

    monkeypatch.syspath_prepend(str(processes.ROOT / "benchmarks"))
    from op_profile import categorize, profile_ops

    names = {  # kernel names as an H100 trace shows them (benchmarks/results/*profile*)
        "nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT": "gemm",
        "gemm_fusion_dot_323": "gemm",
        "cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7": "cudnn",
        "gdn_state_fwd_kernel": "pallas",
        "flash_attention_fwd": "pallas",
        "loop_convert_fusion_24": "fusion",
        "input_reduce_fusion_1": "fusion",
        "memcpy128": "other",
    }
    assert {n: categorize(n) for n in names} == names

    f = jax.jit(lambda x: jnp.tanh(x @ x).sum(axis=0))
    x = jnp.ones((256, 256))
    f(x).block_until_ready()
    t0 = time.perf_counter()
    prof = profile_ops(f, x, calls=3)
    wall_ms = 1e3 * (time.perf_counter() - t0) / 3
    assert prof["calls"] == 3 and prof["kernels"]
    assert abs(sum(prof["categories"].values()) - prof["total_ms"]) < 1e-9
    assert abs(sum(k["ms"] for k in prof["kernels"]) - prof["total_ms"]) < 1e-6
    assert 0 < prof["total_ms"] < wall_ms


def test_gdn_benchmark_times_and_checks_the_fused_forward(tmp_path):
    """benchmarks/gdn.py in the Pallas interpreter at a tiny shape: pallas_fused (the
    fused forward) is timed beside pallas and cross-checked against the float32
    recurrence (so the GPU run's peer table compares the same function), and so are
    pallas@2 (each sequence in two pieces side by side) and pallas_unfused:wy_block=16
    (the two-kernel forward with a kernel tuning field); fla and FlashQLA, absent here,
    are reported, not dropped, and the peer table still prints; an unknown impl is
    refused in one line. The file is written after every step (a GPU call cut by its
    limit keeps what it measured): while the rows are being timed it already holds the
    cross-check, marked incomplete."""
    out = tmp_path / "gdn.json"
    seen = []

    def watch():
        if out.exists():  # written atomically: always whole JSON
            partial = json.loads(out.read_text())
            seen.append((partial["complete"], len(partial["cross_check"]),
                         len(partial["results"])))

    run = processes.run([sys.executable, processes.ROOT / "benchmarks" / "gdn.py",
                         "--interpret",
                         "--impls=pallas,pallas_fused,pallas@2,pallas_unfused:wy_block=16,fla,flashqla",
                         "--seq_lens=32", "--tokens=32", "--heads=1", "--head_dim=16",
                         "--check=1,48,2", f"--out={out}"], timeout=600, watch=watch)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (False, 1, 0) in seen, sorted(set(seen))
    report = json.loads(out.read_text())
    assert report["complete"] is True
    check = report["cross_check"][0]
    ours = ("pallas", "pallas_fused", "pallas@2", "pallas_unfused:wy_block=16")
    for impl in ours:
        assert isinstance(check[impl], dict), check[impl]
        assert max(check[impl]["o"]["rel"], check[impl]["state"]["rel"]) < 3e-2, check[impl]
    for peer in ("fla", "flashqla"):
        assert isinstance(check[peer], str) and check[peer].startswith("unavailable")
    row = report["results"][0]
    assert all(row[impl]["fwd"] > 0 for impl in ours)
    assert "pallas_unfused:wy_block=16" in run.stdout.split("speed / FlashQLA's")[-1]
    for impls, named in (("pallas,pallas@x", "pallas@x"), ("pallas:wy_block", "pallas:wy_block"),
                         ("xla:wy_block=16", "xla:wy_block=16")):
        bad = processes.run([sys.executable, processes.ROOT / "benchmarks" / "gdn.py",
                             f"--impls={impls}", f"--out={out}"], timeout=300)
        assert bad.returncode == 2 and f"--impls: unknown {named} " in bad.stderr, bad.stderr
