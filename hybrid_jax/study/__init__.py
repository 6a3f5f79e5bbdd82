"""The study as four resumable stages: prepare, train (one architecture), score, analyze.

    prepare.py        corpus, tokenizer, pre-tokenised training tokens, eval pack
    train_stage.py    one architecture on the prepared tokens, exports included
    score_stage.py    every export on the eval pack (+ probes)
    analyze_stage.py  every table merged, checked, analysed; the report
    manifest.py       workdir layout, settings, stage records, digests, StudyError
    run.py            all four in one call (`make demo`)
"""

from hybrid_jax.study.analyze_stage import StudyResult, analyze_stage
from hybrid_jax.study.manifest import Layout, StudyError, settings
from hybrid_jax.study.prepare import prepare
from hybrid_jax.study.run import run_study
from hybrid_jax.study.score_stage import score_stage
from hybrid_jax.study.train_stage import train_arch

__all__ = ["Layout", "StudyError", "StudyResult", "analyze_stage", "prepare", "run_study",
           "score_stage", "settings", "train_arch"]
