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
import os
from collections.abc import Mapping

from absl import flags

from hybrid_jax.apps import cli

_CONFIG = cli.define_config_file(
    "config", None, "Config file and its argument, e.g. configs/lm.py:arch=hybrid,size=60m; "
    "override any field with --config.<section>.<field>=<value>.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and exports go; "
                               "rerun with the same directory to resume.")
_CACHE = flags.DEFINE_string(
    "compilation_cache", "auto",
    "Persistent XLA compilation cache, so that a resumed run does not compile again: "
    "'auto' = $JAX_COMPILATION_CACHE_DIR if set (jax reads it), else <workdir>/xla_cache "
    "on GPU and TPU (off on CPU); 'none' = off; anything else = that directory.")
flags.mark_flags_as_required(["config", "workdir"])

log = logging.getLogger("hybrid_jax.train")


def compilation_cache_dir(flag: str, workdir: str, platform: str,
                          env: Mapping[str, str]) -> str | None:
    """The directory to set as jax's compilation cache, or None to leave jax's setting."""
    if flag == "none" or (flag == "auto" and env.get("JAX_COMPILATION_CACHE_DIR")):
        return None
    if flag != "auto":
        return flag
    return None if platform == "cpu" else os.path.join(workdir, "xla_cache")


def main(argv: list[str]) -> None:
    del argv
    import jax

    from hybrid_jax.sharding import initialize_distributed
    from hybrid_jax.train.loop import train

    logging.getLogger("hybrid_jax").setLevel(logging.INFO)
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every file it renames
    initialize_distributed()
    cache = compilation_cache_dir(_CACHE.value, _WORKDIR.value, jax.default_backend(),
                                  os.environ)
    if cache is not None:
        jax.config.update("jax_compilation_cache_dir", cache)
        log.info("compilation cache: %s", cache)
    summary = train(_CONFIG.value, _WORKDIR.value)
    print(f"trained {summary.steps} steps in {summary.workdir}; final eval: "
          + ", ".join(f"{k} {v:.4f}" for k, v in summary.final_eval.items()))


def run() -> None:
    cli.run(main)


if __name__ == "__main__":
    run()
