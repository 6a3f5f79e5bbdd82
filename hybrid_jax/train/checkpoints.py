"""Training checkpoints (resume) and parameter exports (for scoring and analysis).

Two kinds of checkpoint live in a workdir:

    checkpoints/<step>/   orbax, async, `keep` most recent: the TrainState (step,
                          parameters, optimizer state) and the iterator state of every
                          data shard (`data/shard_<s>.json`, written by the process
                          that owns it). Restoring both replays the exact data order, so
                          a killed run resumes on the same loss curve, on any number of
                          processes that divides the shard count.
    <name>/               parameter exports in the hybrid_jax parameter format
                          (`model_config.json` + `params/`, see `convert.checkpoint`):
                          `final`, and for WSD-S `stable_<budget>x` / `anneal_<budget>x`.

orbax writes each step into a temporary directory and renames it when complete, so a
kill mid-save leaves no half checkpoint among the listed steps. A checkpoint that
exists but cannot be read (corrupted on disk) is skipped with a warning, falling back
to the previous one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx
from jax.experimental import multihost_utils

from hybrid_jax.data.pipeline import ShardedBatches
from hybrid_jax.models.config import ModelConfig
from hybrid_jax.train.state import TrainState

log = logging.getLogger("hybrid_jax.train")


class DataStateHandler(ocp.CheckpointHandler):
    """Orbax handler for a `ShardedBatches` iterator: one JSON file per data shard.

    Every process writes the shards it owns and reads back the shards it owns now, so
    the files do not depend on how many processes wrote them.
    """

    def save(self, directory, args: DataSave) -> None:
        state = args.item.get_state()
        for s, shard_state in state["shards"].items():
            path = directory / f"shard_{int(s):05d}-of-{state['num_shards']:05d}.json"
            path.write_text(json.dumps(shard_state))

    def restore(self, directory, args: DataRestore) -> ShardedBatches:
        found: dict[int, dict[str, Any]] = {}
        for path in directory.glob("shard_*-of-*.json"):
            s, num_shards = (int(x) for x in path.stem[len("shard_"):].split("-of-"))
            found.setdefault(num_shards, {})[str(s)] = json.loads(path.read_text())
        if len(found) != 1:
            raise ValueError(f"{directory} holds data states for shard counts {sorted(found)}")
        [(num_shards, shards)] = found.items()
        args.item.set_state({"num_shards": num_shards, "shards": shards})  # checks them
        return args.item


@ocp.args.register_with_handler(DataStateHandler, for_save=True)
@dataclasses.dataclass
class DataSave(ocp.args.CheckpointArgs):
    item: ShardedBatches


@ocp.args.register_with_handler(DataStateHandler, for_restore=True)
@dataclasses.dataclass
class DataRestore(ocp.args.CheckpointArgs):
    item: ShardedBatches


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

    def save(self, state: TrainState, iterator: ShardedBatches) -> None:
        step = int(jax.device_get(state.step))
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=DataSave(iterator)))

    def restore_latest(
        self, abstract_state: Any, iterator: ShardedBatches
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
                    data=DataRestore(iterator)))
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
