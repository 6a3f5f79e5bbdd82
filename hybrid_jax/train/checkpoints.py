"""Training checkpoints (resume) and parameter exports (for scoring and analysis).

Two kinds of checkpoint live in a workdir:

    checkpoints/<step>/   orbax, async, `keep` most recent: the TrainState (step,
                          parameters, optimizer state) and the iterator state of every
                          data shard (`data/shard_<s>.json`, written by the process
                          that owns it). Restoring both replays the exact data order, so
                          a killed run resumes on the same loss curve, on any number of
                          processes that divides the shard count.
                          `digests.json`: size and sha256 of every file of the step,
                          written once orbax has finished the save (`hybrid_jax.digests`).
    <name>/               parameter exports in the hybrid_jax parameter format
                          (`model_config.json` + `params/`, see `convert.checkpoint`):
                          `final`, and for WSD-S `stable_<budget>x` / `anneal_<budget>x`.

Saving. orbax writes each step into a temporary directory and renames it when
complete, so a kill mid-save leaves no half checkpoint among the listed steps. The save
runs in the background; `poll()` (every training step, non-blocking) and the next
`save()` / `wait()` / `close()` collect its outcome: a failed save raises
`CheckpointSaveError` (`DiskFullError` for a full disk) instead of being logged while
training goes on without checkpoints; a finished one gets its digests.

Restoring. The newest checkpoint is checked against its digests before orbax reads it.
One whose files changed (flipped or truncated bytes, a missing file), or that has no
digests and cannot be read, is reported, moved to `checkpoints.corrupt/<step>` (out of
orbax's list, so the run falls back to the previous one and later saves at that step
are written again), and the previous one is tried. A checkpoint whose digests match
but that orbax cannot restore into this run's state is not corrupt: that stops the run
(`CheckpointRestoreError`; typically the config changed). Checkpoints written before
digests existed are restored with a warning that they are unverified.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import shutil
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx
from jax.experimental import multihost_utils

from hybrid_jax.data.pipeline import ShardedBatches
from hybrid_jax.digests import directory_manifest, manifest_problems, read_manifest, write_manifest
from hybrid_jax.errors import DiskFullError, UserError, is_disk_full
from hybrid_jax.models.config import ModelConfig
from hybrid_jax.orbax_echoes import quiet_failed_io
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


class CheckpointSaveError(UserError, RuntimeError):
    """A training checkpoint could not be written; the message names the step and path."""


class CheckpointRestoreError(UserError, RuntimeError):
    """No checkpoint of a workdir can be restored; the message says why and what to do."""


class _Corrupt(Exception):
    """A checkpoint's files differ from what was written (internal: the checkpoint is set
    aside and the previous one tried)."""


DIGESTS = "digests.json"


def _one_line(e: BaseException, limit: int = 400) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


class Checkpointer:
    """Saves and restores (TrainState, data iterator) under `<workdir>/checkpoints`.

    `verified`: the steps whose files are known to match their digests (written by
    this process after the save finished, or checked on restore).
    """

    def __init__(self, directory: str | pathlib.Path, *, keep: int = 3,
                 async_save: bool = True) -> None:
        self.directory = pathlib.Path(directory).absolute()
        self.aside = self.directory.with_name(self.directory.name + ".corrupt")
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=async_save, create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options,
                                              item_names=("state", "data"))
        self._pending: int | None = None  # saved, outcome not yet collected
        self.verified: set[int] = set()

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def step_dir(self, step: int) -> pathlib.Path:
        return self.directory / str(step)

    # ------------------------------------------------------------------ saving
    def save(self, state: TrainState, iterator: ShardedBatches) -> None:
        """Start saving `state` (async); first collect the previous save's outcome."""
        self._finish_pending()
        step = int(jax.device_get(state.step))
        try:
            with quiet_failed_io():
                saved = self._manager.save(step, args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state),
                    data=DataSave(iterator)))
        except Exception as e:
            raise self._save_error(step, e) from e
        if not saved:  # orbax saves only steps past its newest one
            raise CheckpointSaveError(
                f"checkpoint {step} was not written to {self.directory}: orbax skipped it "
                f"(its newest step is {self._manager.latest_step()})")
        self._pending = step

    def poll(self) -> None:
        """Non-blocking: if the background save has finished, check it and write its
        digests (raising if it failed)."""
        if self._pending is not None and not self._manager.is_saving_in_progress():
            self._finish_pending()

    def wait(self) -> None:
        """Block until the last save is complete, checked and digested."""
        self._finish_pending()

    def _save_error(self, step: int, e: BaseException) -> UserError:
        where = f"checkpoint {step} could not be written to {self.directory}"
        if is_disk_full(e):
            return DiskFullError(f"{where}: no space left on device ({_one_line(e, 200)}); "
                                 "free space, then rerun to resume from the last checkpoint")
        return CheckpointSaveError(f"{where}: {_one_line(e)}")

    def _finish_pending(self) -> None:
        if self._pending is None:
            return
        step, self._pending = self._pending, None
        try:
            with quiet_failed_io():
                self._manager.wait_until_finished()  # re-raises a background failure
        except Exception as e:
            raise self._save_error(step, e) from e
        path = self.step_dir(step)
        if not path.is_dir():  # orbax logs some failures and skips finalizing the step
            raise CheckpointSaveError(f"checkpoint {step} could not be written to "
                                      f"{self.directory}: orbax did not finalize {path}")
        if jax.process_index() == 0:
            t0 = time.perf_counter()
            try:
                files = directory_manifest(path, exclude=(DIGESTS,))
                write_manifest(path / DIGESTS, files, step=step)
            except OSError as e:
                raise self._save_error(step, e) from e
            log.info("checkpoint %d: digests of %d files (%.1f MB) in %.2f s", step,
                     len(files), sum(f["bytes"] for f in files.values()) / 1e6,
                     time.perf_counter() - t0)
        self.verified.add(step)

    # ------------------------------------------------------------------ restoring
    def _verify(self, step: int) -> bool:
        """True if the step's files match its digests, False if it has none; raises
        _Corrupt naming the files that differ."""
        path = self.step_dir(step)
        if not (path / DIGESTS).exists():
            return False
        try:
            files = read_manifest(path / DIGESTS)
        except ValueError as e:
            raise _Corrupt(str(e)) from e
        problems = manifest_problems(path, files)
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise _Corrupt("; ".join(problems[:3]) + more)
        return True

    def _set_aside(self, step: int) -> pathlib.Path:
        """Move a corrupt step out of orbax's directory; returns where it went."""
        target = self.aside / str(step)
        n = 1
        while target.exists():
            n += 1
            target = self.aside / f"{step}.{n}"
        if jax.process_index() == 0:
            self.aside.mkdir(parents=True, exist_ok=True)
            shutil.move(str(self.step_dir(step)), str(target))
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"checkpoint {step} set aside")
        self._manager.reload()
        self.verified.discard(step)
        return target

    def restore_latest(
        self, abstract_state: Any, iterator: ShardedBatches
    ) -> TrainState | None:
        """The newest readable checkpoint (iterator restored in place), or None if none.

        `abstract_state`: the TrainState's structure with `jax.ShapeDtypeStruct` leaves
        carrying the target shardings.
        """
        steps = self.steps()
        for step in reversed(steps):
            verified = False
            try:
                verified = self._verify(step)
                with quiet_failed_io():
                    restored = self._manager.restore(step, args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract_state),
                        data=DataRestore(iterator)))
            except Exception as e:
                if verified:  # intact files that do not fit this run: not corruption
                    raise CheckpointRestoreError(
                        f"checkpoint {step} in {self.directory} is intact (its digests "
                        f"match) but cannot be restored into this run's state: "
                        f"{_one_line(e)}; did the config change? Use another workdir or "
                        "restore the old config") from e
                what = "is corrupt" if isinstance(e, _Corrupt) else "is unreadable"
                target = self._set_aside(step)
                log.warning("checkpoint %d in %s cannot be restored: it %s (%s); moved it to "
                            "%s and trying the previous one", step, self.directory, what,
                            _one_line(e, 300), target)
                continue
            if verified:
                self.verified.add(step)
                log.info("resumed from checkpoint %d in %s (digests verified)", step,
                         self.directory)
            else:
                log.warning("resumed from checkpoint %d in %s without verifying it: it has "
                            "no %s (written by an older version, or killed before the "
                            "digests were written)", step, self.directory, DIGESTS)
            return restored.state
        if steps:
            raise CheckpointRestoreError(
                f"none of the checkpoints {steps} in {self.directory} can be restored (see "
                f"the warnings above); they were moved to {self.aside}; rerun to start "
                "afresh")
        return None

    def describe_latest(self) -> str:
        """'the last verified checkpoint is step N in DIR' (or why there is none), for
        error messages that send the user back to a checkpoint."""
        steps = self.steps()
        good = [s for s in steps if s in self.verified]
        if not steps:
            return f"there is no checkpoint in {self.directory} yet"
        if good and good[-1] == steps[-1]:
            return f"the last verified checkpoint is step {good[-1]} in {self.directory}"
        newest = (f"the newest checkpoint, step {steps[-1]} in {self.directory}, is not "
                  "verified (no digests)")
        return newest + (f"; the last verified one is step {good[-1]}" if good else "")

    def close(self) -> None:
        self._finish_pending()
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
