#!/usr/bin/env bash
# scripts/prune_stories260k.sh — structured pruning of the real stories260K
# model, recovered, against the original and against a model of the same
# size trained from scratch on the same tokens (docs/pruning.md).
#
#   scripts/prune_stories260k.sh            # from the project root, after make
#   OUT=DIR STEPS=N THREADS=N RATIOS="0.25 0.5" scripts/prune_stories260k.sh
#
# Data: ../shared/data/tinystories_sample.txt, 10% of its stories held out
# (edgetune data --valid-fraction 0.1).  Calibration (64 x 256 tokens),
# recovery and from-scratch training read the training split only; every
# perplexity is on the held-out split (edgetune eval --task perplexity,
# context 256).  For each ratio R: --heads R --ffn R --uniform --head-groups
# (whole kv groups), activation importance (Minitron); recovery is
# continued training of all weights (edgetune train --model PRUNED), a
# LoRA adapter on every linear, merged (edgetune prune --recover lora),
# distillation from the original (--recover distill) and the same training
# with cross-entropy only (--recover ce); the
# scratch model has the pruned model's widths (untied output, as stories260K's GGUF) and gets the same steps x
# batch x seq-len tokens.  Each eval is an eval JSON in $OUT/eval/.
set -euo pipefail
ET=${ET:-./edgetune}
S=${SHARED:-../shared}
OUT=${OUT:-build/prune_stories}
THREADS=${THREADS:-2}
STEPS=${STEPS:-300}
BATCH=${BATCH:-16}
SEQ=${SEQ:-256}
RATIOS=${RATIOS:-"0.25 0.5"}
M=$S/models/stories260K/stories260K.gguf
mkdir -p "$OUT/eval"
[ -f "$OUT/ts.h5" ] || $ET data --tokenizer "$M" --input "$S/data/tinystories_sample.txt" --separator '<|endoftext|>' \
    --valid-fraction 0.1 -o "$OUT/ts.h5"

ev() { # ev MODEL NAME
    $ET eval "$1" --task perplexity --data "$OUT/ts.h5" --split valid --ctx 256 --threads "$THREADS" \
        --name "$2" --json "$OUT/eval/$2.json" >/dev/null 2>&1
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('%-24s ppl %8.3f  params %7d  engine tokens/s %.0f' % (sys.argv[2], r['metrics']['ppl'], r['artifact']['n_params'], r['speed']['tokens_per_s']))" \
        "$OUT/eval/$2.json" "$2" | tee -a "$OUT/summary.txt"
}
: > "$OUT/summary.txt"
ev "$M" original
for R in $RATIOS; do
    P=$OUT/p$R
    $ET prune "$M" --calib "$OUT/ts.h5" --calib-rows 64 --seq-len 256 --heads "$R" --ffn "$R" --uniform --head-groups \
        --scores "$P.scores.json" --plan "$P.plan.json" -o "$P.gguf" --threads "$THREADS"
    ev "$P.gguf" "pruned-$R"
    # recovery 1: continued training of every weight, same data
    $ET train --model "$P.gguf" --data "$OUT/ts.h5" --out "$P.train" --steps "$STEPS" --batch-size "$BATCH" \
        --seq-len "$SEQ" --lr 1e-3 --warmup 30 --eval-every "$STEPS" --threads "$THREADS" --log-every 50 >"$P.train.log" 2>&1
    ev "$P.train/model.gguf" "pruned-$R+train"
    # recovery 2: LoRA on every linear, merged (edgetune prune --recover lora)
    $ET prune "$M" --plan "$P.plan.json" -o "$P.lora.gguf" --recover lora --recover-data "$OUT/ts.h5" \
        --recover-steps "$STEPS" --recover-batch "$BATCH" --recover-seq-len "$SEQ" --recover-rank 16 --recover-lr 2e-3 \
        --threads "$THREADS" >"$P.lora.log" 2>&1
    ev "$P.lora.gguf" "pruned-$R+lora"
    # recovery 3 and 4: distillation from the original (Minitron: forward KL on the logits, alpha 1)
    # and the same command with alpha 0 (cross-entropy only), edgetune prune --recover distill|ce
    for REC in distill ce; do
        $ET prune "$M" --plan "$P.plan.json" -o "$P.$REC.gguf" --recover "$REC" --recover-data "$OUT/ts.h5" \
            --recover-steps "$STEPS" --recover-batch "$BATCH" --recover-seq-len "$SEQ" --recover-lr 1e-3 \
            --threads "$THREADS" >"$P.$REC.log" 2>&1
        ev "$P.$REC.gguf" "pruned-$R+$REC"
    done
    # the same widths from scratch, the same tokens
    read -r NH NKV NFF <<<"$(python3 -c "
import json,sys
p=json.load(open(sys.argv[1])); L=[l for l in p['layers'] if not l.get('removed')]
print(len(L[0]['heads']), len(L[0]['kv_heads']), len(L[0]['ffn']))" "$P.plan.json")"
    for LR in 1e-3 3e-3; do
        $ET train --n-embd 64 --n-layer 5 --n-head "$NH" --n-head-kv "$NKV" --head-dim 8 --n-ff "$NFF" --untied --tokenizer "$M" \
            --data "$OUT/ts.h5" --out "$P.scratch$LR" --steps "$STEPS" --batch-size "$BATCH" --seq-len "$SEQ" --lr "$LR" \
            --warmup 30 --eval-every "$STEPS" --threads "$THREADS" --log-every 50 >"$P.scratch$LR.log" 2>&1
        ev "$P.scratch$LR/model.gguf" "scratch-$R-lr$LR"
    done
done
# embedding channels: 25% of n_embd (64 -> 48), distillation recovery of a third of the budget
if [ -f "$OUT/p0.25.scores.json" ]; then
$ET prune "$M" --scores "$OUT/p0.25.scores.json" --embd 0.25 --ffn-multiple 8 --plan "$OUT/e0.25.plan.json" \
    -o "$OUT/e0.25.distill.gguf" --recover distill --recover-data "$OUT/ts.h5" --recover-steps $((STEPS / 3)) \
    --recover-batch "$BATCH" --recover-seq-len "$SEQ" --recover-lr 1e-3 --threads "$THREADS" >"$OUT/e0.25.distill.log" 2>&1
ev "$OUT/e0.25.distill.gguf.pruned.gguf" "embd-0.25"
ev "$OUT/e0.25.distill.gguf" "embd-0.25+distill"
fi
cat "$OUT/summary.txt"
