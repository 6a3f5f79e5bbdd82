"""Step 2 of the offline compile reports (`attention_compile_report.py`,
`gdn_compile_report.py`): compile dumped Triton IR for sm_90a with a standalone Triton
and report what ptxas says, without a GPU.

Each kernel is `<dir>/<name>.ttir` with its launch parameters in `<name>.json`
(`num_warps`, `num_stages`). Upstream Triton is not the Triton inside XLA: the numbers
are close, not identical.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import tempfile
import time


def _number(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    return found.group(1) if found else "?"


def compile_report(src: pathlib.Path) -> None:
    """Print registers, spills, stack, shared memory, MMA instructions and compile time
    (seconds, Triton to cubin plus a ptxas -v pass) per kernel."""
    import triton
    from triton.backends.compiler import GPUTarget

    ptxas = pathlib.Path(triton.__file__).parent / "backends/nvidia/bin/ptxas"
    for path in sorted(src.glob("*.ttir")):
        launch = json.loads(path.with_suffix(".json").read_text())
        start = time.perf_counter()
        kernel = triton.compile(str(path), target=GPUTarget("cuda", 90, 32),
                                options={"num_warps": launch["num_warps"],
                                         "num_stages": launch["num_stages"]})
        ptx = kernel.asm["ptx"]
        with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
            f.write(ptx)
        info = subprocess.run([str(ptxas), "-v", "--gpu-name=sm_90a", f.name, "-o",
                               os.devnull], capture_output=True, text=True).stderr
        os.unlink(f.name)
        seconds = time.perf_counter() - start  # Triton to cubin, plus a second ptxas -v

        mma: dict[str, int] = {}
        for op in re.findall(r"(wgmma\.mma_async\.sync\.aligned\.\w+\.\w+\.\w+|mma\.sync)",
                             ptx):
            mma[op] = mma.get(op, 0) + 1
        regs = _number(r"Used (\d+) registers", info)
        spills = _number(r"(\d+) bytes spill stores", info)
        stack = _number(r"(\d+) bytes stack frame", info)
        print(f"{path.stem:<28} warps={launch['num_warps']} stages={launch['num_stages']} "
              f"regs={regs} spill_stores={spills}B stack={stack}B "
              f"shared={kernel.metadata.shared}B mma={mma} compile={seconds:.1f}s")
