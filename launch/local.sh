#!/usr/bin/env bash
# Run one hybrid_jax app as a multi-process JAX job on this machine: the stand-in for
# a multi-host launch, started exactly the way the pod and cluster scripts start hosts
# (the same command in every process; JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES /
# JAX_PROCESS_ID tell `jax.distributed.initialize()` who is who).
#
#   launch/local.sh [-n PROCESSES] [-d CPU_DEVICES_PER_PROCESS] [-g] [-p PORT] [-l LOGDIR] \
#       -- python -m hybrid_jax.apps.train --config=configs/lm.py:size=tiny --workdir=runs/mp
#
# Without -g the processes run on CPU, each with -d virtual devices (default 1); with -g
# process i runs on GPU i alone (CUDA_VISIBLE_DEVICES=i).
# Process 0's output goes to the terminal; every process logs to LOGDIR/process_<i>.log.
# If one process fails, the others are stopped and the script exits with its status.
set -euo pipefail

procs=2 devices=1 gpus=0 port=$((20000 + RANDOM % 20000)) logdir=""
while getopts "n:d:gp:l:h" opt; do
  case $opt in
    n) procs=$OPTARG ;;
    d) devices=$OPTARG ;;
    g) gpus=1 ;;
    p) port=$OPTARG ;;
    l) logdir=$OPTARG ;;
    *) sed -n '2,15p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[[ "${1:-}" == "--" ]] && shift
if [[ $# -eq 0 ]]; then
  echo "launch/local.sh: no command given (put it after --)" >&2; exit 2
fi
logdir=${logdir:-$(mktemp -d -t hybrid_jax_local.XXXXXX)}
mkdir -p "$logdir"

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

for ((i = 0; i < procs; i++)); do
  log="$logdir/process_$i.log"
  (
    export JAX_COORDINATOR_ADDRESS="localhost:$port" JAX_NUM_PROCESSES="$procs" JAX_PROCESS_ID="$i"
    if [[ $gpus -eq 1 ]]; then
      export CUDA_VISIBLE_DEVICES=$i
    else
      export JAX_PLATFORMS=cpu
      # A waiting XLA:CPU collective holds a thread per device (see tests/conftest.py).
      export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$devices"
      export NPROC="${NPROC:-$((2 * devices))}"
    fi
    if [[ $i -eq 0 ]]; then exec "$@" > >(tee "$log") 2>&1; else exec "$@" >"$log" 2>&1; fi
  ) &
  pids+=($!)
done
echo "launch/local.sh: $procs processes, coordinator localhost:$port, logs in $logdir" >&2

# Watch the processes as they finish; the first failure stops the rest (they would
# otherwise block in a collective until the coordinator's timeout).
status=0
running=("${!pids[@]}")
while [[ ${#running[@]} -gt 0 ]]; do
  still=()
  for i in "${running[@]}"; do
    if kill -0 "${pids[$i]}" 2>/dev/null; then still+=("$i"); continue; fi
    rc=0
    wait "${pids[$i]}" || rc=$?
    if [[ $rc -ne 0 && $status -eq 0 ]]; then
      echo "launch/local.sh: process $i exited with status $rc (log: $logdir/process_$i.log)" >&2
      status=$rc
      cleanup
    fi
  done
  running=("${still[@]}")
  [[ ${#running[@]} -gt 0 ]] && sleep 0.2
done
trap - EXIT
exit $status
