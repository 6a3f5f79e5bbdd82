#!/usr/bin/env bash
# A Cloud TPU pod slice for hybrid_jax: create it, copy this checkout to every host,
# install, run the same command on every host, tear it down.
#
#   launch/tpu_pod.sh create  --name=hj --zone=us-east5-a --type=v5litepod-16 [--spot]
#   launch/tpu_pod.sh install --name=hj --zone=us-east5-a [--bucket=my-bucket]
#   launch/tpu_pod.sh run     --name=hj --zone=us-east5-a -- \
#       python -m hybrid_jax.apps.train --config=configs/lm.py:arch=hybrid,size=190m \
#       --config.data.sources=jsonl:/gcs/my-bucket/data/*.jsonl --workdir=/gcs/my-bucket/runs/h190
#   launch/tpu_pod.sh ssh     --name=hj --zone=us-east5-a [--worker=0]
#   launch/tpu_pod.sh delete  --name=hj --zone=us-east5-a
#
# Every host runs the same command; `jax.distributed.initialize()` finds the others by
# itself on a pod (hybrid_jax.sharding.initialize_distributed). Checkpoints, metrics and
# exports need one directory that every host sees: `install --bucket=B` mounts gs://B
# at /gcs/B on every host with gcsfuse. Logs of every host go to ~/hybrid_jax/logs/ on
# that host; `run` streams worker 0's output. Needs gcloud with a default project (or
# --project=...).
set -euo pipefail

cmd=${1:-}; shift || true
name="" zone="" type="v5litepod-8" version="" project="" worker="all" bucket="" spot=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --name=*) name=${1#*=} ;;
    --zone=*) zone=${1#*=} ;;
    --type=*) type=${1#*=} ;;
    --version=*) version=${1#*=} ;;
    --project=*) project=${1#*=} ;;
    --worker=*) worker=${1#*=} ;;
    --bucket=*) bucket=${1#*=} ;;
    --spot) spot="--spot" ;;
    --) shift; break ;;
    *) echo "tpu_pod.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[[ -n $name && -n $zone ]] || { sed -n '2,18p' "$0"; echo "tpu_pod.sh: --name and --zone are required" >&2; exit 2; }

# The runtime image follows the TPU generation unless --version says otherwise.
if [[ -z $version ]]; then
  case $type in
    v6e*) version="v2-alpha-tpuv6e" ;;
    v5p*) version="v2-alpha-tpuv5" ;;
    v5litepod*) version="v2-alpha-tpuv5-lite" ;;
    *) version="tpu-ubuntu2204-base" ;;
  esac
fi
gc=(gcloud compute tpus tpu-vm)
where=(--zone="$zone" ${project:+--project="$project"})
on_hosts() { "${gc[@]}" ssh "$name" "${where[@]}" --worker="$worker" --command="$1"; }
repo=$(cd "$(dirname "$0")/.." && pwd)

case $cmd in
  create)
    "${gc[@]}" create "$name" "${where[@]}" --accelerator-type="$type" --version="$version" $spot ;;
  install)
    # The checkout as committed (git archive), the same on every host.
    archive=$(mktemp -t hybrid_jax.XXXXXX.tar.gz)
    git -C "$repo" archive --format=tar.gz -o "$archive" HEAD
    "${gc[@]}" scp "$archive" "$name":~/hybrid_jax.tar.gz "${where[@]}" --worker="$worker"
    rm -f "$archive"
    mount=""
    if [[ -n $bucket ]]; then
      mount="(command -v gcsfuse >/dev/null || { echo 'gcsfuse is not installed on this \
image: install it (cloud.google.com/storage/docs/gcsfuse-install) or mount shared storage \
yourself' >&2; exit 1; }) && sudo mkdir -p /gcs/$bucket && sudo chown \$USER /gcs/$bucket && \
(mountpoint -q /gcs/$bucket || gcsfuse --implicit-dirs $bucket /gcs/$bucket) && "
    fi
    on_hosts "set -e; rm -rf ~/hybrid_jax && mkdir -p ~/hybrid_jax/logs && \
tar -xzf ~/hybrid_jax.tar.gz -C ~/hybrid_jax && cd ~/hybrid_jax && $mount \
python3 -m venv .venv && .venv/bin/pip install --quiet --upgrade pip && \
.venv/bin/pip install --quiet -e '.[tpu,train]'" ;;
  run)
    [[ $# -gt 0 ]] || { echo "tpu_pod.sh run: give the command after --" >&2; exit 2; }
    quoted=$(printf '%q ' "$@")
    on_hosts "cd ~/hybrid_jax && source .venv/bin/activate && \
$quoted 2>&1 | tee logs/\$(hostname).log" ;;
  ssh)
    "${gc[@]}" ssh "$name" "${where[@]}" --worker="${worker/all/0}" ;;
  delete)
    "${gc[@]}" delete "$name" "${where[@]}" --quiet ;;
  *)
    sed -n '2,18p' "$0"; exit 2 ;;
esac
