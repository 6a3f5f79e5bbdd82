"""The whole study in one call: prepare, train every architecture, score, analyze.

`run_study(config, workdir)` is what `make demo` runs: the four stages of this package
one after the other in one process, each skipping what is already on disk, so an
interrupted study resumes. Running the stages as separate jobs (`hybrid-jax-study
--stage=...`, one machine per architecture if need be) writes the same files: the
stages share nothing but the workdir.
"""

from __future__ import annotations

from collections.abc import Sequence

import ml_collections

from hybrid_jax.study.analyze_stage import StudyResult, analyze_stage
from hybrid_jax.study.manifest import arch_list, settings
from hybrid_jax.study.prepare import prepare
from hybrid_jax.study.score_stage import score_stage
from hybrid_jax.study.train_stage import train_arch


def run_study(config: ml_collections.ConfigDict, workdir: str, *,
              archs: Sequence[str] | None = None, tagger: str | None = None) -> StudyResult:
    """Every stage for `archs` (default `config.study.archs`); the analysis result."""
    names = list(archs) if archs else arch_list(settings(config)["archs"])
    prepare(config, workdir)
    for arch in names:
        train_arch(config, workdir, arch)
    score_stage(config, workdir, archs=names)
    return analyze_stage(config, workdir, archs=names, tagger=tagger)
