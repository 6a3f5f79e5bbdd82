"""Issue 24, defect 6: training checkpoints carry digests that are checked on restore.

Before: 64 flipped bytes restored silently; an unreadable checkpoint stayed listed, so
orbax skipped every later save at its step (275 is not below 275) and each rerun fell
back again; the NaN error called whatever was restored "the last good" checkpoint.
Now a changed checkpoint is reported, moved to `checkpoints.corrupt/`, the run resumes
bit for bit from the previous one and writes the step again; the NaN error calls a
checkpoint good only when its digests were verified.
"""

from __future__ import annotations

import json
import shutil

import pytest

from hybrid_jax.train.loop import NonFiniteLossError, train
from hybrid_jax.train.metrics import read_metrics

from ..nan_loss import poison_loss_at
from .train_fixtures import fault_config


def losses(workdir) -> dict[int, float]:
    return {r["step"]: r["train/loss"] for r in read_metrics(workdir) if "train/loss" in r}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 4-step run with checkpoints 2 and 4 (copied for each test)."""
    workdir = tmp_path_factory.mktemp("trained")
    train(fault_config(), workdir)
    return workdir


@pytest.fixture
def run(trained, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    shutil.rmtree(workdir / "final")  # so that the resumed run exports its own
    return workdir


def digests_hold(step_dir) -> bool:
    from hybrid_jax.digests import manifest_problems, read_manifest

    if not (step_dir / "digests.json").is_file():
        return False
    return not manifest_problems(step_dir, read_manifest(step_dir / "digests.json"))


def test_flipped_bytes_are_caught_and_the_run_falls_back_exactly(run, trained, caplog):
    ckpt4 = run / "checkpoints" / "4"
    biggest = max((p for p in (ckpt4 / "state").rglob("*") if p.is_file()),
                  key=lambda p: p.stat().st_size)
    data = bytearray(biggest.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(b ^ 0xFF for b in data[mid:mid + 64])
    biggest.write_bytes(bytes(data))
    with caplog.at_level("INFO", logger="hybrid_jax.train"):
        train(fault_config(), run)  # the same 4 steps (the lr schedule depends on them)
    rel = biggest.relative_to(ckpt4).as_posix()
    assert "checkpoint 4" in caplog.text and "is corrupt" in caplog.text, caplog.text
    assert f"{rel}: sha256 differs" in caplog.text
    assert "resumed from checkpoint 2" in caplog.text
    assert (run / "checkpoints.corrupt" / "4" / rel).is_file()  # kept for inspection
    # Resumed from 2 on the same data and state: steps 3 and 4 again, bit for bit.
    before, after = losses(trained), losses(run)
    assert sorted(after) == [1, 2, 3, 4]
    assert [after[s] for s in (3, 4)] == [before[s] for s in (3, 4)]
    # Step 4 was written again (orbax no longer lists the corrupt one) and verifies.
    assert digests_hold(ckpt4)


def test_an_unreadable_checkpoint_is_written_again_and_not_retried(run, caplog):
    ckpt4 = run / "checkpoints" / "4"
    (ckpt4 / "digests.json").unlink(missing_ok=True)  # as a checkpoint of older code
    for f in (ckpt4 / "state").rglob("manifest.ocdbt"):
        f.write_bytes(b"\0" * 16)
    config = fault_config()
    with caplog.at_level("INFO", logger="hybrid_jax.train"):
        train(config, run)
    assert "checkpoint 4" in caplog.text and "cannot be restored" in caplog.text
    assert sorted(losses(run)) == [1, 2, 3, 4]
    caplog.clear()
    with caplog.at_level("INFO", logger="hybrid_jax.train"):
        train(config, run)  # nothing left to do: resumes from the rewritten step 4
    assert "cannot be restored" not in caplog.text, caplog.text
    assert "resumed from checkpoint 4" in caplog.text and "digests verified" in caplog.text
    assert digests_hold(ckpt4)  # saved again after the fallback


def test_the_nan_error_does_not_call_an_unverified_checkpoint_good(run, monkeypatch):
    (run / "checkpoints" / "4" / "digests.json").unlink(missing_ok=True)  # as older code
    poison_loss_at(monkeypatch, 6)
    with pytest.raises(NonFiniteLossError, match="at step 6") as info:
        train(fault_config(train=dict(steps=8)), run)
    message = str(info.value)
    assert "good" not in message and "step 4" in message and "not verified" in message, message


def test_an_intact_checkpoint_that_does_not_fit_the_run_is_left_in_place(run):
    """A changed config (here data.shards) is not corruption: stop and say so, and
    leave every checkpoint where it is."""
    from hybrid_jax.train.checkpoints import CheckpointRestoreError

    with pytest.raises(CheckpointRestoreError, match=r"checkpoint 4 .* is intact") as info:
        train(fault_config(data=dict(shards=2)), run)
    assert "shards" in str(info.value)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["2", "4"]
    assert not (run / "checkpoints.corrupt").exists()
    assert json.loads((run / "checkpoints" / "4" / "digests.json").read_text())["step"] == 4
