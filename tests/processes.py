"""Child processes of the tests (apps, multi-device reruns, launch scripts), run so that a
stuck one fails its test with every thread's stack instead of holding the run.

Each child starts in its own process group with Python's faulthandler on. Past its
limit the whole group gets SIGABRT, on which every Python process in it prints all its
threads' stacks to stderr (launch/local.sh's hosts into their log files), then SIGKILL;
the test fails with the tail of what the child printed. A child that finishes leaves no
stragglers behind: the rest of its group is killed too.
"""

from __future__ import annotations

import os
import pathlib
import resource
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# No core files from the SIGABRT below (children inherit the limit; a preexec_fn would
# make subprocess fork this multithreaded process, which JAX rightly warns can deadlock).
resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def run(cmd: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike = ROOT,
        watch: Callable[[], None] | None = None) -> subprocess.CompletedProcess:
    """`subprocess.run(cmd, capture_output=True, text=True)` with the stack-dumping limit.

    Output goes through files, not pipes: a straggler holding a pipe open would keep a
    reader waiting after the child itself has exited. `watch`, if given, is called about
    every 50 ms while the child runs (to look at what it has written so far).
    """
    env = {**(os.environ if env is None else env), "PYTHONFAULTHANDLER": "1"}
    timed_out = False
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(list(map(str, cmd)), cwd=cwd, env=env, stdout=out,
                                stderr=err, text=True, start_new_session=True)
        try:
            if watch is None:
                proc.wait(timeout=timeout)
            else:
                deadline = time.monotonic() + timeout
                while proc.poll() is None:
                    if time.monotonic() > deadline:
                        raise subprocess.TimeoutExpired(proc.args, timeout)
                    watch()
                    time.sleep(0.05)
        except subprocess.TimeoutExpired:
            timed_out = True
            _signal_group(proc.pid, signal.SIGABRT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        finally:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if timed_out:
        pytest.fail(f"{' '.join(map(str, cmd))[:300]}\nstill running after {timeout:.0f} s; "
                    f"its stacks (SIGABRT):\n{stdout[-3000:]}\n{stderr[-12000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
