#!/bin/bash
# scripts/sft_smollm2_domain.sh — LoRA SFT of the real SmolLM2-135M-Instruct (`make models`) on
# ../shared/data/unsloth_domain_qa.json (a product's Q&A, Alpaca records, rendered through the
# model's ChatML template), 10% held out, the frozen base kept quantized (Q8_0) during training;
# held-out loss and greedy answers before/after through `edgetune eval --task generate`.
# About 15 minutes on 2 cores; the adapter (rank 8 on every linear layer, F16) is 4.9 MB.  Files land in $ET_EVAL_OUT (build/sft_domain).
set -euo pipefail
cd "$(dirname "$0")/.."
ET=./edgetune
M=$(scripts/get_models.sh)
O=${ET_EVAL_OUT:-build/sft_domain}
TH=${ET_THREADS:-2}
mkdir -p "$O"
# the JSON array as JSONL (one record a line), so `data --test-out` can hold records out verbatim
python3 -c 'import json,sys; [print(json.dumps(r)) for r in json.load(open(sys.argv[1]))]' \
  ../shared/data/unsloth_domain_qa.json > "$O/qa.jsonl"
$ET data --tokenizer "$M" --input "$O/qa.jsonl" -o "$O/train.h5" --valid-fraction 0.1 --seed 1 \
  --test-fraction 0.1 --test-out "$O/test.jsonl"
[ -f "$O/base.json" ] || $ET eval "$M" --task generate --data "$O/test.jsonl" --n-predict 96 --name SmolLM2-135M-Q4_1 --threads $TH \
  --json "$O/base.json" --samples "$O/base.samples.jsonl"
$ET lora --model "$M" --data "$O/train.h5" --out "$O/lora" --base-type Q8_0 --targets all-linear --rank 8 --adapter-type F16 \
  --alpha 32 --lr 1e-3 --steps 120 --batch-size 8 --seq-len 128 --eval-every 40 --ckpt-every 0 --log-every 20 \
  --threads $TH --seed 1
$ET eval "$M" --lora "$O/lora/adapter.gguf" --task generate --data "$O/test.jsonl" --n-predict 96 \
  --name SmolLM2-135M-Q4_1+lora --threads $TH --json "$O/lora.json" --samples "$O/lora.samples.jsonl"
$ET report "$O"/base.json "$O"/lora.json -o "$O/report" --title "SmolLM2-135M-Instruct: domain Q&A SFT"
echo DONE
