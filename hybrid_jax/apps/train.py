r"""Train a language model; rerun with the same workdir to resume.

    hybrid-jax-train --config=configs/lm.py:arch=hybrid,size=tiny \
        --workdir=runs/hybrid_tiny --config.train.steps=100

(from the repository root; `python -m hybrid_jax.apps.train` is the same). Every
field of the config can be overridden as `--config.<section>.<field>=<value>` (see
configs/lm.py). Multi-host: start the same command on every host (see launch/); the
processes find each other through `jax.distributed.initialize()`.
"""

from __future__ import annotations

import logging

from absl import flags

from hybrid_jax.apps import cli

_CONFIG = cli.define_config_file(
    "config", None, "Config file and its argument, e.g. configs/lm.py:arch=hybrid,size=60m; "
    "override any field with --config.<section>.<field>=<value>.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and exports go; "
                               "rerun with the same directory to resume.")
_CACHE = cli.define_compilation_cache()
flags.mark_flags_as_required(["config", "workdir"])

log = logging.getLogger("hybrid_jax.train")


def main(argv: list[str]) -> None:
    del argv

    from hybrid_jax.sharding import initialize_distributed
    from hybrid_jax.train.loop import train

    logging.getLogger("hybrid_jax").setLevel(logging.INFO)
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every file it renames
    initialize_distributed()
    cache = cli.use_compilation_cache(_CACHE.value, _WORKDIR.value)
    if cache is not None:
        log.info("compilation cache: %s", cache)
    summary = train(_CONFIG.value, _WORKDIR.value)
    print(f"trained {summary.steps} steps in {summary.workdir}; final eval: "
          + ", ".join(f"{k} {v:.4f}" for k, v in summary.final_eval.items()))


def run() -> None:
    cli.run(main)


if __name__ == "__main__":
    run()
