"""Launch scripts, run against stand-ins for gcloud and srun that record their
arguments (the real pod and cluster are not reachable from CI)."""

from __future__ import annotations

import os
import pathlib

import pytest

from . import processes

ROOT = pathlib.Path(__file__).resolve().parents[1]
RECORDER = '#!/bin/bash\nprintf "%s\\n" "$*" >> "$RECORD"\n'


@pytest.fixture
def fake_bin(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("gcloud", "srun"):
        (bin_dir / tool).write_text(RECORDER)
        (bin_dir / tool).chmod(0o755)
    record = tmp_path / "calls.txt"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RECORD": str(record)}

    def run(*cmd, **extra_env):
        result = processes.run(cmd, env={**env, **extra_env}, timeout=60)
        calls = record.read_text().splitlines() if record.exists() else []
        record.unlink(missing_ok=True)
        return result, calls

    return run


def test_tpu_pod_script_runs_one_command_on_every_worker(fake_bin):
    pod = "launch/tpu_pod.sh"
    result, calls = fake_bin(pod, "create", "--name=hj", "--zone=us-east5-a",
                             "--type=v5litepod-16")
    assert result.returncode == 0, result.stderr
    assert calls == ["compute tpus tpu-vm create hj --zone=us-east5-a "
                     "--accelerator-type=v5litepod-16 --version=v2-alpha-tpuv5-lite"]
    result, calls = fake_bin(pod, "install", "--name=hj", "--zone=us-east5-a", "--bucket=b")
    assert result.returncode == 0, result.stderr
    assert calls[0].startswith("compute tpus tpu-vm scp ") and "--worker=all" in calls[0]
    assert "gcsfuse --implicit-dirs b /gcs/b" in calls[1] and "pip install" in calls[1]
    result, calls = fake_bin(pod, "run", "--name=hj", "--zone=us-east5-a", "--",
                             "python", "-m", "hybrid_jax.apps.train", "--workdir=/gcs/b/r")
    assert result.returncode == 0, result.stderr
    assert "--worker=all" in calls[0]
    assert "python -m hybrid_jax.apps.train --workdir=/gcs/b/r" in calls[0]
    result, calls = fake_bin(pod, "run", "--zone=us-east5-a")
    assert result.returncode == 2 and "--name and --zone are required" in result.stderr
    assert calls == []


def test_slurm_script_starts_the_app_with_srun(fake_bin, tmp_path):
    result, calls = fake_bin("launch/slurm.sbatch", "--config=configs/lm.py:size=1b",
                             "--workdir=/shared/r", SLURM_JOB_NUM_NODES="4",
                             SLURM_SUBMIT_DIR=str(ROOT), HJ_VENV=str(tmp_path / "venv"))
    assert result.returncode == 0, result.stderr
    assert calls == [f"--kill-on-bad-exit=1 {tmp_path / 'venv'}/bin/python -m "
                     "hybrid_jax.apps.train --config=configs/lm.py:size=1b --workdir=/shared/r"]


def test_local_script_reports_the_first_failing_process(fake_bin, tmp_path):
    script = tmp_path / "proc.sh"
    script.write_text('#!/bin/bash\necho "process $JAX_PROCESS_ID of $JAX_NUM_PROCESSES"\n'
                      '[[ $JAX_PROCESS_ID == 1 ]] && { sleep 1; exit 3; }\nexec sleep 30\n')
    script.chmod(0o755)
    result, _ = fake_bin("launch/local.sh", "-n", "3", "-l", str(tmp_path / "logs"), "--",
                         str(script))
    assert result.returncode == 3
    assert "process 1 exited with status 3" in result.stderr
    assert (tmp_path / "logs" / "process_2.log").read_text().strip() == "process 2 of 3"
