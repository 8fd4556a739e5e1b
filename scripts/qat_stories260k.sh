#!/usr/bin/env bash
# scripts/qat_stories260k.sh — PTQ vs QAT on stories260K (docs/qat.md).
# Usage: scripts/qat_stories260k.sh WORKDIR [TYPES...]   (default: Q4_0 Q4_K_M Q3_K_M Q2_K)
# Data: ../shared/data/tinystories_sample.txt, the first 90% of its lines to
# train (2% of those documents for validation), the last 10% held out
# (ts_test.txt) for perplexity and KL to the F32 model.
# For each type: PTQ of the F32 model; "ft+PTQ" = the same fine-tune as QAT
# without fake quantization, then PTQ (the control); QAT = train --qat TYPE.
# imatrix PTQ is added when `edgetune imatrix` exists (issue 15 section 1):
# iPTQ = the F32 model with an imatrix of the training text, ft+iPTQ = the
# fine-tuned F32 model with its own imatrix of the same text.
# QAT+KD = `edgetune distill --qat TYPE` with the F32 model as both teacher
# and student (online teacher, alpha 1: the loss is KL(teacher || student)
# only), the same schedule; QAT+KD-im the same on the imatrix grid (--qat-imatrix imatrix.dat).  Env: STEPS (300), THREADS (1), IMX_FT_CHUNKS
# (the fine-tuned model's imatrix over the first N chunks of 512 only).
set -euo pipefail
W=${EDGETUNE:-$(cd "$(dirname "$0")/.." && pwd)/edgetune}
S=$(cd "$(dirname "$0")/../../shared" && pwd)
M=$S/models/stories260K/stories260K.gguf
D=$1; shift
TYPES=${*:-Q4_0 Q4_K_M Q3_K_M Q2_K}
STEPS=${STEPS:-300}
TH=${THREADS:-1}
mkdir -p "$D"; cd "$D"
if [ ! -f ts_train.h5 ]; then
  n=$(wc -l < "$S/data/tinystories_sample.txt")
  head -n $((n * 9 / 10)) "$S/data/tinystories_sample.txt" > ts_train.txt
  tail -n +$((n * 9 / 10 + 1)) "$S/data/tinystories_sample.txt" > ts_test.txt
  "$W" data --tokenizer "$M" --input ts_train.txt -o ts_train.h5 --valid-fraction 0.02 > /dev/null
fi
TR=(--data ts_train.h5 --steps "$STEPS" --batch-size 8 --seq-len 256 --lr 5e-5 --min-lr 5e-6 --warmup 20
    --weight-decay 0 --threads "$TH" --eval-every 100 --log-every 50)
ev() { # name model
  "$W" eval "$2" --task perplexity --data ts_test.txt --scoring llama --ctx 256 --threads "$TH" --name "$1" \
    --json "ev_$1.ppl.json" > /dev/null
  "$W" eval "$2" --task kl --ref-model "$M" --ref ref_f32.h5 --data ts_test.txt --ctx 256 --threads "$TH" \
    --name "$1" --json "ev_$1.kl.json" > /dev/null
}
evft() { # name model: KL to the fine-tuned F32 model (the same training without fake quantization)
  "$W" eval "$2" --task kl --ref-model ft/model.gguf --ref ref_ft.h5 --data ts_test.txt --ctx 256 --threads "$TH" \
    --name "$1" --json "evft_$1.kl.json" > /dev/null
}
ev F32 "$M"
[ -f ft/model.gguf ] || "$W" train --model "$M" --out ft "${TR[@]}" > ft.log 2>&1
ev ft-F32 ft/model.gguf
IMX=0
if "$W" help imatrix > /dev/null 2>&1; then
  IMX=1
  [ -f imatrix.dat ] || "$W" imatrix "$M" --data ts_train.h5 -o imatrix.dat --threads "$TH" > imatrix.log 2>&1 || IMX=0
  [ -f imatrix-ft.dat ] || "$W" imatrix ft/model.gguf --data ts_train.h5 -o imatrix-ft.dat ${IMX_FT_CHUNKS:+--chunks $IMX_FT_CHUNKS} \
    --threads "$TH" > imatrix-ft.log 2>&1 || IMX=0
fi
for t in $TYPES; do
  "$W" quantize "$M" "ptq-$t.gguf" --type "$t" --quiet
  ev "PTQ-$t" "ptq-$t.gguf"
  if [ $IMX = 1 ]; then
    "$W" quantize "$M" "imx-$t.gguf" --type "$t" --imatrix imatrix.dat --quiet && ev "iPTQ-$t" "imx-$t.gguf"
  fi
  "$W" quantize ft/model.gguf "ftptq-$t.gguf" --type "$t" --quiet
  ev "ft+PTQ-$t" "ftptq-$t.gguf"; evft "ft+PTQ-$t" "ftptq-$t.gguf"
  if [ $IMX = 1 ]; then
    "$W" quantize ft/model.gguf "ftimx-$t.gguf" --type "$t" --imatrix imatrix-ft.dat --quiet
    ev "ft+iPTQ-$t" "ftimx-$t.gguf"; evft "ft+iPTQ-$t" "ftimx-$t.gguf"
  fi
  [ -f "qat-$t/model-$t.gguf" ] || "$W" train --model "$M" --out "qat-$t" --qat "$t" "${TR[@]}" > "qat-$t.log" 2>&1
  ev "QAT-$t" "qat-$t/model-$t.gguf"; evft "QAT-$t" "qat-$t/model-$t.gguf"
  [ -f "kd-$t/model-$t.gguf" ] || "$W" distill --teacher "$M" --student "$M" --alpha 1 --out "kd-$t" --qat "$t" \
    "${TR[@]}" > "kd-$t.log" 2>&1
  ev "QAT+KD-$t" "kd-$t/model-$t.gguf"
  if [ $IMX = 1 ]; then   # QAT+KD on the imatrix grid (--qat-imatrix): starts from iPTQ
    [ -f "kdim-$t/model-$t.gguf" ] || "$W" distill --teacher "$M" --student "$M" --alpha 1 --out "kdim-$t" --qat "$t" \
      --qat-imatrix imatrix.dat "${TR[@]}" > "kdim-$t.log" 2>&1
    ev "QAT+KD-im-$t" "kdim-$t/model-$t.gguf"
  fi
done
# one table: name, bytes, held-out ppl, KL to F32, KL to the fine-tuned F32
python3 - <<'PY'
import json,glob
rows={}
for f in sorted(glob.glob('ev*_*.json')):
    j=json.load(open(f)); r=rows.setdefault(j['name'],{}); m=j['metrics']
    r['bytes']=j['artifact']['bytes']
    if f.startswith('evft_'): r['kl_ft']=m['kl_mean']
    elif 'kl_mean' in m: r['kl']=m['kl_mean']; r['top1']=m['same_top1']
    else: r['ppl']=m['ppl']
f=lambda v: '-' if v is None else ('%.4f' % v)
print('| model | bytes | ppl (held out) | KL to F32 | same top-1 | KL to ft-F32 |')
print('|---|---:|---:|---:|---:|---:|')
for n,r in rows.items():
    print(f"| {n} | {r['bytes']} | {f(r.get('ppl'))} | {f(r.get('kl'))} | {f(r.get('top1'))} | {f(r.get('kl_ft'))} |")
PY
