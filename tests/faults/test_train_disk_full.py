"""Issue 24, defect 4: a full disk must end training with one clear error, never a hang.

Before: tensorboardX's writer thread died on ENOSPC and the training thread then blocked
in `Queue.put` forever; a failed background checkpoint save was only logged. Now every
full disk ends the run with `DiskFullError` (a `UserError`) naming the path.

Two ways to fill a disk: a real tmpfs of a few pages mounted over the workdir (or its
`tensorboard/`), when this process may mount (root, as on the test machines; skipped with
the reason otherwise), and, always, files opened on `/dev/full` (every write fails with
ENOSPC from the kernel) or an orbax array write whose commit fails with ENOSPC.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import json
import os
import pathlib
import struct
import subprocess
import threading

import pytest

from hybrid_jax.errors import UserError
from hybrid_jax.train.loop import train
from hybrid_jax.train.metrics import MetricWriter, read_metrics

from .train_fixtures import fault_config

# Far beyond any of these runs on a loaded 2-core machine (the environment variable
# shortens it when checking that the old code hangs).
HANG_S = float(os.environ.get("HYBRID_JAX_HANG_S", 240))


def run_bounded(fn, timeout: float = HANG_S) -> BaseException | None:
    """Run fn() in a daemon thread; the exception it raised (None if it returned).
    Fails the test if fn is still running after `timeout` seconds: it hangs."""
    outcome: list[BaseException | None] = []

    def target():
        try:
            fn()
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            outcome.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"still running after {timeout} s: the writer hangs instead of failing")
    return outcome[0]


@pytest.fixture
def dev_full(monkeypatch):
    """`full(directory_or_file)`: from now on, files opened for writing there are opened
    on /dev/full instead (every write fails with ENOSPC)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    real_open = builtins.open
    targets: list[pathlib.Path] = []

    def fake_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax"):
            p = pathlib.Path(file).absolute()
            if any(p == t or t in p.parents for t in targets):
                return real_open("/dev/full", mode.replace("x", "w"), *args, **kwargs)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    return lambda path: targets.append(pathlib.Path(path).absolute())


@contextlib.contextmanager
def tmpfs(directory: pathlib.Path, size: str):
    """A tmpfs of `size` mounted on `directory` (skips the test if it cannot mount)."""
    directory.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}); the "
                    "/dev/full tests cover the same errors")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], capture_output=True)


def assert_one_line_disk_full(error: BaseException | None, path_part: str) -> None:
    from hybrid_jax.errors import DiskFullError

    assert isinstance(error, DiskFullError), repr(error)
    assert isinstance(error, UserError)
    message = str(error)
    print(message)
    assert "\n" not in message and "no space left on device" in message, message
    assert path_part in message, message


# ---------------------------------------------------------------------------- metrics
def test_metrics_writer_on_a_full_disk_raises_instead_of_hanging(tmp_path, dev_full):
    dev_full(tmp_path / "tensorboard")

    def write_many():
        writer = MetricWriter(tmp_path)
        for step in range(1, 2001):  # tensorboardX's queue holds 10 events
            writer.write(step, {"loss": 1.0 / step, "grad_norm": 0.5, "lr": 1e-3},
                         prefix="train/")

    error = run_bounded(write_many, timeout=60)
    assert_one_line_disk_full(error, str(tmp_path / "tensorboard"))


def test_metrics_jsonl_on_a_full_disk_names_the_file(tmp_path, dev_full):
    dev_full(tmp_path / "metrics.jsonl")
    error = run_bounded(lambda: MetricWriter(tmp_path).write(1, {"loss": 2.0}), timeout=60)
    assert_one_line_disk_full(error, str(tmp_path / "metrics.jsonl"))


def _events(path: pathlib.Path) -> list[tuple[int, str, float]]:
    """(step, tag, value) of every scalar in a TFRecord event file, CRCs checked."""
    from tensorboardX.proto import event_pb2
    from tensorboardX.record_writer import masked_crc32c

    data, out, i = path.read_bytes(), [], 0
    while i < len(data):
        (n,) = struct.unpack("<Q", data[i:i + 8])
        assert struct.unpack("<I", data[i + 8:i + 12])[0] == masked_crc32c(data[i:i + 8])
        record = data[i + 12:i + 12 + n]
        assert struct.unpack("<I", data[i + 12 + n:i + 16 + n])[0] == masked_crc32c(record)
        event = event_pb2.Event.FromString(record)
        out += [(event.step, v.tag, v.simple_value) for v in event.summary.value]
        i += 16 + n
    return out


def test_tensorboard_events_read_like_tensorboardX_writes_them(tmp_path):
    from tensorboardX import SummaryWriter

    rows = [(1, {"loss": 3.25, "lr": 1e-3}), (2, {"loss": 2.5, "lr": 2e-3}),
            (5, {"loss": float("nan"), "lr": 5e-4})]
    ours = MetricWriter(tmp_path / "ours")
    theirs = SummaryWriter(str(tmp_path / "theirs"))
    for step, values in rows:
        ours.write(step, values, prefix="train/")
        for k, v in values.items():
            if v == v:  # both leave NaN out of TensorBoard
                theirs.add_scalar("train/" + k, v, step)
    ours.close()
    theirs.close()
    (a,) = (tmp_path / "ours" / "tensorboard").iterdir()
    (b,) = (tmp_path / "theirs").iterdir()
    assert _events(a) == _events(b) and len(_events(a)) == 5
    assert [r["step"] for r in read_metrics(tmp_path / "ours")] == [1, 2, 5]


# ---------------------------------------------------------------------------- training
def test_training_with_a_full_tensorboard_disk_stops_with_a_clear_error(tmp_path, dev_full):
    dev_full(tmp_path / "tensorboard")
    config = fault_config(train=dict(steps=40, checkpoint_every=100))
    error = run_bounded(lambda: train(config, tmp_path))
    assert_one_line_disk_full(error, str(tmp_path / "tensorboard"))


@pytest.mark.parametrize("where,size,steps", [("workdir", "3m", 8),
                                              ("tensorboard", "4k", 40)])
def test_training_on_a_full_tmpfs_stops_with_a_clear_error(tmp_path, where, size, steps):
    workdir = tmp_path / "run"
    mount = workdir if where == "workdir" else workdir / "tensorboard"
    config = fault_config(train=dict(steps=steps, checkpoint_every=2 if steps == 8 else 100))
    with tmpfs(mount, size):
        error = run_bounded(lambda: train(config, workdir))
    assert_one_line_disk_full(error, str(workdir))


def test_a_failed_background_checkpoint_save_stops_training(tmp_path, monkeypatch):
    """The commit of checkpoint 2's arrays fails with ENOSPC in orbax's background
    thread: the run must stop with an error naming checkpoint 2 (not log it and train
    on without checkpoints), and no checkpoint 2 may be listed."""
    import orbax.checkpoint as ocp

    handler = ocp.type_handlers.ArrayHandler
    real = handler.serialize
    calls = []

    class FailingCommit:
        def __init__(self, inner):
            self.inner = inner

        def result(self, timeout=None):
            self.inner.result(timeout)
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path))

        def cancel(self):
            return self.inner.cancel()

    async def serialize(self, values, infos, args=None):
        futures = list(await real(self, values, infos, args))
        calls.append(len(values))
        if len(calls) == 1:  # the first checkpoint's train state
            futures[-1] = FailingCommit(futures[-1])
        return futures

    monkeypatch.setattr(handler, "serialize", serialize)
    config = fault_config(train=dict(steps=8, checkpoint_every=2))
    error = run_bounded(lambda: train(config, tmp_path))
    assert_one_line_disk_full(error, "checkpoint 2 could not be written to "
                                     f"{tmp_path / 'checkpoints'}")
    assert calls, "the fault was never injected"
    assert not (tmp_path / "checkpoints" / "2").exists()
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in rows) <= 4  # stopped by the next checkpoint at the latest
