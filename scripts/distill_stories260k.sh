#!/bin/bash
# scripts/distill_stories260k.sh — the stories260K figures of docs/distillation.md:
# a 3-layer student made of the teacher's layers 0, 2, 4, trained for the same steps
# and tokens with CE only (alpha 0), and with KD from stored top-64, from 12 sampled
# tokens per position, and from the teacher run online; held-out CE on the 10%
# validation split of ../shared/data/tinystories_sample.txt, KL to the teacher.
# Files land in $ET_KD_OUT (build/kd_stories260k); about 20 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
ET=./edgetune
S=../shared/models/stories260K/stories260K.gguf
O=${ET_KD_OUT:-build/kd_stories260k}
STEPS=${ET_KD_STEPS:-300}
mkdir -p "$O"
$ET data --tokenizer $S --input ../shared/data/tinystories_sample.txt -o $O/ts.h5 --valid-fraction 0.1 --seed 1
# the teacher once, windows of 256 from each document's start (= the student's rows of 255 + 1)
[ -f $O/t_top64.h5 ] || $ET logits $S --data $O/ts.h5 -o $O/t_top64.h5 --ctx 256 --threads 2
[ -f $O/t_s12.h5 ] || $ET logits $S --data $O/ts.h5 -o $O/t_s12.h5 --ctx 256 --sample 12 --threads 2
COMMON="--teacher $S --keep-layers 0,2,4 --steps $STEPS --batch-size 16 --seq-len 255 --loader rows --lr 2e-3 --warmup 30
        --eval-every 100 --eval-batches 0 --ckpt-every 0 --threads 2 --log-every 50 --no-eval --seed 1"
run() { # name, flags...
    local n=$1; shift
    rm -rf $O/$n
    $ET distill $COMMON --out $O/$n --metrics $O/$n.jsonl "$@" 2>&1 | tee $O/$n.log | grep -E "val_loss|trained"
}
run ce_only --data $O/ts.h5 --alpha 0
run kd_top64 --teacher-logits $O/t_top64.h5 --alpha 0.5
run kd_sample12 --teacher-logits $O/t_s12.h5 --alpha 0.5
run kd_online --data $O/ts.h5 --alpha 0.5
# KL to the teacher and same top-1 on the validation split (one stored reference, exact: full vocabulary)
for n in ce_only kd_top64 kd_sample12 kd_online; do
    $ET eval $O/$n/model.gguf --task kl --ref-model $S --ref $O/ref_valid_full.h5 --ref-full --data $O/ts.h5 --split valid \
        --ctx 256 --name "3-layer $n" --json $O/eval_$n.json --threads 2 | tail -1
done
$ET eval $S --task perplexity --data $O/ts.h5 --split valid --ctx 256 --name "teacher (5 layers)" --json $O/eval_teacher.json --threads 2 | tail -1
$ET report $O/eval_teacher.json $O/eval_ce_only.json $O/eval_kd_*.json -o $O/report --title "stories260K: 3-layer students, CE only vs KD"
echo DONE
