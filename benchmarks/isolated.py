"""Run one benchmark row in a child process of its script, so that an out-of-memory
(which can leave the allocator fragmented), a crash or a minutes-long compile costs
only that row, and no cache of one row flatters the next."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from typing import Any


def run_row(script: str, flags: list[str], *, timeout_s: float,
            ident: dict[str, Any]) -> dict[str, Any]:
    """`python script *flags --out=<tmp> --no-isolate`; the one row it writes to its JSON
    list, or `ident` with an `error` saying why there is none."""
    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/row.json"
        cmd = [sys.executable, script, *flags, f"--out={out}", "--no-isolate"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {**ident, "error": f"did not finish within {timeout_s:.0f} s"}
        try:
            with open(out) as f:
                return json.load(f)[0]
        except (OSError, ValueError, IndexError):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            return {**ident, "error": f"exit {proc.returncode}: {tail[0][:300]}"}
