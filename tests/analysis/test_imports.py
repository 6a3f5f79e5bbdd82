"""The analysis side never imports JAX or model code; the filters import only numpy."""

import sys

from .. import processes

CHECK = """
import sys
import {modules}
bad = sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r}
             or m.startswith(('hybrid_jax.models', 'hybrid_jax.kernels', 'hybrid_jax.train',
                              'hybrid_jax.scoring', 'hybrid_jax.data')))
assert not bad, bad
"""


def run(modules: str, forbidden: set[str]) -> None:
    code = CHECK.format(modules=modules, forbidden=forbidden)
    proc = processes.run([sys.executable, "-c", code], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_analysis_and_app_import_no_jax():
    run("hybrid_jax.analysis.pipeline, hybrid_jax.analysis.report, "
        "hybrid_jax.analysis.probes, hybrid_jax.apps.analyze", {"jax", "flax", "jaxlib"})


def test_filters_import_only_numpy():
    run("hybrid_jax.analysis.filters", {"jax", "flax", "pandas", "statsmodels", "matplotlib",
                                        "spacy", "nltk", "scipy", "pyarrow"})
