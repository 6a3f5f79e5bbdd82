#!/usr/bin/env bash
# The GPU benchmarks behind docs/performance.md (and the README's headline table), one stage at a time
# (so that one stage fits one sitting on a lent GPU), results as JSON in OUTDIR.
#
#   benchmarks/run_gpu.sh OUTDIR STAGE...
#
# Stages:
#   compile    compile seconds of the 7B scorers at depths 4 / 8 / 16 (abstract params)
#   gdn        GDN kernels vs fla vs cuDNN attention, T = 2k..16k, plus a per-kernel breakdown
#   attention  Pallas attention (Mosaic and Triton forwards) vs cuDNN vs XLA, T = 4k..32k,
#              windows and segments
#   scoring    7B scoring, hybrid_jax vs transformers, both release shapes, one and two
#              8192-token windows per call (and one with the segment ids kept), the
#              ratio table, and the hybrid_jax scorers' device-time profiles
#   train      training tokens/s and MFU, 60M..1B presets, the three architectures
#   train_remat  the same for 370M and 1B with each block rematerialised
#   gdn_release  GDN at the Olmo Hybrid 7B head shape (30 heads, K 96, V 192), T = 8192,
#                Pallas (V padded to 192, the default) vs pad_v=0 (to 256) vs fla
#   gdn_wy       GDN with the WY inverse on sub-blocks (wy_block=16 / 32) vs the default
#                and fla: B4 T4096 H32 D128 (with the per-kernel breakdowns, ours and
#                fla's) and the release heads at B1 (the scorer's shape; plus V-block 32)
#   blocks       each block type of the two 7B shapes timed alone at T = 8192 (block, mixer,
#                MLP, kernel; attention with and without segment ids), summed over
#                the layer pattern beside the scorer's window time
#   loss_chunk   1B transformer training step, full logits vs 256-position pieces
#   gpu_tests    the kernel tests on the compiled kernels (GDN and attention, Triton and Mosaic)
#   gdn_qla      issue 23's peer table: ours (pallas, pallas_fused) vs fla Triton vs FlashQLA
#                at B4 T4096 and B2 T8192 (H32 K=V=128), fwd and fwd+bwd, after a
#                cross-check of each against the float32 recurrence at B2 T1024 H4. Sized
#                for one 600 s call: TileLang compiles FlashQLA's kernels on first use
#                (about 3 minutes for forward and backward on 2026-12-07)
#   gdn_qla_more the rest of issue 23's kernel measurements: the cross-check at B1 T4096 H4
#                (where FlashQLA may split the sequence over SMs, its intra-card CP), the
#                per-kernel breakdown and fused sweeps at H32, then the release heads
#                (H30 K96 V192) at B1 T8192, ours vs fla Triton (FlashQLA takes K = V =
#                128 only), with a fused sweep
#   gpu_tests_head_dims  the compiled attention kernels at the ladder's padded head dims
#                (48 / 80 / 96: Triton fwd+bwd, Mosaic fwd), the 60M train step's lowering
#                (flash kernels, no [T, T] array) and GDN at the 60M heads (K 36, V 72)
#   fused_e2e  issue 23's end-to-end targets: the Olmo Hybrid 7B scorer with and without
#              the fused GDN forward (gdn_impl pallas / pallas_unfused, one process) and the
#              Olmo 3 7B scorer, 8192-token windows; the 370M hybrid training step with the
#              fused forward under differentiation or not (pallas_fused / pallas) and the
#              370M transformer
#   gdn_split  intra-sequence parallelism (`kernels/gdn/split.py`): one long sequence with
#              few heads (B1 T32768 H4 and H8, K=V=128), pallas vs pallas@2/4/8/16 (each
#              sequence cut into that many pieces) vs fla Triton and FlashQLA (which
#              splits a sequence over SMs itself), after a cross-check of each
#   train_small  issue 22's small presets: the 60M transformer / hybrid / recurrent at
#                T=1024 B=64, and the transformer at the old shape T=4096 B=4
# On a lent GPU machine, first: eval "$(launch/gpu_carry.sh unpack)" (fla, FlashQLA).
# Set PYTHON to choose the interpreter (default python3); fla must be importable for
# the gdn stages (FLA_FLASH_QLA=0 is set here; gdn_qla switches it per call), the
# FlashQLA bundle (../shared/tools/flashqla_bundle.sh, unpacked on PYTHONPATH) for
# gdn_qla's FlashQLA rows, transformers for the scoring stage.
set -euo pipefail

if [[ $# -lt 2 ]]; then awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 2; fi
out=$1; shift
for stage in "$@"; do
  case $stage in
    compile|gdn|attention|scoring|train|train_remat|gdn_release|gdn_wy|blocks|loss_chunk|gpu_tests) ;;
    gdn_qla|gdn_qla_more|gdn_split|train_small|gpu_tests_head_dims|fused_e2e) ;;
    *) echo "run_gpu.sh: unknown stage '$stage' (see the list at the top)" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
py=${PYTHON:-python3}
here=$(cd "$(dirname "$0")" && pwd)
export FLA_FLASH_QLA=0 PYTHONUNBUFFERED=1

for stage in "$@"; do
  echo "=== $stage ($(date -u +%FT%TZ))"
  case $stage in
    compile)
      "$py" "$here/compile_time.py" --models=olmo3_7b,olmo_hybrid_7b --layers=4,8,16 \
        --timeout_s=300 --out="$out/compile_score.json" ;;
    gdn)
      "$py" "$here/gdn.py" --breakdown=' ' --out="$out/gdn.json" ;;
    attention)
      "$py" "$here/attention.py" --out="$out/attention.json" ;;
    scoring)
      for model in olmo3_7b olmo_hybrid_7b; do
        for impl in jax hf; do
          profile=$([[ $impl == jax ]] && echo --profile || true)
          "$py" "$here/scoring.py" --impl=$impl --model=$model --batch=1,2 $profile \
            --out="$out/scoring_${impl}_${model}.json" || echo "scoring $impl $model failed"
          if [[ $impl == jax ]]; then  # the same windows with their segment ids kept
            "$py" "$here/scoring.py" --impl=jax --model=$model --segments=given \
              --out="$out/scoring_jax_given_${model}.json" || echo "scoring given $model failed"
          fi
        done
      done
      "$py" "$here/scoring.py" --report "$out"/scoring_*.json ;;
    train)
      "$py" "$here/train_throughput.py" --out="$out/train_throughput.json" ;;
    train_remat)
      "$py" "$here/train_throughput.py" --sizes=370m,1b --remat \
        --out="$out/train_throughput_remat.json" ;;
    gdn_release)
      "$py" "$here/gdn.py" --heads=30 --head_dim=96 --value_dim=192 --tokens=16384 \
        --seq_lens=8192 --impls=pallas,fla --sweep=' ;pad_v=0' \
        --out="$out/gdn_release.json" ;;
    gdn_wy)
      "$py" "$here/gdn.py" --impls=pallas,fla --seq_lens=4096 \
        --sweep=' ;wy_block=16;wy_block=32' --breakdown=' ;wy_block=16' \
        --out="$out/gdn_wy.json"
      # the scorer's shape: B1, 30 heads x 3 V-blocks = 90 programs for 132 SMs at the
      # default V-block 64; 32-wide blocks double the programs
      "$py" "$here/gdn.py" --heads=30 --head_dim=96 --value_dim=192 --tokens=4096 \
        --seq_lens=8192 --impls=pallas,fla \
        --sweep=' ;wy_block=16;block_v=32;block_v=32,num_warps_state=4;wy_block=16,block_v=32' \
        --out="$out/gdn_wy_release.json" ;;
    blocks)
      # window times: benchmarks/results/h100_scoring_jax_*.json (one window per call)
      "$py" "$here/block_time.py" --window_ms=olmo3_7b=203.5,olmo_hybrid_7b=213.1 \
        --out="$out/block_time.json" ;;
    loss_chunk)
      for chunk in 0 256; do
        "$py" "$here/train_throughput.py" --archs=transformer --sizes=1b \
          --loss_chunk=$chunk --out="$out/train_loss_chunk_$chunk.json"
      done ;;
    gdn_qla)
      "$py" "$here/gdn.py" --impls=pallas,pallas_fused,fla,flashqla --heads=32 \
        --head_dim=128 --tokens=16384 --seq_lens=4096,8192 --check='2,1024,4' \
        --out="$out/gdn_qla.json" ;;
    gdn_qla_more)
      "$py" "$here/gdn.py" --impls=pallas,pallas_fused,fla,flashqla --heads=32 \
        --head_dim=128 --tokens=16384 --seq_lens= --check='1,4096,4' --breakdown=' ' \
        --sweep=' ;fused_fwd=0;block_v_fused=32;fused_save=1;fused_save=1,block_v_state_bwd=64' \
        --out="$out/gdn_qla_more.json"
      "$py" "$here/gdn.py" --impls=pallas,pallas_fused,fla --heads=30 --head_dim=96 \
        --value_dim=192 --tokens=8192 --seq_lens=8192 --check='1,2048,4' \
        --sweep_seq_len=8192 --sweep=' ;fused_fwd=0;block_v_fused=64;num_warps_fused=8;fused_save=1' \
        --out="$out/gdn_qla_release.json" ;;
    gdn_split)
      for h in 4 8; do
        "$py" "$here/gdn.py" --impls=pallas,pallas@2,pallas@4,pallas@8,pallas@16,fla,flashqla \
          --heads=$h --head_dim=128 --tokens=32768 --seq_lens=32768 --check='1,2048,2' \
          --out="$out/gdn_split_h$h.json"
      done ;;
    fused_e2e)
      "$py" "$here/scoring.py" --impl=jax --model=olmo3_7b --batch=1 \
        --out="$out/scoring_e2e_olmo3_7b.json" || echo "scoring olmo3_7b failed"
      "$py" "$here/scoring.py" --impl=jax --model=olmo_hybrid_7b --batch=1 --profile \
        --gdn_impl=pallas,pallas_unfused --out="$out/scoring_e2e_olmo_hybrid_7b.json" \
        || echo "scoring hybrid failed"
      for gdn in pallas pallas_fused; do
        "$py" "$here/train_throughput.py" --sizes=370m --archs=hybrid --gdn_impl=$gdn \
          --timeout_s=240 --out="$out/train_e2e_370m_hybrid_$gdn.json"
      done
      "$py" "$here/train_throughput.py" --sizes=370m --archs=transformer --timeout_s=240 \
        --out="$out/train_e2e_370m_transformer.json" ;;
    train_small)
      "$py" "$here/train_throughput.py" --sizes=60m --seq_len=1024 --batch=64 \
        --timeout_s=240 --out="$out/train_60m_t1024_b64.json"
      "$py" "$here/train_throughput.py" --sizes=60m --archs=transformer --seq_len=4096 \
        --batch=4 --timeout_s=240 --out="$out/train_60m_transformer_t4096_b4.json" ;;
    gpu_tests_head_dims)
      (cd "$here/.." && "$py" -m pytest -q -p no:cacheprovider -o addopts="" -rA \
        -k "gpu or 60m" tests/kernels/test_attention_head_dims.py \
        "tests/kernels/test_gdn_pallas.py::test_gpu_realistic[bfloat16-36-72-True]") \
        | tee "$out/gpu_tests_head_dims.txt" ;;
    gpu_tests)
      # TPU-kernel and splash cases run in interpret mode anywhere: CI covers them.
      (cd "$here/.." && "$py" -m pytest -q -p no:cacheprovider -o addopts="" \
        -k "not tpu and not splash" tests/kernels/test_gdn_pallas.py tests/kernels/test_attention_pallas.py \
        tests/kernels/test_attention_mosaic.py tests/kernels/test_attention.py) \
        | tee "$out/gpu_tests.txt" ;;
  esac
done
