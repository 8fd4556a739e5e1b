#!/bin/bash
# scripts/eval_smollm2_sms.sh — the real SmolLM2-135M-Instruct (Q4_1, `make models`) on SMS spam
# through `edgetune eval`: zero-shot and + a LoRA adapter (rank 8 on q, v), 20% of the messages
# held out by `edgetune data --test-fraction` (docs/evaluation.md).  Needs ../shared.
# About 20 minutes on 2 cores.  Files land in $ET_EVAL_OUT (build/eval_smol_sms).
set -euo pipefail
cd "$(dirname "$0")/.."
ET=./edgetune
M=$(scripts/get_models.sh)
D=../shared/data
O=${ET_EVAL_OUT:-build/eval_smol_sms}
TH=${ET_THREADS:-1}
mkdir -p "$O"
T='Message: {text}\nThis message is'; L=' normal, spam'
$ET data --tokenizer "$M" --input $D/sms_spam/SMSSpamCollection --format tsv --label-first --template "$T" --labels "$L" \
  --valid-fraction 0.05 --test-fraction 0.2 --test-out "$O/sms_test.tsv" -o "$O/train.h5" --seed 1
$ET eval "$M" --task classify --data "$O/sms_test.tsv" --label-first --template "$T" --labels "$L" --name SmolLM2-135M-Q4_1 --threads $TH --json "$O/base.json"
$ET lora --model "$M" --data "$O/train.h5" --out "$O/lora" --targets q,v --rank 8 --alpha 16 --lr 1e-3 --steps 150 --batch-size 8 --seq-len 96 --eval-every 50 --ckpt-every 0 --log-every 25 --threads $TH --seed 1
$ET eval "$M" --lora "$O/lora/adapter.gguf" --task classify --data "$O/sms_test.tsv" --label-first --template "$T" --labels "$L" --name SmolLM2-135M-Q4_1+lora --threads $TH --json "$O/lora.json"
$ET report "$O"/base.json "$O"/lora.json -o "$O/report" --title "SmolLM2-135M-Instruct on SMS spam"
echo DONE
