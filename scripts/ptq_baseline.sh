#!/bin/sh
# scripts/ptq_baseline.sh — the PTQ baseline of docs/qat.md ("PTQ baseline:
# plain and imatrix"): stories260K and SmolLM2-135M-Instruct quantized to
# Q4_0, Q4_K_M, Q3_K_M, Q2_K without and with an importance matrix
# (edgetune imatrix on calibration text kept apart from the evaluation
# text), each evaluated for perplexity and KL to the F32 model on the engine;
# eval JSONs for `edgetune report` in $OUT/json, the table on stdout.
#
#   make -j2 all && scripts/ptq_baseline.sh            # both models
#   MODELS=stories scripts/ptq_baseline.sh             # stories260K only (a minute)
#
# Data (../shared): stories260K calibrates on the first 1,500,000 bytes of
# data/tinystories_sample.txt and is evaluated on its last 200,000 bytes;
# SmolLM2 calibrates on Alpaca text (data/alpaca_5000.json: instruction,
# input, output; ../shared has no WikiText-2 train split) and is evaluated
# on the first $WIKI_BYTES bytes of data/wikitext2/wiki.test.raw with
# --scoring llama at ctx 512 (as llama-perplexity).  Env: OUT (build/ptq),
# THREADS (2), MODELS ("stories smollm2"), SMOL (the Q4_1 GGUF),
# SMOL_CHUNKS (imatrix chunks, 64), WIKI_BYTES (40000),
# SMOL_TASKS ("kl": its JSON carries the ppl; "perplexity kl" for both).
set -eu
ET=${ET:-./edgetune}
OUT=${OUT:-build/ptq}
THREADS=${THREADS:-2}
MODELS=${MODELS:-stories smollm2}
SHARED=${ET_SHARED:-../shared}
SMOL=${SMOL:-$HOME/.cache/edgetune/SmolLM2-135M-Instruct.Q4_1.gguf}
SMOL_CHUNKS=${SMOL_CHUNKS:-64}
WIKI_BYTES=${WIKI_BYTES:-40000}
TYPES="Q4_0 Q4_K_M Q3_K_M Q2_K"
mkdir -p "$OUT/json"

# quantize + eval one model: $1 label, $2 F32 gguf, $3 imatrix, $4 eval text, $5.. eval flags.
# $TASKS: "perplexity kl" or "kl" (the kl result carries the model's ppl on the same windows).
# Existing outputs are kept (delete $OUT to start over).
run_model() {
    label=$1 f32=$2 im=$3 text=$4
    shift 4
    case " $TASKS " in *" perplexity "*)
        j=$OUT/json/$label-F32-ppl.json
        [ -f "$j" ] || "$ET" eval "$f32" --task perplexity --data "$text" --threads "$THREADS" "$@" \
            --name "$label F32" --json "$j" >/dev/null
    esac
    for t in $TYPES; do
        for mode in plain imatrix; do
            q="$OUT/$label-$t-$mode.gguf"
            if [ ! -f "$q" ]; then
                if [ $mode = plain ]; then
                    "$ET" quantize "$f32" "$q" --type $t --quiet >/dev/null 2>&1
                else
                    "$ET" quantize "$f32" "$q" --type $t --imatrix "$im" --quiet >/dev/null 2>&1
                fi
            fi
            for task in $TASKS; do
                j=$OUT/json/$label-$t-$mode-$( [ $task = kl ] && echo kl || echo ppl ).json
                [ -f "$j" ] && continue
                if [ $task = kl ]; then
                    "$ET" eval "$q" --task kl --ref-model "$f32" --ref "$OUT/$label-ref.h5" $REF_K --data "$text" \
                        --threads "$THREADS" "$@" --name "$label $t $mode" --json "$j" >/dev/null
                else
                    "$ET" eval "$q" --task perplexity --data "$text" --threads "$THREADS" "$@" \
                        --name "$label $t $mode" --json "$j" >/dev/null
                fi
            done
        done
    done
}

# the table: label, type, mode, ppl, KL mean, same top-1, file bytes
table() {
    python3 - "$OUT/json" "$1" <<'PY'
import json, os, sys
d, label = sys.argv[1], sys.argv[2]
def j(n):
    p = os.path.join(d, n)
    return json.load(open(p)) if os.path.exists(p) else None
print('| %s | ppl | KL mean | same top-1 | file bytes |' % label)
print('|---|---|---|---|---|')
f, first = j('%s-F32-ppl.json' % label), None
for t in ['Q4_0', 'Q4_K_M', 'Q3_K_M', 'Q2_K']:
    for m in ['plain', 'imatrix']:
        p, k = j('%s-%s-%s-ppl.json' % (label, t, m)), j('%s-%s-%s-kl.json' % (label, t, m))
        if not k:
            continue
        if first is None:
            first = k
            ppl_f = f['metrics']['ppl'] if f else k['metrics']['ppl_ref']
            f32 = os.path.join(os.path.dirname(d), '%s-f32.gguf' % label)
            size = f['artifact']['bytes'] if f else os.path.getsize(f32) if os.path.exists(f32) else '-'
            print('| F32 | %.4f | 0 | 100%% | %s |' % (ppl_f, size))
        ppl = p['metrics']['ppl'] if p else k['metrics']['ppl']
        print('| %s %s | %.4f | %.5f | %.2f%% | %d |' % (t, m, ppl, k['metrics']['kl_mean'],
              100 * k['metrics']['same_top1'], k['artifact']['bytes']))
PY
}

case " $MODELS " in *" stories "*)
    S=$SHARED/models/stories260K/stories260K.gguf
    TS=$SHARED/data/tinystories_sample.txt
    head -c 1500000 "$TS" > "$OUT/stories-calib.txt"
    tail -c 200000 "$TS" > "$OUT/stories-eval.txt"
    [ -f "$OUT/stories260K.imatrix.dat" ] || "$ET" imatrix "$S" --data "$OUT/stories-calib.txt" \
        -o "$OUT/stories260K.imatrix.dat" --ctx 512 --threads "$THREADS" 2>/dev/null
    REF_K=--ref-full TASKS="perplexity kl"
    run_model stories260K "$S" "$OUT/stories260K.imatrix.dat" "$OUT/stories-eval.txt" --ctx 256
    table stories260K
esac

case " $MODELS " in *" smollm2 "*)
    F32=$OUT/smollm2-f32.gguf
    [ -f "$F32" ] || "$ET" quantize "$SMOL" "$F32" --type F32 --allow-requantize --quiet >/dev/null
    python3 -c "
import json, sys
d = json.load(open(sys.argv[1]))
t = [r['instruction'] + ('\n' + r['input'] if r.get('input') else '') + '\n' + r['output'] for r in d]
open(sys.argv[2], 'w').write('\n\n'.join(t) + '\n')" "$SHARED/data/alpaca_5000.json" "$OUT/smollm2-calib.txt"
    head -c "$WIKI_BYTES" "$SHARED/data/wikitext2/wiki.test.raw" > "$OUT/wiki-test-head.txt"
    [ -f "$OUT/smollm2.imatrix.dat" ] || "$ET" imatrix "$F32" --data "$OUT/smollm2-calib.txt" \
        -o "$OUT/smollm2.imatrix.dat" --ctx 512 --chunks "$SMOL_CHUNKS" --threads "$THREADS" 2>/dev/null
    REF_K="--ref-top-k 64" TASKS=${SMOL_TASKS:-kl}
    run_model smollm2 "$F32" "$OUT/smollm2.imatrix.dat" "$OUT/wiki-test-head.txt" --scoring llama --ctx 512 --kv-type F16
    table smollm2
esac
