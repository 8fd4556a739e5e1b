#!/usr/bin/env bash
# scripts/qat_smollm2.sh — QAT of SmolLM2-135M-Instruct on WikiText-2 (docs/qat.md).
# Usage: scripts/qat_smollm2.sh WORKDIR RUN...   (RUN: plain | Q4_0 | Q4_K_M | Q3_K_M | Q2_K)
# WORKDIR holds smol-f32.gguf (edgetune quantize of the Q4_1 file to F32,
# --allow-requantize) and wt_train.h5 (the first 60% of the lines of
# wiki.test.raw: `edgetune data --separator line --pack --seq-len 256
# --valid-fraction 0.03`); the last 40% (wt_test.txt) is held out for eval.
# Each run: THREADS threads (default 2), batch 4 x 128 tokens, STEPS steps
# (default 40), lr LR (default 5e-5) cosine to LR/10, warmup 5; "plain" is the
# same fine-tune without
# QAT (the control: fine-tune, then PTQ).  Ctrl-C / SIGINT stops a run after a
# checkpoint with its model written.
set -euo pipefail
W=${EDGETUNE:-$(dirname "$0")/../edgetune}
D=$1; shift
STEPS=${STEPS:-40}
LR=${LR:-5e-5}
TH=${THREADS:-2}
cd "$D"
for run in "$@"; do
  qat=()
  [ "$run" != plain ] && qat=(--qat "$run")
  "$W" train --model smol-f32.gguf --data wt_train.h5 --out "smol_$run" "${qat[@]}" --steps "$STEPS" \
    --batch-size 4 --seq-len 128 --lr "$LR" --min-lr "$(python3 -c "print($LR/10)")" --warmup 5 --weight-decay 0 \
    --threads "$TH" --eval-every 20 --eval-batches 4 --ckpt-every 10 --log-every 5 --metrics "smol_$run.jsonl" \
    > "smol_$run.log" 2>&1 || echo "run $run: exit $?" >> "smol_$run.log"
done
