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
