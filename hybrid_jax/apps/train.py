"""Train a language model; rerun with the same workdir to resume.

    python -m hybrid_jax.apps.train --config=configs/lm.py:arch=hybrid,size=tiny \
        --workdir=runs/hybrid_tiny [--config.train.steps=500 ...]

Multi-host: start the same command on every host (see launch/); the processes find
each other through `jax.distributed.initialize()`.
"""

from __future__ import annotations

import logging

from absl import app, flags
from ml_collections import config_flags

from hybrid_jax.sharding import initialize_distributed
from hybrid_jax.train.loop import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/lm.py:...).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and exports go.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    del argv
    logging.getLogger("hybrid_jax").setLevel(logging.INFO)
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every file it renames
    initialize_distributed()
    summary = train(_CONFIG.value, _WORKDIR.value)
    print(f"trained {summary.steps} steps in {summary.workdir}; final eval: "
          + ", ".join(f"{k} {v:.4f}" for k, v in summary.final_eval.items()))


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
