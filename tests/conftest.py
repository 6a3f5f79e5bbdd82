"""Test-wide settings.

Tests compare float32 results against references at 1e-5: on GPUs, XLA would run
float32 matmuls in TF32 by default (about 1e-3 relative), so tests ask for full precision.
"""

import jax

jax.config.update("jax_default_matmul_precision", "highest")
