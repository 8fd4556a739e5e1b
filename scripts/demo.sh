#!/usr/bin/env bash
# scripts/demo.sh — `make demo`: the main job end to end on an embedded task
# (docs/demo.md).  Nothing but the repository is needed:
#   1. the task: smart-home commands -> JSON actions (lora/demo_task.h), with
#      held-out phrasings and slots; the base model's corpus (lora/demo_corpus.h)
#   2. a vocabulary learnt from the training text (edgetune vocab)
#   3. tokens.h5 for the corpus and the task (edgetune data)
#   4. a small base model trained from scratch on the corpus (edgetune train)
#   5. a LoRA adapter tuned for the task on the frozen base (edgetune lora),
#      exported as GGUF and PEFT; the merged GGUF (edgetune merge)
#   6. the engine on held-out prompts (edgetune eval --task generate): loss and greedy
#      exact-match accuracy before and after, and a table.
#   7. accuracy vs size: every artifact (base, + LoRA, merged F32/Q8_0/Q4_0, and a
#      1-layer student distilled from the merged model: edgetune distill, and
#      the merged model with half its heads and FFN channels pruned and
#      recovered by distillation from it: edgetune prune --recover distill)
#      through `edgetune eval`, `edgetune report` (report.md/.json/.svg) and
#      `edgetune gate` against scripts/demo_gate/baseline.json.
# When ../shared (or $ET_SHARED) is present, also the LoRA fine-tune of the
# real stories260K on tiny_shakespeare.txt (issue 5 §5).
#
# Progress goes to stderr, the table to stdout; every file lands in
# $ET_DEMO_OUT (default build/demo).  Deterministic for ET_DEMO_SEED (default
# 1) and a thread count (ET_THREADS, default 1: the figures are the same on
# every run; more threads change float rounding only).
set -euo pipefail
cd "$(dirname "$0")/.."

ET=${ET:-./edgetune}
OUT=${ET_DEMO_OUT:-build/demo}
SEED=${ET_DEMO_SEED:-1}
THREADS=${ET_THREADS:-1}
SHARED=${ET_SHARED:-../shared}
# sizes (docs/demo.md explains the choices)
N_VOCAB=1024                 # upper bound: the learnt vocabulary stops when pairs run out
BASE_ARCH=(--n-embd 128 --n-layer 2 --n-head 4 --n-ff 384 --n-ctx 128)
BASE_STEPS=${ET_DEMO_BASE_STEPS:-600}
LORA_STEPS=${ET_DEMO_LORA_STEPS:-300}
LORA_OPTS=(--rank 16 --alpha 32 --targets all-linear --dropout 0 --lr 3e-3)
SH_STEPS=${ET_DEMO_SHARED_STEPS:-150}
KD_STEPS=${ET_DEMO_KD_STEPS:-200}
PRUNE_STEPS=${ET_DEMO_PRUNE_STEPS:-200}

T0=$(date +%s.%N)
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }'; }
STEP=0
N_STEPS=8
step() { STEP=$((STEP + 1)); printf '\n\033[1m[%d/%d %3ss] %s\033[0m\n' "$STEP" "$N_STEPS" "$(elapsed)" "$*" >&2; }
[ -t 2 ] || step() { STEP=$((STEP + 1)); printf '\n[%d/%d %3ss] %s\n' "$STEP" "$N_STEPS" "$(elapsed)" "$*" >&2; }
run() { printf '  $ %s\n' "$*" >&2; "$@" >&2; }   # stdout is kept for the tables
kb() { awk -v b="$(stat -c %s "$1")" 'BEGIN { printf "%.1f KB", b / 1024 }'; }

[ -x "$ET" ] || { echo "demo: $ET not found (run make first)" >&2; exit 1; }
HAVE_LORA=1
if ! "$ET" help lora 2>/dev/null | grep -q -- '--rank'; then
  HAVE_LORA=0
  echo "demo: this build has no 'edgetune lora' yet: the LoRA steps are skipped" >&2
fi
# start clean, removing only what this script writes
rm -rf "$OUT/task" "$OUT/base" "$OUT/lora" "$OUT/student" "$OUT/pruned" "$OUT"/pruned.* "$OUT/eval" "$OUT/stories260K" "$OUT/merged.gguf" "$OUT/evals" "$OUT/report"
mkdir -p "$OUT/eval" "$OUT/evals"
D=$OUT/task

step "the task: smart-home commands -> JSON actions (seed $SEED)"
run "$ET" demo-task --out "$D" --seed "$SEED"

step "a vocabulary learnt from the training text (BPE, byte fallback)"
run "$ET" vocab --input "$D/pretrain.txt,$D/train.jsonl" -o "$D/vocab.gguf" --n-vocab $N_VOCAB --name demo-vocab

step "tokens.h5: the base corpus and the task (prompts masked from the loss)"
run "$ET" data --tokenizer "$D/vocab.gguf" --input "$D/pretrain.txt" -o "$D/pretrain.h5" \
  --pack --seq-len 64 --valid-fraction 0.05 --seed "$SEED"
run "$ET" data --tokenizer "$D/vocab.gguf" --input "$D/train.jsonl" -o "$D/task.h5" \
  --pack --seq-len 64 --valid-fraction 0.05 --seed "$SEED"

step "the base model, trained from scratch on the corpus (never a command -> JSON pair)"
run "$ET" train --tokenizer "$D/vocab.gguf" --data "$D/pretrain.h5" --out "$OUT/base" "${BASE_ARCH[@]}" \
  --steps "$BASE_STEPS" --batch-size 16 --seq-len 64 --lr 2e-3 --eval-every 200 --ckpt-every 0 \
  --log-every 50 --seed "$SEED" --threads "$THREADS"
BASE=$OUT/base/model.gguf

# evaluate NAME MODEL [--lora ADAPTER]: `edgetune eval --task generate` on the engine: the held-out
# loss of valid.jsonl's answers (+EOS) and greedy exact match on test.jsonl (stop at a newline).
# test.jsonl's result is the artifact's eval JSON ($OUT/evals/NAME.json, the report's input).
evaluate() {
  local name=$1 model=$2; shift 2
  "$ET" eval "$model" "$@" --task generate --data "$D/valid.jsonl" --stop '\n' --n-predict 1 --name "$name" \
    --threads "$THREADS" --json "$OUT/eval/$name.valid.json" >/dev/null 2>&1
  "$ET" eval "$model" "$@" --task generate --data "$D/test.jsonl" --stop '\n' --n-predict 64 --name "$name" \
    --threads "$THREADS" --json "$OUT/evals/$name.json" --samples "$OUT/eval/$name.samples.jsonl" >/dev/null 2>&1
  shown "$OUT/eval/$name.samples.jsonl" | awk -F'\t' 'NR <= 4 { printf "  %s %-44s -> %s\n", $1, $2, $3 }' >&2
}
# number NAME of an eval JSON (cJSON prints "name":<TAB>value)
num() { sed -n "s/^[[:space:]]*\"$2\":[[:space:]]*\([-0-9.e+]*\),*$/\1/p" "$1" | head -1; }
# ok|BAD, the command, the answer of each line of a --samples file
shown() {
  sed -n -E 's/^\{"line":[0-9]+,"prompt":"(Command: )?([^"\\]*)(\\n)?[^"]*","gold":".*","pred":"(.*)","exact":(true|false),.*$/\5\t\2\t\4/p' "$1" |
    sed -e 's/^true/ok /' -e 's/^false/BAD/' -e 's/\\"/"/g'
}

step "the base on held-out prompts, through the engine (greedy)"
evaluate base "$BASE"

if [ $HAVE_LORA = 1 ]; then
  step "LoRA on the frozen base: the task's training split"
  run "$ET" lora --model "$BASE" --data "$D/task.h5" --out "$OUT/lora" "${LORA_OPTS[@]}" \
    --steps "$LORA_STEPS" --batch-size 16 --seq-len 64 --eval-every 100 --ckpt-every 0 --log-every 50 \
    --seed "$SEED" --threads "$THREADS"
  ADAPTER=$OUT/lora/adapter.gguf
  PEFT=$OUT/lora/peft/adapter_model.safetensors

  step "exports: merged GGUF (edgetune merge); the engine with the adapter, and merged"
  run "$ET" merge "$BASE" "$ADAPTER" -o "$OUT/merged.gguf"
  evaluate base+lora "$BASE" --lora "$ADAPTER"
  evaluate merged-F32 "$OUT/merged.gguf"
else
  STEP=$((STEP + 2))
fi

# ---------------------------------------------------------------- accuracy vs size
# Every artifact through `edgetune eval` (one eval JSON each), the report
# (JSON, Markdown, SVG: accuracy against bytes on disk, Pareto frontier) and
# the CI gate against the baseline this repository ships (scripts/demo_gate/).
if [ $HAVE_LORA = 1 ]; then
  N_STEPS=$((N_STEPS + 1))
  step "accuracy vs size: base, + LoRA, merged F32 / Q8_0 / Q4_0 -> report + gate"
  run "$ET" quantize "$OUT/merged.gguf" "$OUT/merged-Q8_0.gguf" --type Q8_0 --quiet
  run "$ET" quantize "$OUT/merged.gguf" "$OUT/merged-Q4_0.gguf" --type Q4_0 --quiet
  evaluate merged-Q8_0 "$OUT/merged-Q8_0.gguf"
  evaluate merged-Q4_0 "$OUT/merged-Q4_0.gguf"
  if "$ET" help distill >/dev/null 2>&1; then
    N_STEPS=$((N_STEPS + 1))
    step "a distilled student: layer 0 of the merged model (1 of 2 layers), the merged model as online teacher"
    run "$ET" distill --teacher "$OUT/merged.gguf" --keep-layers 0 --data "$D/task.h5" --out "$OUT/student" \
      --alpha 0.5 --steps "$KD_STEPS" --batch-size 16 --seq-len 64 --lr 2e-3 --eval-every 100 --ckpt-every 0 \
      --log-every 50 --seed "$SEED" --threads "$THREADS" --no-eval
    evaluate student-1L "$OUT/student/model.gguf"
  fi
  if "$ET" help prune 2>/dev/null | grep -q -- 'distill|ce|lora'; then
    N_STEPS=$((N_STEPS + 1))
    step "a pruned student: half the merged model's heads and FFN channels, recovered by distillation from it"
    run "$ET" prune "$OUT/merged.gguf" --calib "$D/task.h5" --calib-rows 32 --seq-len 64 --heads 0.5 --ffn 0.5 \
      --uniform --plan "$OUT/pruned.plan.json" -o "$OUT/pruned.gguf" --recover distill --recover-data "$D/task.h5" \
      --recover-out "$OUT/pruned" --recover-steps "$PRUNE_STEPS" --recover-batch 16 --recover-seq-len 64 \
      --recover-lr 2e-3 --threads "$THREADS"
    evaluate pruned-50% "$OUT/pruned.gguf"
  fi
  run "$ET" report "$OUT"/evals/*.json -o "$OUT/report" --title "make demo: smart-home commands -> JSON"
  GATE_RC=0
  "$ET" gate --baseline scripts/demo_gate/baseline.json --current "$OUT/report/report.json" \
    --policy scripts/demo_gate/policy.json --junit "$OUT/report/junit.xml" > "$OUT/report/gate.txt" 2>&1 || GATE_RC=$?
fi

# ---------------------------------------------------------------- the table
row() { # label name size
  local v=$OUT/eval/$2.valid.json t=$OUT/evals/$2.json
  local n; n=$(num "$t" records)
  printf '  %-28s %12.4f %9s/%s %7.1f%% %10s   %s\n' "$1" "$(num "$v" nll_per_token)" \
    "$(awk -v a="$(num "$t" exact_match)" -v n="$n" 'BEGIN { printf "%d", a * n + 0.5 }')" "$n" \
    "$(awk -v a="$(num "$t" exact_match)" 'BEGIN { print 100 * a }')" \
    "$(awk -v a="$(num "$t" same_json)" -v n="$n" 'BEGIN { printf "%d", a * n + 0.5 }')" "$3"
}
{
  echo
  echo "== make demo: smart-home commands -> JSON, held-out phrasings and slots (seed $SEED)"
  printf '  %-28s %12s %14s %8s %10s   %s\n' "model" "held-out loss" "exact match" "" "same JSON" "size on disk"
  row "base (no adapter)" base "model.gguf $(kb "$BASE")"
  if [ $HAVE_LORA = 1 ]; then
    row "base + LoRA (run time)" base+lora "adapter.gguf $(kb "$ADAPTER"), PEFT $(kb "$PEFT")"
    row "merged GGUF" merged-F32 "merged.gguf $(kb "$OUT/merged.gguf")"
    [ -f "$OUT/evals/student-1L.json" ] && row "distilled 1-layer student" student-1L "model.gguf $(kb "$OUT/student/model.gguf")"
    [ -f "$OUT/evals/pruned-50%.json" ] && row "pruned 50% + distilled" pruned-50% "pruned.gguf $(kb "$OUT/pruned.gguf")"
  else
    echo "  (no 'edgetune lora' in this build: no adapter rows)"
  fi
  echo "  loss: nats/token of the JSON answers (+EOS) of $D/valid.jsonl; accuracy: greedy answers to $D/test.jsonl"
  if [ $HAVE_LORA = 1 ]; then
    echo "  held-out prompts, greedy answers of the base and of base + LoRA:"
    paste <(shown "$OUT/eval/base.samples.jsonl") <(shown "$OUT/eval/base+lora.samples.jsonl") |
      awk -F'\t' 'NR <= 3 { printf "    %s\n      base:   %s\n      + LoRA: %s  (%s)\n", $2, $3, $6,
                             $4 == "ok " ? "exact" : "wrong" }'
  fi
}

if [ $HAVE_LORA = 1 ]; then
  echo
  echo "== accuracy vs size ($OUT/report/report.md, report.svg)"
  sed -n '/^|/p' "$OUT/report/report.md" | head -12
  echo
  echo "== gate against scripts/demo_gate/baseline.json (exit $GATE_RC; JUnit: $OUT/report/junit.xml)"
  tail -8 "$OUT/report/gate.txt"
fi

# ---------------------------------------------------------------- stories260K (issue 5 §5)
SM=$SHARED/models/stories260K/stories260K.gguf
SD=$SHARED/data/tiny_shakespeare.txt
if [ -f "$SM" ] && [ -f "$SD" ] && [ $HAVE_LORA = 1 ]; then
  N_STEPS=$((N_STEPS + 1))
  step "shared data found: LoRA fine-tune of the real stories260K on tiny_shakespeare.txt"
  S=$OUT/stories260K
  mkdir -p "$S"
  run "$ET" data --tokenizer "$SM" --input "$SD" -o "$S/shakespeare.h5" --pack --seq-len 128 \
    --valid-fraction 0.05 --seed "$SEED"
  loss_of() { sed -n 's/.* \([0-9.]*\) nats\/token.*/\1/p' | tail -1; }
  before=$("$ET" perplexity "$SM" "$S/shakespeare.h5" --split valid --threads "$THREADS" 2>/dev/null | loss_of)
  run "$ET" lora --model "$SM" --data "$S/shakespeare.h5" --out "$S/lora" --rank 8 --alpha 16 \
    --targets all-linear --dropout 0 --lr 3e-3 --steps "$SH_STEPS" --batch-size 8 --seq-len 128 \
    --eval-every 50 --eval-batches 8 --ckpt-every 0 --log-every 25 --seed "$SEED" --threads "$THREADS"
  after=$("$ET" perplexity "$SM" "$S/shakespeare.h5" --split valid --lora "$S/lora/adapter.gguf" \
    --threads "$THREADS" 2>/dev/null | loss_of)
  gen() { "$ET" run "$SM" --prompt "ROMEO:" --temp 0 --n 48 "$@" 2>/dev/null | tr '\n' ' ' | cut -c1-150; }
  {
    echo
    echo "== stories260K (../shared) + LoRA on tiny_shakespeare.txt (5% held out)"
    printf '  held-out loss   %s -> %s nats/token\n' "$before" "$after"
    printf '  adapter         adapter.gguf %s bytes, PEFT adapter_model.safetensors %s bytes\n' \
      "$(stat -c %s "$S/lora/adapter.gguf")" "$(stat -c %s "$S/lora/peft/adapter_model.safetensors")"
    printf '  before  %s\n' "$(gen)"
    printf '  after   %s\n' "$(gen --lora "$S/lora/adapter.gguf")"
  }
fi
printf '\nmake demo: %ss wall, files in %s\n' "$(elapsed)" "$OUT"
# the gate's verdict is the demo's: 4 when accuracy or size moved past the policy
exit "${GATE_RC:-0}"
