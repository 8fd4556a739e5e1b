#!/usr/bin/env bash
# Seeds for fuzz_h5: a tokens.h5 with a loss mask and a validation split, a
# teacher-logits file and a LoRA checkpoint, made with ./edgetune on
# stories260K when both are there (else the fuzzer starts from nothing).
# Usage: fuzz/fuzz_h5.seed.sh CORPUS_DIR
set -euo pipefail
out=$1
m=../shared/models/stories260K/stories260K.gguf
txt=../shared/data/tinystories_sample.txt
[ -x ./edgetune ] && [ -f "$m" ] && [ -f "$txt" ] || exit 0
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
head -c 6000 "$txt" > "$t/s.txt"
./edgetune data --tokenizer "$m" --input "$t/s.txt" --separator '<|endoftext|>' --valid-fraction 0.3 \
  -o "$out/tokens.h5" >/dev/null 2>&1 || true
./edgetune logits "$m" --data "$out/tokens.h5" -o "$out/teacher.h5" --top-k 4 --ctx 64 >/dev/null 2>&1 || true
./edgetune lora --model "$m" --data "$out/tokens.h5" --out "$t/l" --steps 1 --batch-size 1 --seq-len 16 \
  --rank 1 --targets q --layers 0 --eval-every 0 >/dev/null 2>&1 && cp "$t/l/checkpoint.h5" "$out/checkpoint.h5" || true
