r"""The main job: the study at CPU scale, end to end, from nothing.

    hybrid-jax-demo --workdir=runs/demo --config.train.steps=300

(`python -m hybrid_jax.apps.demo` is the same.) It trains a SentencePiece tokenizer and
the tiny transformer, hybrid and recurrent models on identical data (the standard
library's Python source and docstring prose, unless e.g.
--config.data.sources=corpus:../shared/data/corpus says otherwise), scores a frozen
held-out eval pack with every exported checkpoint, runs the gap analysis and probes,
and writes <workdir>/report/report.html. Rerunning resumes where it stopped.
"""

from __future__ import annotations

import logging
import pathlib

from absl import flags

from hybrid_jax.apps import cli

_CONFIG_FILE = pathlib.Path(__file__).resolve().parents[2] / "configs" / "lm.py"
_CONFIG = cli.define_config_file(
    "config", f"{_CONFIG_FILE}:size=tiny", "Config file of the three models' common "
    "settings (the architecture is set per model); override any field with "
    "--config.<section>.<field>=<value>.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/demo", "Where everything is written; "
                               "rerun with the same directory to resume.")
_TAGGER = flags.DEFINE_enum("tagger", "auto", ["auto", "brown", "spacy"],
                            "POS tagger of the analysis: NLTK Brown-trained, spaCy "
                            "en_core_web_sm, or auto (Brown when its corpus is found).")


def main(argv: list[str]) -> None:
    del argv
    from hybrid_jax.analysis.report import paired_lines
    from hybrid_jax.study import run_study

    logging.getLogger("hybrid_jax").setLevel(logging.INFO)
    logging.getLogger("absl").setLevel(logging.WARNING)
    config = _CONFIG.value
    if not config.train.export_every:
        config.train.export_every = max(1, config.train.steps // 3)  # points for the curves
    result = run_study(config, _WORKDIR.value, tagger=_TAGGER.value)
    print("\nfiltered losses at the end of training (nats per token, 95% CI over documents):")
    final = result.filtered[result.filtered["table"].isin(["transformer", "hybrid", "recurrent"])]
    for (table, filt), row in final.set_index(["table", "filter"]).iterrows():
        print(f"  {table:<12} {filt:<22} {row['mean']:.3f} [{row['lo']:.3f}, {row['hi']:.3f}]"
              f"  ({row['n']:,} tokens)")
    print("\npaired filtered gaps A - B at every exported step (nats, > 0: B better; 95% "
          "CI resampling documents jointly for both models; significance after Holm's "
          "correction within each step):")
    for line in paired_lines(result.paired):
        print("  " + line)
    g = result.gap
    print(f"\ngap {g['a']} - {g['b']}: {g['mean']:+.4f} nats [{g['lo']:+.4f}, {g['hi']:+.4f}] "
          "(> 0: the second model predicts better)")
    print(f"report: {result.report['html']}")


def run() -> None:
    cli.run(main)


if __name__ == "__main__":
    run()
