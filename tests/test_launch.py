"""Launch scripts, run against stand-ins for gcloud and srun that record their
arguments (the real pod and cluster are not reachable from CI)."""

from __future__ import annotations

import os
import pathlib
import shlex
import subprocess
import sys
import tarfile
import zipfile

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


def _wheel(path: pathlib.Path, package: str) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{package}/__init__.py", f"NAME = {package!r}\n")


def test_gpu_carry_unpacks_what_travels_and_puts_it_on_the_path(tmp_path):
    # launch/gpu_carry.sh unpack, as on the GPU machine: stand-ins for the fla wheels, the
    # FlashQLA bundle and a pure-Python wheel, each importable after the printed exports.
    repo = tmp_path / "repo"
    for d in (".fla", ".qla", ".whl", "src/qla_pkg"):
        (repo / d).mkdir(parents=True)
    _wheel(repo / ".fla" / "fla_stand_in-0.6.0-py3-none-any.whl", "fla_stand_in")
    _wheel(repo / ".whl" / "whl_stand_in-1.0-py3-none-any.whl", "whl_stand_in")
    (repo / "src/qla_pkg/__init__.py").write_text("NAME = 'qla_pkg'\n")
    with tarfile.open(repo / ".qla" / "site.tar.xz", "w:xz") as t:
        t.add(repo / "src/qla_pkg", arcname="qla_pkg")
    script = ROOT / "launch" / "gpu_carry.sh"
    carry = tmp_path / "carry"
    env = {**os.environ, "CARRY_DIR": str(carry), "PYTHONPATH": "", "PYTHON": sys.executable}
    for _ in range(2):  # the second call reuses what the first unpacked
        result = processes.run([script, "unpack"], env=env, cwd=repo, timeout=60)
        assert result.returncode == 0, result.stderr
        exports = result.stdout.strip()
        assert exports.startswith("export PYTHONPATH=") and "FLA_FLASH_QLA=0" in exports
    probe = ("import fla_stand_in, qla_pkg, whl_stand_in; "
             "print(fla_stand_in.NAME, qla_pkg.NAME, whl_stand_in.NAME)")
    check = subprocess.run(
        ["bash", "-c", f"{exports}; {shlex.quote(sys.executable)} -c {shlex.quote(probe)}"],
        cwd=repo, capture_output=True, text=True, timeout=60)
    assert check.stdout.split() == ["fla_stand_in", "qla_pkg", "whl_stand_in"], check.stderr
    # A truncated bundle ends in one line naming it, not a half-unpacked path.
    data = (repo / ".qla" / "site.tar.xz").read_bytes()
    (repo / ".qla" / "site.tar.xz").write_bytes(data[: len(data) // 2])
    result = processes.run([script, "unpack"], env={**env, "CARRY_DIR": str(tmp_path / "c2")},
                           cwd=repo, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "gpu_carry.sh: .qla/site.tar.xz did not unpack (truncated copy?)")
    wheel = repo / ".fla" / "fla_stand_in-0.6.0-py3-none-any.whl"
    wheel.write_bytes(wheel.read_bytes()[:20])
    result = processes.run([script, "unpack"], env={**env, "CARRY_DIR": str(tmp_path / "c3")},
                           cwd=repo, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"gpu_carry.sh: {wheel.relative_to(repo)} did not unpack (truncated copy?)"]
    bad = processes.run([script, "build", "nonsense"], env=env, cwd=repo, timeout=60)
    assert bad.returncode == 2
    assert "build takes study, corpus, fla or qla, got 'nonsense'" in bad.stderr
