#!/usr/bin/env bash
# The GPU study (configs/study_gpu.py): the architectures in one or more lent-GPU calls, and the merge.
#
#   OUT=/path launch/study_gpu.sh ARCH...   on the GPU machine, from the repository root:
#       prepare (or reuse a warm machine's prepare after re-verifying its digests), then
#       for each ARCH in turn: train, score its exports and probes. Leaves in $OUT/ARCH/
#       the tables and records (results.tgz.part-NN, 15 MiB pieces) and summary.txt, in
#       $OUT/call.log the whole log, and, when time is left, throughput.json
#       (benchmarks/train_throughput.py at the training shape). Several ARCHs share the
#       call's time: each trains for at most its share of what is left (an architecture
#       that finishes early leaves its time to the next).
#   OUT=/path launch/study_gpu.sh bench ARCH...   on the GPU machine: only
#       benchmarks/train_throughput.py at the training shape, into $OUT/throughput.json
#       (for benchmarks/study_result.py --throughput: training tokens/s over the benchmark's)
#   launch/study_gpu.sh merge DIR...        here: unpack the returned DIRs into $WORKDIR,
#       then: hybrid-jax-study --stage=analyze --config=configs/study_gpu.py --workdir=$WORKDIR
#
# Environment: WORKDIR (runs/study_gpu), PYTHON (python3), CONFIG (configs/study_gpu.py),
# FLAGS (extra flags for every stage, e.g. --config.train.learning_rate=1e-3),
# CALL_BUDGET_S (570: the call's wall-clock budget from this script's start; the lent
# machine stops a command at 600 s), RESERVE_S (45: kept after training for scoring and
# packing, per architecture: scoring compiles once per architecture; on 2026-12-07, when
# every export still compiled its own scorer, each took 10-18 s, nearly all compiling),
# BENCH (1: run train_throughput.py when 100 s are left), BENCH_ARCHS (the architectures it
# measures, comma-separated; default the call's ARCHs).
# Missing Python modules come from ./.whl: pure-Python wheels go on PYTHONPATH, the others
# are installed from there with pip --no-index into $WORKDIR/.site. The shared corpus is
# read from ./.shared/corpus when that folder exists (a copy of ../shared/data/corpus).
set -uo pipefail

t_start=$(date +%s)
workdir=${WORKDIR:-runs/study_gpu}
py=${PYTHON:-python3}
config=${CONFIG:-configs/study_gpu.py}
read -r -a flags <<< "${FLAGS:-}"
budget=${CALL_BUDGET_S:-570}
reserve=${RESERVE_S:-45}

if [[ $# -lt 1 ]]; then awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 2; fi

if [[ $1 == merge ]]; then
  shift
  mkdir -p "$workdir"
  for dir in "$@"; do
    parts=("$dir"/results.tgz.part-*)
    [[ -e ${parts[0]} ]] || { echo "study_gpu.sh: no results.tgz.part-* in $dir" >&2; exit 2; }
    cat "${parts[@]}" | tar -xzf - -C "$workdir" || exit 1
    echo "unpacked $dir into $workdir"
  done
  exit 0
fi

bench_only=0
if [[ $1 == bench ]]; then bench_only=1; shift; fi
archs=("$@")
[[ ${#archs[@]} -gt 0 ]] || { echo "study_gpu.sh: name at least one ARCH" >&2; exit 2; }
for arch in "${archs[@]}"; do
  case $arch in
    transformer|hybrid|recurrent) ;;
    *) echo "study_gpu.sh: ARCH must be transformer, hybrid or recurrent (or merge), got '$arch'" >&2
       exit 2 ;;
  esac
done
: "${OUT:?set OUT to the folder whose files come back}"
mkdir -p "$OUT" "$workdir"
exec > >(tee -a "$OUT/call.log") 2>&1
left() { local n=$((budget - ($(date +%s) - t_start))); echo $((n > 1 ? n : 1)); }
stamp() { echo "=== $* (t=$(($(date +%s) - t_start)) s)"; }

# ------------------------------------------------------------------ environment
# TQDM_MININTERVAL: progress bars every 20 s, not ten times a second, in call.log
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_MININTERVAL=20
need=(absl ml_collections sentencepiece pandas pyarrow tqdm jaxtyping orbax.checkpoint flax
      optax jax)
missing() {
  "$py" -c 'import importlib.util, sys
def absent(name):
    try:
        return importlib.util.find_spec(name) is None
    except ImportError:
        return True
print(" ".join(m for m in sys.argv[1:] if absent(m)))' "$@"
}
if [[ -n $(missing "${need[@]}") && -d .whl ]]; then
  for w in .whl/*-none-any.whl; do [[ -e $w ]] && PYTHONPATH="$PYTHONPATH:$PWD/$w"; done
  binaries=(.whl/*-cp3*.whl)
  if [[ -e ${binaries[0]} ]]; then
    "$py" -m pip install --quiet --no-index --no-deps --target "$workdir/.site" \
      "${binaries[@]}" && PYTHONPATH="$PYTHONPATH:$PWD/$workdir/.site"
  fi
  export PYTHONPATH
fi
still=$(missing "${need[@]}")
if [[ -n $still ]]; then
  echo "study_gpu.sh: missing Python modules: $still. Put their wheels in .whl"
  echo "  (launch/gpu_carry.sh build study makes it for ml_collections and absl), e.g."
  echo "  pip download --only-binary=:all: --no-deps --python-version 3.12 \\"
  echo "    --implementation cp --abi cp312 --platform manylinux2014_x86_64 -d .whl <package>"
  exit 2
fi
stamp "start ${archs[*]} on $(nvidia-smi -L 2>/dev/null | head -1); $(nproc) CPUs"
run_bench() {  # ARCHS (comma-separated)
  stamp "train_throughput.py $1 at the training shape"
  timeout "$(left)" "$py" benchmarks/train_throughput.py --archs="$1" \
    --sizes=60m --seq_len=1024 --batch=64 --vocab_size=32768 --steps=10 \
    --timeout_s="$(left)" --out="$OUT/throughput.json"
}
if [[ $bench_only == 1 ]]; then
  run_bench "$(IFS=,; echo "${archs[*]}")"; rc=$?
  stamp "done"
  exit "$rc"
fi
study=("$py" -m hybrid_jax.apps.study --config="$config" --workdir="$workdir" "${flags[@]}")

# ------------------------------------------------------------------ results
pack_results() {  # ARCH
  local arch=$1 res="$OUT/$1" files=() f d
  stamp "packing $arch"
  mkdir -p "$res"
  for f in prepare.json pack/pack.json pack/docs.jsonl data/corpus/manifest.json \
           data/train/manifest.json "$arch/study_train.json" "$arch/metrics.jsonl" \
           "$arch/summary.json" "$arch/config.json" "probes/$arch.parquet" \
           "probes/$arch.json"; do
    [[ -e $workdir/$f ]] && files+=("$f")
  done
  for d in "$workdir"/scores/"$arch"@*; do [[ -d $d ]] && files+=("scores/${d##*/}"); done
  rm -f "$res"/results.tgz.part-*
  [[ ${#files[@]} -gt 0 ]] && tar -czf - -C "$workdir" "${files[@]}" \
    | split -b 15m -d - "$res/results.tgz.part-"
  "$py" -m hybrid_jax.study.summary "$workdir" "$arch" > "$res/summary.txt" 2>&1
  ls -l "$res"
}
started=()
pack_started() { local a; for a in "${started[@]}"; do pack_results "$a"; done; }
trap pack_started EXIT

# ------------------------------------------------------------------ prepare, train, score
[[ -d .shared/corpus ]] && stamp "shared corpus: .shared/corpus"
stamp "prepare"
timeout "$(left)" "${study[@]}" --stage=prepare || { echo "prepare failed or ran out of time"; exit 1; }
status=0
for i in "${!archs[@]}"; do
  arch=${archs[$i]}
  started+=("$arch")
  n_left=$(( ${#archs[@]} - i ))
  share=$(( ($(left) - n_left * reserve) / n_left ))
  stamp "train $arch (at most ${share} s)"
  timeout "$(( share > 1 ? share : 1 ))" "${study[@]}" --stage=train --arch="$arch"
  rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "train $arch stopped (exit $rc; 124: out of its share of this call's time)."
    echo "Repeating this command while the machine is warm resumes it from its last"
    echo "checkpoint. Scoring the annealed exports written so far."
    exports=$(ls -d "$workdir/$arch"/anneal_* 2>/dev/null | paste -sd, -)
    [[ -n $exports ]] && timeout "$(left)" "${study[@]}" --stage=score --exports="$exports"
    status=$rc
    continue
  fi
  stamp "score $arch"
  timeout "$(left)" "${study[@]}" --stage=score --arch="$arch" \
    || { echo "score $arch failed or ran out of time"; status=1; }
done
trap - EXIT
pack_started

# ------------------------------------------------------------------ the baseline, if time is left
if [[ ${BENCH:-1} == 1 && $(left) -gt 100 ]]; then
  run_bench "${BENCH_ARCHS:-$(IFS=,; echo "${archs[*]}")}"
fi
stamp "done"
exit "$status"
