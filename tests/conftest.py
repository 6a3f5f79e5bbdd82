"""Test-wide settings and the multi-device helper.

- Tests compare float32 results against references at 1e-5: on GPUs, XLA would run
  float32 matmuls in TF32 by default (about 1e-3 relative), so tests ask for full
  precision.
- `with_devices(n, request)`: tests that need a mesh of n devices rerun themselves in a
  subprocess with n virtual CPU devices. XLA:CPU runs every virtual device on one
  thread pool sized by the core count (2 on CI) and a collective blocks its thread until
  every device arrives, so a sharded step can starve itself and hang unless the pool has
  more threads (NPROC). Those threads would oversubscribe the cores for every other
  test, hence the subprocess.
- XLA:CPU's multi-threaded Eigen kernels are off: the test workers already use every
  core, and with them on, a computation now and then never finished (its pool wedged;
  seen once in a full run, a worker asleep at 0% CPU waiting on a result). With them
  off it happened twice more (2026-11-23, both times
  tests/convert/test_parity.py::test_hybrid_nope_negative_eigenvalues_two_chunks, the
  main thread waiting on a result in `np.asarray` of an eagerly run layer; the reruns
  passed). That matches jax-ml/jax#25861 (XLA:CPU's asynchronous dispatch now and then
  never completes a computation; turning it off cures its reproducer), so tests run with
  `jax_cpu_enable_async_dispatch` off (set here, before the CPU client exists; test
  subprocesses load this file too).
- A test stuck anyway is killed with its stacks printed and runs once more
  (pyproject.toml); child processes go through `processes.run`, which does the same for
  them. The run starts by printing the machine it had (CPUs, quota, memory, load).
"""

from __future__ import annotations

import os
import pathlib
import sys

if "--xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_cpu_multi_thread_eigen=false").strip()

import jax  # noqa: E402
import pytest  # noqa: E402

from . import processes  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
jax.config.update("jax_cpu_enable_async_dispatch", False)

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _machine() -> str:
    """CPUs, cgroup CPU quota, memory and load: what a slow or stuck run is read against."""
    try:
        quota = pathlib.Path("/sys/fs/cgroup/cpu.max").read_text().strip()
    except OSError:
        quota = "none"
    try:
        mem = next(int(line.split()[1]) / 2**20 for line in open("/proc/meminfo")
                   if line.startswith("MemTotal"))
        load = " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        mem, load = float("nan"), "?"
    return (f"machine: {len(os.sched_getaffinity(0))} usable CPUs of {os.cpu_count()}, "
            f"cgroup cpu.max {quota}, {mem:.1f} GiB, load {load}; "
            f"jax {jax.__version__}, XLA_FLAGS={os.environ['XLA_FLAGS']!r}")


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # the xdist controller, or no xdist
        session.config.get_terminal_writer().line(_machine())


def with_devices(n: int, request: pytest.FixtureRequest) -> bool:
    """True if this process has n devices (run the test body); else run the test in a
    subprocess that has them, fail with its output if it fails, and return False."""
    if jax.device_count() >= n:
        return True
    if os.environ.get("HYBRID_JAX_TEST_SUBPROCESS"):
        pytest.fail(f"the subprocess still has {jax.device_count()} devices, not {n}")
    env = {**os.environ, "HYBRID_JAX_TEST_SUBPROCESS": "1", "NPROC": str(2 * n),
           "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} "
                        f"--xla_force_host_platform_device_count={n}".strip()}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-s",
           request.node.nodeid]
    result = processes.run(cmd, env=env, timeout=380)
    if result.returncode != 0:
        pytest.fail(f"{request.node.nodeid} failed with {n} devices:\n"
                    f"{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
    return False
