#!/bin/bash
# scripts/distill_smollm2.sh — the SmolLM2-135M-Instruct figures of docs/distillation.md:
# a student of half the teacher's layers (0, 2, ..., 28 of 30), distilled from the
# teacher's stored top-64 on Alpaca (the first 1200 records of ../shared/data/alpaca_5000.json,
# rendered through the model's ChatML template, 10% held out), against the same student
# trained with CE only for the same steps; held-out ppl, KL to the teacher and same top-1,
# and the accuracy-vs-size rows of teacher and student in F32/Q8_0/Q4_0.
# The teacher is the Q8_0 of the shipped Q4_1 file (the engine runs Q8_0 fastest).
# Files land in $ET_KD_OUT (build/kd_smollm2); about 40 minutes on 2 busy cores (40 steps:
# the budget a shared 2-core machine allowed; ET_KD_STEPS=150 for more).
set -euo pipefail
cd "$(dirname "$0")/.."
ET=./edgetune
M=${ET_SMOLLM2:-$HOME/.cache/edgetune/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -f "$M" ] || M=../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
O=${ET_KD_OUT:-build/kd_smollm2}
STEPS=${ET_KD_STEPS:-40}
PREC=${ET_KD_PRECISION:-f32}
mkdir -p "$O"
python3 -c "import json,sys; json.dump(json.load(open('../shared/data/alpaca_5000.json'))[:1200], open(sys.argv[1],'w'))" $O/alpaca1200.json
$ET data --tokenizer $M --input $O/alpaca1200.json -o $O/a12.h5 --valid-fraction 0.1 --seed 1
[ -f $O/teacher-Q8_0.gguf ] || $ET quantize $M $O/teacher-Q8_0.gguf --type Q8_0 --allow-requantize --quiet
T=$O/teacher-Q8_0.gguf
# the teacher once: windows of 128 at stride 127 over each split = the student's stream rows of 127
[ -f $O/t_top64.h5 ] || $ET logits $T --data $O/a12.h5 -o $O/t_top64.h5 --ctx 128 --scoring stream --threads 2
COMMON="--teacher $T --keep-layers 0,2,4,6,8,10,12,14,16,18,20,22,24,26,28 --steps $STEPS --batch-size 8 --seq-len 127
        --loader stream --lr 1e-3 --warmup 5 --eval-every 20 --eval-batches 0 --ckpt-every 0 --threads 1 --log-every 5
        --no-eval --seed 1 --precision $PREC"
run() { local n=$1; shift; rm -rf $O/$n; $ET distill $COMMON --out $O/$n --metrics $O/$n.jsonl "$@" 2>&1 | tee $O/$n.log | grep -E "val_loss|trained|context"; }
# the two runs side by side (the same budget; on a shared machine this also evens out the load)
[ -f $O/ce_only/model.gguf ] || run ce_only --data $O/a12.h5 --alpha 0 &
[ -f $O/kd_top64/model.gguf ] || run kd_top64 --teacher-logits $O/t_top64.h5 --alpha 0.5 &
wait
# evaluation on the held-out 10%: perplexity of every artifact, KL to the teacher (full vocabulary)
ev() { # model name
    $ET eval $1 --task kl --ref-model $T --ref $O/ref_valid.h5 --data $O/a12.h5 --split valid --ctx 128 \
        --name "$2" --json $O/eval_$2.json --threads 2 | tail -1; }
ev $T teacher-Q8_0
[ -f $O/teacher-F32.gguf ] || $ET convert $M -o $O/teacher-F32.gguf --type F32
$ET quantize $O/teacher-F32.gguf $O/teacher-Q4_0.gguf --type Q4_0 --quiet
ev $O/teacher-F32.gguf teacher-F32
ev $O/teacher-Q4_0.gguf teacher-Q4_0
ev $O/ce_only/model.gguf student-ce-F32
for n in kd_top64; do
    ev $O/$n/model.gguf student-kd-F32
    $ET quantize $O/$n/model.gguf $O/student-kd-Q8_0.gguf --type Q8_0 --quiet
    $ET quantize $O/$n/model.gguf $O/student-kd-Q4_0.gguf --type Q4_0 --quiet
    ev $O/student-kd-Q8_0.gguf student-kd-Q8_0
    ev $O/student-kd-Q4_0.gguf student-kd-Q4_0
done
$ET report $O/eval_*.json -o $O/report --title "SmolLM2-135M-Instruct: teacher and a 15-layer distilled student"
echo DONE
