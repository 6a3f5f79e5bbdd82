"""Metrics out of a run: JSONL (one object per line) and TensorBoard, process 0 only.

`<workdir>/metrics.jsonl` is the record people and scripts read (it survives resumes:
lines are appended, and a resumed run first drops lines past its restored step so the
file never holds two values for one step). TensorBoard event files sit in
`<workdir>/tensorboard/` when tensorboardX is installed.

Both are written synchronously, in the training thread, and flushed after every row.
tensorboardX's own `SummaryWriter` queues events for a writer thread; when that thread
dies (a full disk), the queue fills and the training thread blocks in `Queue.put`
forever. Writing the (few, small) rows directly costs microseconds per row and turns
every write error into an exception here: a full disk raises `DiskFullError` naming the
file, any other OSError propagates.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pathlib
import socket
import struct
import time
from collections.abc import Mapping

import jax

from hybrid_jax.errors import DiskFullError, is_disk_full

log = logging.getLogger("hybrid_jax.train")


def _disk_full(path: pathlib.Path, e: OSError) -> DiskFullError:
    return DiskFullError(f"{path}: no space left on device while writing metrics ({e}); "
                         "free space or move the workdir, then rerun to resume")


class _EventFile:
    """A TensorBoard event file written in the calling thread.

    Records are TFRecords (length, masked CRC32C of the length, data, masked CRC32C of
    the data; little-endian) holding `Event` protos, built with tensorboardX's protos.
    """

    def __init__(self, directory: pathlib.Path) -> None:
        from tensorboardX.proto import event_pb2
        from tensorboardX.record_writer import masked_crc32c
        from tensorboardX.summary import scalar

        self._event_pb2, self._scalar, self._crc = event_pb2, scalar, masked_crc32c
        directory.mkdir(parents=True, exist_ok=True)
        # The name TensorBoard globs for: events.out.tfevents.<time>.<host>[suffix].
        self.path = directory / (f"events.out.tfevents.{int(time.time())}."
                                 f"{socket.gethostname()}.{os.getpid()}")
        self._file = open(self.path, "wb")
        self._write(self._event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
        self._file.flush()

    def _write(self, event) -> None:
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self._file.write(header + struct.pack("<I", self._crc(header)) + data
                         + struct.pack("<I", self._crc(data)))

    def add_scalars(self, step: int, values: Mapping[str, float]) -> None:
        now = time.time()
        for tag, v in values.items():
            self._write(self._event_pb2.Event(wall_time=now, step=step,
                                              summary=self._scalar(tag, v)))
        self._file.flush()  # to the OS now, so that a full disk shows up here

    def close(self) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()


class MetricWriter:
    def __init__(self, workdir: str | pathlib.Path, *, resume_step: int = 0) -> None:
        self.enabled = jax.process_index() == 0
        self.path = pathlib.Path(workdir) / "metrics.jsonl"
        self._tb: _EventFile | None = None
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._truncate_after(resume_step)
        tb_dir = pathlib.Path(workdir) / "tensorboard"
        try:
            self._tb = _EventFile(tb_dir)
        except ImportError:
            log.info("tensorboardX not installed: metrics go to %s only", self.path)
        except OSError as e:
            if is_disk_full(e):
                raise _disk_full(tb_dir, e) from e
            raise

    def _truncate_after(self, step: int) -> None:
        if not self.path.exists():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:  # write-then-rename: a full disk here leaves the old file whole
            tmp.write_text("".join(x + "\n" for x in keep), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            if is_disk_full(e):
                raise _disk_full(self.path, e) from e
            raise

    def write(self, step: int, values: Mapping[str, float], prefix: str = "") -> None:
        if not self.enabled:
            return
        row: dict[str, float | int | str] = {"step": int(step)}
        finite = {}
        for k, v in values.items():
            v = float(v)
            row[prefix + k] = v if math.isfinite(v) else str(v)
            if math.isfinite(v):
                finite[prefix + k] = v
        path = self.path
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            if self._tb is not None:
                path = self._tb.path
                self._tb.add_scalars(int(step), finite)
        except OSError as e:
            if is_disk_full(e):
                raise _disk_full(path, e) from e
            raise

    def close(self) -> None:
        if self._tb is not None:
            try:
                self._tb.close()
            except OSError as e:
                if is_disk_full(e):
                    raise _disk_full(self._tb.path, e) from e
                raise
            self._tb = None


def read_metrics(workdir: str | pathlib.Path) -> list[dict]:
    """All rows of a run's metrics.jsonl."""
    path = pathlib.Path(workdir) / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
