#!/usr/bin/env bash
# scripts/prune_smollm2.sh — SmolLM2-135M-Instruct pruned to ~90M and ~70M
# parameters, recovered with LoRA, evaluated on WikiText-2 test
# (docs/pruning.md).
#
#   scripts/prune_smollm2.sh          # from the project root, after make
#   OUT=DIR THREADS=2 WIKI_BYTES=40000 REC_STEPS=30 KD_STEPS=40 scripts/prune_smollm2.sh
#
# Data kept apart: calibration (64 x 256 tokens) and recovery read the
# training split of Stanford Alpaca (../shared/data/alpaca_5000.json as
# plain text: instruction, input, output); every figure is on the first
# WIKI_BYTES bytes of ../shared/data/wikitext2/wiki.test.raw (the whole
# test split is ~290K tokens: too slow on 2 shared cores for a dozen
# models; WIKI_BYTES=0 takes all of it), context 512, scored as
# llama-perplexity does (--scoring llama).  One eval per model:
# `edgetune eval --task kl --ref-model ORIGINAL` gives the model's
# perplexity and its KL to the original F32 model on the same windows; its
# JSON (eval/NAME.json) also has bytes, parameters and tokens/s.  Engine
# decode speed: `edgetune run --temp 0 --n 64 --stats`.
set -euo pipefail
ET=${ET:-./edgetune}
S=${SHARED:-../shared}
OUT=${OUT:-build/prune_smol}
THREADS=${THREADS:-2}
WIKI_BYTES=${WIKI_BYTES:-40000}
REC_STEPS=${REC_STEPS:-30}
KD_STEPS=${KD_STEPS:-40}
Q41=${SMOLLM2:-$HOME/.cache/edgetune/SmolLM2-135M-Instruct.Q4_1.gguf}
mkdir -p "$OUT/eval"
M=$OUT/smol_f32.gguf
[ -f "$M" ] || $ET convert "$Q41" -o "$M" --type F32
if [ ! -f "$OUT/alpaca.h5" ]; then
    python3 -c "
import json, sys
with open(sys.argv[2], 'w') as f:
    for x in json.load(open(sys.argv[1])):
        t = x['instruction'].strip()
        if x.get('input', '').strip(): t += '\n' + x['input'].strip()
        t += '\n' + x['output'].strip()
        f.write(t.replace('\n\n', '\n') + '\n\n')" "$S/data/alpaca_5000.json" "$OUT/alpaca.txt"
    $ET data --tokenizer "$M" --input "$OUT/alpaca.txt" --valid-fraction 0.05 -o "$OUT/alpaca.h5"
fi
W=$OUT/wiki_test.txt
if [ "$WIKI_BYTES" -gt 0 ]; then head -c "$WIKI_BYTES" "$S/data/wikitext2/wiki.test.raw" >"$W"; else cp "$S/data/wikitext2/wiki.test.raw" "$W"; fi

ev() { # ev MODEL NAME: ppl + KL to the original, one pass (skipped when its JSON exists)
    [ -f "$OUT/eval/$2.json" ] && { grep -F "$2 " "$OUT/summary.txt" >/dev/null 2>&1 || true; return 0; }
    $ET eval "$1" --task kl --ref-model "$M" --ref "$OUT/ref.h5" --data "$W" --scoring llama --ctx 512 \
        --threads "$THREADS" --name "$2" --json "$OUT/eval/$2.json" >"$OUT/eval/$2.log" 2>&1
    local tps
    tps=$($ET run "$1" --prompt "The history of the city" --n 64 --temp 0 --threads "$THREADS" --stats 2>&1 >/dev/null |
        grep -oE '[0-9.]+ tokens/s' | tail -1 || true)
    python3 -c "
import json, sys
r = json.load(open(sys.argv[1])); m = r['metrics']; a = r['artifact']
print('%-22s params %10d  bytes %10d  ppl %8.3f  KL %.4f  top1 %.3f  eval tok/s %6.1f  decode %s' % (sys.argv[2],
      a['n_params'], a['bytes'], m['ppl'], m['kl_mean'], m['same_top1'], r['speed']['tokens_per_s'], sys.argv[3]))" \
        "$OUT/eval/$2.json" "$2" "${tps:-?}" | tee -a "$OUT/summary.txt"
}
quant_rows() { # quant_rows MODEL NAME
    for T in Q8_0 Q4_0; do
        $ET quantize "$1" "${1%.gguf}.$T.gguf" --type "$T" --quiet
        ev "${1%.gguf}.$T.gguf" "$2-$T"
    done
}

touch "$OUT/summary.txt"
# 1. importance, once (activation, Minitron), timed
[ -f "$OUT/scores.json" ] || $ET prune "$M" --calib "$OUT/alpaca.h5" --calib-rows 64 --seq-len 256 --threads "$THREADS" \
    --scores "$OUT/scores.json" 2>&1 | grep 'scores over' | tee -a "$OUT/summary.txt"
# 2. plans and pruned models (uniform widths: arch llama; whole kv groups: removing one query head
#    of every group instead gave ppl 2624 vs 88.6 for 30% of heads on 6 KB of the test text)
$ET prune "$M" --scores "$OUT/scores.json" --target-params 90000000 --uniform --head-groups --plan "$OUT/p90.plan.json" -o "$OUT/p90.gguf"
$ET prune "$M" --scores "$OUT/scores.json" --heads 0.3 --target-params 70000000 --uniform --head-groups --plan "$OUT/p70.plan.json" \
    -o "$OUT/p70.gguf"
# 3. before recovery
ev "$M" original
ev "$OUT/p90.gguf" p90
ev "$OUT/p70.gguf" p70
# 4. recovery: LoRA on every linear (rank 16), alpaca training split, merged
for P in p90 p70; do
    $ET prune "$M" --plan "$OUT/$P.plan.json" -o "$OUT/$P.rec.gguf" --recover lora --recover-data "$OUT/alpaca.h5" \
        --recover-steps "$REC_STEPS" --recover-batch 4 --recover-seq-len 256 --recover-rank 16 --recover-lr 1e-3 \
        --threads "$THREADS" >"$OUT/$P.rec.log" 2>&1
    ev "$OUT/$P.rec.gguf" "$P+lora"
done
# 4b. recovery: distillation from the original (Minitron's recipe: every weight of the pruned model,
#     forward KL to the original's logits, alpha 1), alpaca training split, B 4 x T 128, bf16 GEMMs
for P in p90 p70; do
    [ -f "$OUT/$P.kd.gguf" ] || $ET prune "$M" --plan "$OUT/$P.plan.json" -o "$OUT/$P.kd.gguf" --recover distill \
        --recover-data "$OUT/alpaca.h5" --recover-steps "$KD_STEPS" --recover-eval-batches 4 --recover-batch 4 --recover-seq-len 128 \
        --recover-lr 1e-3 --recover-precision bf16 --threads "$THREADS" >"$OUT/$P.kd.log" 2>&1
    ev "$OUT/$P.kd.gguf" "$P+distill"
done
# 5. the quantized rows
quant_rows "$M" original
for P in p90 p70; do quant_rows "$OUT/$P.rec.gguf" "$P+lora"; quant_rows "$OUT/$P.kd.gguf" "$P+distill"; done
cat "$OUT/summary.txt"
