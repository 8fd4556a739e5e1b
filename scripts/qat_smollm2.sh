#!/usr/bin/env bash
# scripts/qat_smollm2.sh — QAT of SmolLM2-135M-Instruct against imatrix PTQ (docs/qat.md, issue 15 §4).
# Usage: scripts/qat_smollm2.sh WORKDIR RUN...
#   RUN: d_TYPE = QAT + distillation (`edgetune distill --qat TYPE`, the F32 model as teacher and as
#        student, online teacher, alpha 1: the loss is KL(teacher || student) only);
#        c_TYPE = QAT from the F32 model with the ordinary loss (`edgetune train --qat TYPE`).
# WORKDIR gets smol-f32.gguf (SMOL_F32, or the Q4_1 file dequantized), wiki-test-head.txt (the first
# 40,000 bytes of wiki.test.raw: the evaluation text of scripts/ptq_baseline.sh) and wt_train.h5
# (wiki.test.raw from the first article that starts after byte 40,000, i.e. byte 42,485, to the end:
# disjoint from the evaluation text; ../shared has no WikiText-2 train split), packed in rows of 129
# tokens, 2% of the lines for validation.
# RUN may end in -SUFFIX (d_Q4_0-im: another run of the same type).  Env: STEPS, LR, MIN_LR, BATCH, TH, QAT_IMATRIX.
# Each run: batch BATCH (4) x 128, STEPS steps (default 50), AdamW lr LR (5e-5) cosine to MIN_LR (5e-6), 5 warmup, bf16
# GEMMs, TH threads (default 2); then `edgetune eval --task kl` of its model-TYPE.gguf on the
# evaluation text (--scoring llama --ctx 512 --kv-type F16, top-64 reference: as ptq_baseline.sh,
# so the PTQ rows of docs/eval_reports/ptq/ compare directly), JSON in WORKDIR/json.
set -euo pipefail
W=${EDGETUNE:-$(cd "$(dirname "$0")/.." && pwd)/edgetune}
S=$(cd "$(dirname "$0")/../../shared" && pwd)
D=$1; shift
STEPS=${STEPS:-50}
TH=${TH:-2}
LR=${LR:-5e-5}
MIN_LR=${MIN_LR:-5e-6}
BATCH=${BATCH:-4}
# QAT_IMATRIX=F: train on `quantize --imatrix F`'s grid (--qat-imatrix), so QAT starts from imatrix PTQ;
# F as a path relative to WORKDIR (it is written into the exported file's quantize.imatrix.file).
IM=()
[ -n "${QAT_IMATRIX:-}" ] && IM=(--qat-imatrix "$QAT_IMATRIX")
mkdir -p "$D/json"; cd "$D"
[ -f smol-f32.gguf ] || "$W" quantize "${SMOL:-$HOME/.cache/edgetune/SmolLM2-135M-Instruct.Q4_1.gguf}" smol-f32.gguf \
    --type F32 --allow-requantize --quiet
if [ ! -f wt_train.h5 ]; then
  head -c 40000 "$S/data/wikitext2/wiki.test.raw" > wiki-test-head.txt
  python3 - "$S/data/wikitext2/wiki.test.raw" <<'PY'
import re, sys
raw = open(sys.argv[1], 'rb').read()
p = [m.start() for m in re.finditer(rb'\n = [^=\r\n]+ = \r?\n', raw) if m.start() > 40000][0]
open('wt_train.txt', 'wb').write(raw[p + 1:])
PY
  "$W" data --tokenizer smol-f32.gguf --input wt_train.txt -o wt_train.h5 --separator line --pack --seq-len 128 \
      --valid-fraction 0.02 > /dev/null
fi
COMMON=(--data wt_train.h5 --steps "$STEPS" --batch-size "$BATCH" --seq-len 128 --lr "$LR" --min-lr "$MIN_LR" --warmup 5
        --weight-decay 0 --threads "$TH" --precision bf16 --log-every 5 --ckpt-every 25 --eval-batches 2)
for run in "$@"; do
  kind=${run%%_*}; t=${run#*_}; t=${t%%-*}   # RUN may carry a suffix: d_Q4_0-im
  if [ ! -f "$run/model-$t.gguf" ]; then
    if [ "$kind" = d ]; then
      "$W" distill --teacher smol-f32.gguf --student smol-f32.gguf --alpha 1 --no-eval --out "$run" --qat "$t" "${IM[@]}" \
          "${COMMON[@]}" --metrics "$run.jsonl" > "$run.log" 2>&1
    else
      "$W" train --model smol-f32.gguf --out "$run" --qat "$t" "${IM[@]}" "${COMMON[@]}" --eval-every 1000 \
          --metrics "$run.jsonl" > "$run.log" 2>&1
    fi
  fi
  [ -f "json/qat-$run-kl.json" ] || "$W" eval "$run/model-$t.gguf" --task kl --ref-model smol-f32.gguf \
      --ref smol-ref.h5 --ref-top-k 64 --data wiki-test-head.txt --threads 2 --scoring llama --ctx 512 \
      --kv-type F16 --name "$( [ "$kind" = d ] && echo QAT+KD || echo QAT ) $t" --json "json/qat-$run-kl.json" > /dev/null
done
