#!/bin/bash
# scripts/eval_smollm2.sh — the real SmolLM2-135M-Instruct (Q4_1, `make models`) on SST-2
# through `edgetune eval`: zero-shot, + a LoRA adapter (rank 8 on q, v), merged and requantized
# to Q8_0 / Q4_0, and the accuracy-vs-size report (docs/evaluation.md).  Needs ../shared.
# About 40 minutes on 2 cores.  Files land in $ET_EVAL_OUT (build/eval_smol).
set -euo pipefail
cd "$(dirname "$0")/.."
ET=./edgetune
M=$(scripts/get_models.sh)
D=../shared/data
O=${ET_EVAL_OUT:-build/eval_smol}
TH=${ET_THREADS:-2}
mkdir -p "$O"
T='Review: {text}\nSentiment:'; L=' negative, positive'
head -4001 $D/sst2/train.tsv > "$O/sst2_train4k.tsv"
$ET data --tokenizer "$M" --input "$O/sst2_train4k.tsv" -o "$O/train.h5" --template "$T" --labels "$L" --valid-fraction 0.05 --seed 1
$ET eval "$M" --task classify --data $D/sst2/test.tsv --template "$T" --labels "$L" --name SmolLM2-135M-Q4_1 --threads $TH --json "$O/base.json"
$ET lora --model "$M" --data "$O/train.h5" --out "$O/lora" --targets q,v --rank 8 --alpha 16 --lr 1e-3 --steps 150 --batch-size 8 --seq-len 64 --eval-every 50 --ckpt-every 0 --log-every 25 --threads $TH --seed 1
$ET eval "$M" --lora "$O/lora/adapter.gguf" --task classify --data $D/sst2/test.tsv --template "$T" --labels "$L" --name SmolLM2-135M-Q4_1+lora --threads $TH --json "$O/lora.json"
# merged in F32 (merging into the Q4_1 base would re-quantize the adapted weights to Q4_1,
# which rounds most of the adapter's small update away), then quantized from F32
$ET merge "$M" "$O/lora/adapter.gguf" -o "$O/merged-F32.gguf" --type F32
$ET eval "$O/merged-F32.gguf" --task classify --data $D/sst2/test.tsv --template "$T" --labels "$L" --name merged-F32 --threads $TH --json "$O/merged-F32.json"
for q in Q8_0 Q4_0; do
  $ET quantize "$O/merged-F32.gguf" "$O/merged-$q.gguf" --type $q --quiet
  $ET eval "$O/merged-$q.gguf" --task classify --data $D/sst2/test.tsv --template "$T" --labels "$L" --name merged-$q --threads $TH --json "$O/merged-$q.json"
done
# the merge a user gets without --type: the base's Q4_1 kept
$ET merge "$M" "$O/lora/adapter.gguf" -o "$O/merged-Q4_1.gguf"
$ET eval "$O/merged-Q4_1.gguf" --task classify --data $D/sst2/test.tsv --template "$T" --labels "$L" --name merged-Q4_1 --threads $TH --json "$O/merged-Q4_1.json"
$ET report "$O"/base.json "$O"/lora.json "$O"/merged-*.json -o "$O/report" --title "SmolLM2-135M-Instruct on SST-2: zero-shot, LoRA, merged"
echo DONE
