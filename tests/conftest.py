"""Test-wide settings.

- Eight virtual CPU devices, so sharding tests can build a 2 x 2 x 2 mesh (set before
  jax is imported; a single-device computation still runs on device 0 only).
- XLA:CPU runs all virtual devices on one thread pool sized by the core count (2 on CI).
  A collective blocks its thread until every device arrives, so with fewer threads than
  devices a sharded step can starve itself and hang. NPROC (read by XLA's CPU client)
  gives the pool enough threads.
- Tests compare float32 results against references at 1e-5: on GPUs, XLA would run
  float32 matmuls in TF32 by default (about 1e-3 relative), so tests ask for full
  precision.
"""

import os

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("NPROC", "16")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
