#!/bin/bash
# scripts/eval_real.sh — the real-data figures of docs/evaluation.md: stories260K on
# SST-2 and SMS spam, zero-shot, + LoRA, merged F32/F16, and their report.
# Needs ../shared; about 3 minutes on 2 cores.  Files land in $ET_EVAL_OUT (build/eval_real).
set -euo pipefail
cd "$(dirname "$0")/.."
ET=./edgetune
S=../shared/models/stories260K/stories260K.gguf
D=../shared/data
O=${ET_EVAL_OUT:-build/eval_real}
mkdir -p "$O"
T1='Review: {text}\nSentiment:'; L1=' negative, positive'
T2='Message: {text}\nThis message is'; L2=' normal, spam'
# SST-2: train on the first 8000 training rows, evaluate on the labelled GLUE dev (test.tsv, 872)
head -8001 $D/sst2/train.tsv > $O/sst2_train8k.tsv
$ET data --tokenizer $S --input $O/sst2_train8k.tsv -o $O/sst2_train.h5 --template "$T1" --labels "$L1" --valid-fraction 0.05 --seed 1
$ET lora --model $S --data $O/sst2_train.h5 --out $O/sst2_lora --steps 600 --batch-size 16 --seq-len 128 --rank 8 --alpha 16 --targets all-linear --lr 3e-3 --eval-every 200 --ckpt-every 0 --log-every 100
$ET eval $S --task classify --data $D/sst2/test.tsv --template "$T1" --labels "$L1" --name stories260K --json $O/sst2_base.json
$ET eval $S --lora $O/sst2_lora/adapter.gguf --task classify --data $D/sst2/test.tsv --template "$T1" --labels "$L1" --name stories260K+lora --json $O/sst2_lora.json
$ET merge $S $O/sst2_lora/adapter.gguf -o $O/sst2_merged.gguf
$ET eval $O/sst2_merged.gguf --task classify --data $D/sst2/test.tsv --template "$T1" --labels "$L1" --name merged-F32 --json $O/sst2_merged.json
$ET quantize $O/sst2_merged.gguf $O/sst2_merged_f16.gguf --type F16 --quiet
$ET eval $O/sst2_merged_f16.gguf --task classify --data $D/sst2/test.tsv --template "$T1" --labels "$L1" --name merged-F16 --json $O/sst2_merged_f16.json
# SMS spam: 20% held out verbatim by `data --test-fraction`
$ET data --tokenizer $S --input $D/sms_spam/SMSSpamCollection --format tsv --label-first --template "$T2" --labels "$L2" --valid-fraction 0.05 --test-fraction 0.2 --test-out $O/sms_test.tsv -o $O/sms_train.h5 --seed 1
$ET lora --model $S --data $O/sms_train.h5 --out $O/sms_lora --steps 400 --batch-size 16 --seq-len 256 --rank 8 --alpha 16 --targets all-linear --lr 3e-3 --eval-every 200 --ckpt-every 0 --log-every 100
$ET eval $S --task classify --data $O/sms_test.tsv --label-first --template "$T2" --labels "$L2" --name stories260K --json $O/sms_base.json
$ET eval $S --lora $O/sms_lora/adapter.gguf --task classify --data $O/sms_test.tsv --label-first --template "$T2" --labels "$L2" --name stories260K+lora --json $O/sms_lora.json
$ET merge $S $O/sms_lora/adapter.gguf -o $O/sms_merged.gguf
$ET quantize $O/sms_merged.gguf $O/sms_merged_f16.gguf --type F16 --quiet
$ET eval $O/sms_merged_f16.gguf --task classify --data $O/sms_test.tsv --label-first --template "$T2" --labels "$L2" --name merged-F16 --json $O/sms_merged_f16.json
$ET report "$O"/sst2_*.json "$O"/sms_*.json -o $O/report --title "stories260K: SST-2 and SMS spam, zero-shot and LoRA"
echo DONE
