r"""The study as separate, resumable jobs: prepare, train one architecture, score, analyze.

    hybrid-jax-study --stage=prepare --workdir=runs/study --config=configs/study_gpu.py
    hybrid-jax-study --stage=train --arch=hybrid --workdir=runs/study --config=...
    hybrid-jax-study --stage=score --workdir=runs/study --config=...   # every export
    hybrid-jax-study --stage=analyze --workdir=runs/study --config=...
    hybrid-jax-study --stage=all --workdir=runs/demo                   # = make demo

Each stage reads the workdir the previous ones wrote and checks the data, tokenizer and
eval-pack digests that prepare recorded; train --arch=X can run on its own machine and
its exports be scored there, the tables copied back with their records (scores/,
probes/, prepare.json, pack/docs.jsonl + pack.json) and analysed anywhere. Rerunning a
stage resumes it. The config is configs/lm.py's (any `--config.x=...` overrides it);
use the same config for every stage.
"""

from __future__ import annotations

import logging
import pathlib

from absl import app, flags

from hybrid_jax.apps import cli

_CONFIG_FILE = pathlib.Path(__file__).resolve().parents[2] / "configs" / "lm.py"
_CONFIG = cli.define_config_file("config", f"{_CONFIG_FILE}:size=tiny",
                                 "Config file of every stage (configs/lm.py:..., "
                                 "configs/study_gpu.py); override any field with "
                                 "--config.<section>.<field>=<value>.")
_STAGE = flags.DEFINE_enum("stage", None, ["prepare", "train", "score", "analyze", "all"],
                           "Which stage to run (all: the four in order).", required=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "The study's directory (every stage).",
                               required=True)
_ARCH = flags.DEFINE_list("arch", [], "train: the architecture(s) to train, one after the "
                          "other; score / analyze: restrict to these (default: "
                          "config.study.archs).")
_EXPORTS = flags.DEFINE_list("exports", [], "score: export directories to score instead "
                             "of every export of every trained architecture.")
_TAGGER = flags.DEFINE_enum("tagger", None, ["auto", "brown", "spacy"],
                            "analyze: POS tagger (default config.study.tagger).")
_WORKERS = flags.DEFINE_integer("workers", None, "prepare: processes for the corpus and "
                                "tokenisation (default config.data.workers; 0: one per CPU).")
_CACHE = cli.define_compilation_cache()

log = logging.getLogger("hybrid_jax.study")


def main(argv: list[str]) -> None:
    del argv
    import time

    logging.getLogger("hybrid_jax").setLevel(logging.INFO)
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every file it renames
    from hybrid_jax.study import analyze_stage, prepare, score_stage, train_arch
    from hybrid_jax.study.manifest import arch_list, settings

    config, workdir, stage = _CONFIG.value, _WORKDIR.value, _STAGE.value
    archs = _ARCH.value or None
    if stage in ("train", "score", "all"):
        cli.use_compilation_cache(_CACHE.value, workdir)
    if stage == "train" and not archs:
        raise app.UsageError("--stage=train needs --arch (one or more architectures)")
    stages = ["prepare", "train", "score", "analyze"] if stage == "all" else [stage]
    for name in stages:
        t0 = time.perf_counter()
        if name == "prepare":
            rec = prepare(config, workdir, workers=_WORKERS.value)
            d = rec["digests"]
            print(f"prepare: data {d['data'][:12]}, tokenizer {d['tokenizer'][:12]}, pack "
                  f"{d['pack'][:12]}; {rec['tokens']['tokens']:,} training tokens", end="")
        elif name == "train":
            for arch in archs or arch_list(settings(config)["archs"]):
                rec = train_arch(config, workdir, arch)
                rate = rec["tokens_per_s"]["median"] or 0.0
                print(f"train {arch}: {rec['steps']} steps, {rec['tokens']:,} tokens, "
                      f"median {rate:,.0f} tokens/s, {len(rec['exports'])} exports")
            print("train", end="")
        elif name == "score":
            recs = score_stage(config, workdir, archs=archs, exports=_EXPORTS.value or None)
            print(f"score: {len(recs)} tables under {workdir}/scores", end="")
        else:
            result = analyze_stage(config, workdir, archs=archs, tagger=_TAGGER.value)
            g = result.gap
            print(f"analyze: gap {g['a']} - {g['b']} {g['mean']:+.4f} nats "
                  f"[{g['lo']:+.4f}, {g['hi']:+.4f}]; report {result.report.get('html')}",
                  end="")
        print(f" ({time.perf_counter() - t0:.1f} s)")


def run() -> None:
    cli.run(main)


if __name__ == "__main__":
    run()
