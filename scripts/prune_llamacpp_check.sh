#!/usr/bin/env bash
# scripts/prune_llamacpp_check.sh — does llama.cpp load a pruned GGUF
# (arch llama or deci) and agree with edgetune's engine?  For each model:
# greedy tokens (llama-simple vs `edgetune run --temp 0`, same prompt, same
# count) and perplexity (llama-perplexity vs `edgetune eval --task
# perplexity --scoring llama --kv-type F16`, same text and context).
#
#   LLAMA=/work/llama.cpp/build/bin TEXT=file.txt CTX=256 \
#     scripts/prune_llamacpp_check.sh pruned1.gguf pruned2.gguf ...
set -euo pipefail
ET=${ET:-./edgetune}
LLAMA=${LLAMA:-../llama.cpp/build/bin}
TEXT=${TEXT:?TEXT=file.txt to score}
CTX=${CTX:-256}
N=${N:-32}
THREADS=${THREADS:-2}
PROMPT=${PROMPT:-Once upon a time}
for M in "$@"; do
    arch=$($ET inspect "$M" 2>/dev/null | awk '$1 == "general.architecture" {print $3}' | tr -d '"')
    a=$("$LLAMA/llama-simple" -m "$M" -n "$N" "$PROMPT" 2>/dev/null | sed 's/^<s> //; s/^<|im_start|>//' || true)
    b=$($ET run "$M" --prompt "$PROMPT" --n "$N" --temp 0 --threads "$THREADS" 2>/dev/null || true)
    if [ "$a" = "$b" ]; then same=same; else same=DIFFERENT; fi
    p1=$("$LLAMA/llama-perplexity" -m "$M" -f "$TEXT" -c "$CTX" -t "$THREADS" 2>&1 | grep -oE 'Final estimate: PPL = [0-9.]+' |
        grep -oE '[0-9.]+$' || echo "failed")
    j=$(mktemp)
    p2=failed
    $ET eval "$M" --task perplexity --data "$TEXT" --scoring llama --ctx "$CTX" --kv-type F16 --threads "$THREADS" \
        --json "$j" >/dev/null 2>&1 && p2=$(python3 -c "import json,sys; print('%.4f' % json.load(open(sys.argv[1]))['metrics']['ppl'])" "$j")
    rm -f "$j"
    echo "$M ($arch): greedy $N tokens: $same; perplexity llama.cpp $p1, edgetune $p2"
    [ "$same" = same ] || { echo "  llama.cpp: $a"; echo "  edgetune:  $b"; }
done
