#!/usr/bin/env bash
# The Python packages a lent GPU machine lacks, carried in ignored folders of the checkout.
#
#   launch/gpu_carry.sh build [study|corpus|fla|qla]...   here (package index needed),
#       from the repository root; default all four:
#         study  .whl/    ml_collections and absl-py wheels (launch/study_gpu.sh reads them)
#         corpus .shared/corpus/  a copy of ../shared/data/corpus (configs/study_gpu.py)
#         fla    .fla/    flash-linear-attention wheels from ../shared/wheels (benchmarks/gdn.py)
#         qla    .qla/    the FlashQLA bundle, ../shared/tools/flashqla_bundle.sh (44 MB)
#       Then name the folders in the device call's carry (.qla fills most of its 64 MiB).
#   eval "$(launch/gpu_carry.sh unpack)"   there, from the repository root: unpacks .fla
#       and .qla under $CARRY_DIR (default /tmp/carry; kept, so a warm machine reuses it)
#       and prints the exports that put them, the repository and .whl's pure-Python
#       wheels on PYTHONPATH (fla's Triton path: FLA_FLASH_QLA=0).
set -euo pipefail

cmd=${1:-}
[[ -n $cmd ]] && shift
case $cmd in
  build)
    shared=${SHARED:-../shared}
    parts=("$@")
    [[ ${#parts[@]} -gt 0 ]] || parts=(study corpus fla qla)
    for part in "${parts[@]}"; do
      case $part in
        study)
          mkdir -p .whl
          "${PYTHON:-python3}" -m pip download --quiet --only-binary=:all: --no-deps \
            --python-version 3.12 --implementation cp --abi cp312 \
            --platform manylinux2014_x86_64 -d .whl ml_collections absl-py ;;
        corpus)
          rm -rf .shared/corpus && mkdir -p .shared
          cp -r "$shared/data/corpus" .shared/corpus ;;
        fla)
          mkdir -p .fla
          cp "$shared"/wheels/*.whl .fla/ ;;
        qla)
          bash "$shared/tools/flashqla_bundle.sh" .qla/site.tar.xz ;;
        *) echo "gpu_carry.sh: build takes study, corpus, fla or qla, got '$part'" >&2; exit 2 ;;
      esac
      echo "gpu_carry.sh: built $part" >&2
    done
    du -sh .whl .shared .fla .qla 1>&2 2>/dev/null || true ;;
  unpack)
    dir=${CARRY_DIR:-/tmp/carry}
    path=$PWD
    if compgen -G ".fla/*.whl" > /dev/null; then
      if [[ ! -e $dir/fla/.done ]]; then
        mkdir -p "$dir/fla"
        for w in .fla/*.whl; do
          "${PYTHON:-python3}" -m zipfile -e "$w" "$dir/fla" 2>/dev/null || {
            echo "gpu_carry.sh: $w did not unpack (truncated copy?)" >&2; exit 1; }
        done
        touch "$dir/fla/.done"
      fi
      path="$path:$dir/fla"
    fi
    if [[ -f .qla/site.tar.xz ]]; then
      if [[ ! -e $dir/qla/.done ]]; then
        mkdir -p "$dir/qla"
        tar -xJf .qla/site.tar.xz -C "$dir/qla" || {
          echo "gpu_carry.sh: .qla/site.tar.xz did not unpack (truncated copy?)" >&2; exit 1; }
        touch "$dir/qla/.done"
      fi
      path="$path:$dir/qla"
    fi
    for w in .whl/*-none-any.whl; do [[ -e $w ]] && path="$path:$PWD/$w"; done
    printf 'export PYTHONPATH=%q FLA_FLASH_QLA=0 PYTHONUNBUFFERED=1\n' \
      "$path${PYTHONPATH:+:$PYTHONPATH}" ;;
  *)
    awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"
    exit 2 ;;
esac
