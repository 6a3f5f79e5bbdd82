"""The tests' child-process runner: a stuck child fails with its stacks, and nothing it
started outlives it."""

from __future__ import annotations

import os
import sys
import time

import pytest

from . import processes


def test_a_stuck_child_fails_with_its_python_stack():
    code = "import time\ndef stuck_here():\n    time.sleep(600)\nstuck_here()\n"
    start = time.monotonic()
    with pytest.raises(pytest.fail.Exception) as failure:
        processes.run([sys.executable, "-c", code], timeout=3)
    assert time.monotonic() - start < 60
    message = str(failure.value)
    assert "still running after 3 s" in message
    assert "stuck_here" in message  # faulthandler's dump of the main thread


def test_a_finished_child_leaves_no_stragglers():
    result = processes.run(["bash", "-c", "sleep 600 & echo $!"], timeout=30)
    assert result.returncode == 0
    straggler = int(result.stdout.split()[0])
    for _ in range(100):  # SIGKILL is delivered asynchronously; the child is not ours to reap
        try:
            os.kill(straggler, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with open(f"/proc/{straggler}/stat") as f:  # a zombie awaiting its reaper is gone too
        assert f.read().split()[2] == "Z"
