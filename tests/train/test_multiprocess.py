"""Two processes, started the way `launch/` starts hosts, form one JAX job on CPU; a
single process restores their checkpoint and continues on the same loss curve."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np

from hybrid_jax.train.metrics import read_metrics

from .. import processes
from .conftest import CORPUS, ROOT
from .test_training import final_params, losses

APP = [sys.executable, "-m", "hybrid_jax.apps.train",
       "--config=configs/lm.py:arch=hybrid,size=tiny",
       f"--config.data.sources=jsonl:{CORPUS}/python.jsonl", "--config.data.tokenizer=bytes",
       "--config.data.seq_len=64", "--config.data.shards=2", "--config.train.batch_size=8",
       "--config.train.steps=8", "--config.train.warmup_steps=2",
       "--config.train.checkpoint_every=4", "--config.train.log_every=1",
       "--config.eval.every=0", "--config.eval.tagger=none", "--config.eval.max_windows=4"]


def test_two_processes_train_and_one_process_continues(tmp_path):
    two = tmp_path / "two_processes"
    run = processes.run(
        [ROOT / "launch" / "local.sh", "-n", "2", "-l", tmp_path / "logs", "--",
         *APP, f"--workdir={two}"], timeout=380)
    logs = "\n".join(p.read_text()[-3000:] for p in sorted((tmp_path / "logs").glob("*.log")))
    assert run.returncode == 0, f"{run.stderr[-2000:]}\n{logs}"
    assert "process 1 of 2, 1 local / 2 global devices" in logs
    assert sorted(losses(two)) == list(range(1, 9))
    data_files = sorted(p.name for p in (two / "checkpoints" / "4" / "data").glob("shard_*"))
    assert data_files == ["shard_00000-of-00002.json", "shard_00001-of-00002.json"]

    # One process with the same two-device mesh picks up the two processes' step-4
    # checkpoint (parameters, optimizer state, both data shards' positions).
    one = tmp_path / "one_process"
    shutil.copytree(two, one, ignore=shutil.ignore_patterns("8", "final", "summary.json"))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "NPROC": "4"}
    resumed = processes.run([*APP, f"--workdir={one}"], env=env, timeout=380)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from checkpoint 4" in resumed.stderr
    a, b = losses(two), losses(one)
    assert sorted(b) == list(range(1, 9))
    # Steps 5-8 computed again from the restored state: same batches, same updates (a
    # cross-process all-reduce may sum in another order than an in-process one).
    np.testing.assert_allclose([b[s] for s in range(5, 9)], [a[s] for s in range(5, 9)],
                               rtol=1e-6)
    pa, pb = final_params(two), final_params(one)
    for name in pa:
        np.testing.assert_allclose(pb[name], pa[name], rtol=1e-5, atol=1e-7, err_msg=name)
    assert read_metrics(one)[-1]["step"] == 8
