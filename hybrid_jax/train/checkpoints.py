"""Training checkpoints (resume) and parameter exports (for scoring and analysis).

Two kinds of checkpoint live in a workdir:

    checkpoints/<step>/   orbax, async, `keep` most recent: the TrainState (step,
                          parameters, optimizer state) and the grain iterator state of
                          every process. Restoring both replays the exact data order, so
                          a killed run resumes on the same loss curve.
    <name>/               parameter exports in the hybrid_jax parameter format
                          (`model_config.json` + `params/`, see `convert.checkpoint`):
                          `final`, and for WSD-S `stable_<budget>x` / `anneal_<budget>x`.

orbax writes each step into a temporary directory and renames it when complete, so a
kill mid-save leaves no half checkpoint among the listed steps. A checkpoint that
exists but cannot be read (corrupted on disk) is skipped with a warning, falling back
to the previous one.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx
from jax.experimental import multihost_utils

from hybrid_jax.models.config import ModelConfig
from hybrid_jax.train.state import TrainState

log = logging.getLogger("hybrid_jax.train")


class Checkpointer:
    """Saves and restores (TrainState, data iterator) under `<workdir>/checkpoints`."""

    def __init__(self, directory: str | pathlib.Path, *, keep: int = 3,
                 async_save: bool = True) -> None:
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=async_save, create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options,
                                              item_names=("state", "data"))

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, state: TrainState, iterator: grain.DatasetIterator) -> None:
        step = int(jax.device_get(state.step))
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=grain.checkpoint.CheckpointSave(iterator)))

    def restore_latest(
        self, abstract_state: Any, iterator: grain.DatasetIterator
    ) -> TrainState | None:
        """The newest readable checkpoint (iterator restored in place), or None if none.

        `abstract_state`: the TrainState's structure with `jax.ShapeDtypeStruct` leaves
        carrying the target shardings.
        """
        steps = self.steps()
        for step in reversed(steps):
            try:
                restored = self._manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state),
                    data=grain.checkpoint.CheckpointRestore(iterator)))
            except Exception as e:  # unreadable: fall back to the previous checkpoint
                log.warning("checkpoint %d in %s cannot be restored (%s: %s); trying the "
                            "previous one", step, self.directory, type(e).__name__, e)
                continue
            log.info("resumed from checkpoint %d in %s", step, self.directory)
            return restored.state
        if steps:
            raise RuntimeError(f"none of the checkpoints {steps} in {self.directory} can be "
                               "restored; move them away to start afresh")
        return None

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def export_params(directory: str | pathlib.Path, cfg: ModelConfig, params: nnx.State, *,
                  source: dict[str, Any]) -> pathlib.Path:
    """Write `params` in the hybrid_jax parameter format (readable by scoring).

    Multi-host: the shards are gathered, process 0 writes, every process waits.
    """
    from hybrid_jax.convert.checkpoint import save_checkpoint

    directory = pathlib.Path(directory)
    flat = [(tuple(p), v.get_value()) for p, v in nnx.to_flat_state(params)]
    if jax.process_count() > 1:
        values = multihost_utils.process_allgather([v for _, v in flat], tiled=True)
    else:
        values = jax.device_get([v for _, v in flat])
    if jax.process_index() == 0:
        leaves = ((p, np.asarray(v)) for (p, _), v in zip(flat, values))
        save_checkpoint(directory, cfg, leaves, source=source, overwrite=True)
    multihost_utils.sync_global_devices(f"export {directory}")
    return directory
