#!/bin/bash
# scripts/distill_hidden_stories260k.sh — the narrow-student figures of docs/distillation.md:
# a student of half the teacher's width (n_embd 32 against stories260K's 64; 3 layers,
# trained from scratch), for the same steps and tokens with CE only (alpha 0), with KD from
# the teacher run online, and with KD plus the hidden-state loss (TinyBERT) through learned
# projections W [64, 32] (student layers 0, 1, 2 against the teacher's 1, 3, 4); held-out CE
# on the 10% validation split of ../shared/data/tinystories_sample.txt, KL to the teacher.
# Files land in $ET_KD_OUT (build/kd_hidden_stories260k).
set -euo pipefail
cd "$(dirname "$0")/.."
ET=./edgetune
S=../shared/models/stories260K/stories260K.gguf
O=${ET_KD_OUT:-build/kd_hidden_stories260k}
STEPS=${ET_KD_STEPS:-300}
TH=${ET_THREADS:-2}
mkdir -p "$O"
[ -f $O/ts.h5 ] || $ET data --tokenizer $S --input ../shared/data/tinystories_sample.txt -o $O/ts.h5 --valid-fraction 0.1 --seed 1
COMMON="--teacher $S --data $O/ts.h5 --n-embd 32 --n-layer 3 --n-head 4 --n-head-kv 2 --n-ff 96
        --steps $STEPS --batch-size 16 --seq-len 255 --loader rows --lr 3e-3 --warmup 30
        --eval-every 100 --eval-batches 0 --ckpt-every 0 --threads $TH --log-every 50 --no-eval --seed 1"
run() { # name, flags...
    local n=$1; shift
    rm -rf $O/$n
    $ET distill $COMMON --out $O/$n --metrics $O/$n.jsonl "$@" 2>&1 | tee $O/$n.log | grep -E "val_loss|trained"
}
run ce_only --alpha 0
run kd_online --alpha 0.5
# the teacher's hidden states are large (MSE ~3 per element at init): weight 1 swamps the KD term
run kd_hidden --alpha 0.5 --hidden-map 0:1,1:3,2:4 --hidden-weight ${ET_HIDDEN_WEIGHT:-0.01}
run kd_hidden_cos --alpha 0.5 --hidden-map 0:1,1:3,2:4 --hidden-loss cosine --hidden-weight 0.1
for n in ce_only kd_online kd_hidden kd_hidden_cos; do
    $ET eval $O/$n/model.gguf --task kl --ref-model $S --ref $O/ref_valid_full.h5 --ref-full --data $O/ts.h5 --split valid \
        --ctx 256 --name "n_embd 32 $n" --json $O/eval_$n.json --threads $TH | tail -1
done
echo DONE
