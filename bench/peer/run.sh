#!/bin/sh
# bench/peer/run.sh — edgetune against the peer a user would pick (issue 12 §5): PyTorch +
# Hugging Face transformers + PEFT, on the real SmolLM2-135M-Instruct (its Q4_1 GGUF: edgetune
# reads it directly, transformers loads it with gguf_file= and dequantizes it to float32, so both
# train the same weights), the same token ids (an edgetune tokens.h5 of wikitext-2, read by the
# peer with h5py), batch 4 x 256, 2 threads:
#   LoRA rank 8 (alpha 16, dropout 0) on q, v: edgetune (build/bench/bench_peer lora) with an F32
#     base in f32 GEMMs (the fidelity reference), a BF16 base in bf16 GEMMs (`edgetune lora`'s
#     default on AVX512_BF16 CPUs) and the file's own Q4_1 base (QLoRA-style) with recomputation,
#     vs PyTorch+PEFT in float32 and in bf16 autocast;
#   full fine-tuning: edgetune f32, bf16, bf16 + recompute, bf16 + 8-bit AdamW moments (--optim
#     adamw8bit, train/optim.h), with recomputation of the first 12 layers (--recompute-layers 12) and
#     of all, vs PyTorch float32 and bf16 autocast
#     (PEER_MODES=full runs only these).
# Rounds interleave every configuration (one process each: its own peak RSS); the summary
# (bench/peer/peer.py summary) gives medians over rounds with ranges, the ratios against
# PyTorch's fastest configuration, the targets and the first-step loss fidelity check.
#
#   flock /work/bench.lock bench/peer/run.sh          (after `make`; the lock is the caller's)
#   bench/peer/run.sh --setup                         (create the venv from requirements.txt, check
#                                                      its imports and exit: no timed run outside the lock)
# Environment: PEER_VENV (default /work/peer-venv; never inside the repository), ROUNDS (3),
#   STEPS (timed steps per process, 3), PEER_WORK (default /tmp/edgetune-peer: tokens, the
#   transformers copy of the model, results.jsonl), PEER_MODES ("lora full").
# Without the venv or the model it prints why and exits 0 (so `make bench` skips it cleanly;
# CI never runs the benchmarks nor installs torch).
set -eu
cd "$(dirname "$0")/../.."
VENV=${PEER_VENV:-/work/peer-venv}
WORK=${PEER_WORK:-/tmp/edgetune-peer}
ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-3}
MODES=${PEER_MODES:-lora full}
B=4
T=256
REPO=$(pwd -P)
case "$(realpath -m "$VENV")/" in
  "$REPO"/*) echo "bench/peer: PEER_VENV=$VENV is inside the repository: put it outside" >&2; exit 1 ;;
esac
if [ "${1:-}" = "--setup" ] && [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -r bench/peer/requirements.txt
fi
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import torch, transformers, peft, gguf, h5py' 2>/dev/null; then
  echo "bench/peer: skipped: no peer venv with torch, transformers, peft, gguf, h5py at $VENV" \
       "(create it with: bench/peer/run.sh --setup, or PEER_VENV=DIR)"
  exit 0
fi
if [ "${1:-}" = "--setup" ]; then
  echo "bench/peer: venv ready at $VENV; measure with: flock /work/bench.lock bench/peer/run.sh"
  exit 0
fi
MODEL=
for f in ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \
         "${ET_MODEL_CACHE:-$HOME/.cache/edgetune}/SmolLM2-135M-Instruct.Q4_1.gguf"; do
  [ -f "$f" ] && MODEL=$f && break
done
if [ -z "$MODEL" ]; then
  echo "bench/peer: skipped: SmolLM2-135M-Instruct.Q4_1.gguf not found (fetch it with make models)"
  exit 0
fi
for x in ./edgetune build/bench/bench_peer; do
  [ -x "$x" ] || { echo "bench/peer: $x missing: run make all build/bench/bench_peer first" >&2; exit 1; }
done
PY="$VENV/bin/python"
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TQDM_DISABLE=1 OMP_NUM_THREADS=2
mkdir -p "$WORK"
# the same data for both: wikitext-2 test text packed into rows of T+1 tokens by edgetune
[ -f "$WORK/wiki.h5" ] || ./edgetune data --tokenizer "$MODEL" --input ../shared/data/wikitext2/wiki.test.raw \
  -o "$WORK/wiki.h5" --pack --seq-len $T >/dev/null
"$PY" bench/peer/peer.py tokens "$WORK/wiki.h5" "$WORK/tokens.i32" $B $T
# the same weights for the peer: transformers' own GGUF import, saved once as float32 safetensors
[ -f "$WORK/hf/model.safetensors" ] || "$PY" bench/peer/peer.py prepare "$MODEL" "$WORK/hf" 2>/dev/null

cpu="$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //') (family $(grep -m1 'cpu family' /proc/cpuinfo | sed 's/.*: //'),\
 model $(grep -m1 '^model[[:space:]]' /proc/cpuinfo | sed 's/.*: //'); AMD family 25 model 17 = Zen 4)"
flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx512f|avx512_bf16|avx512_vnni|amx_bf16|amx_tile)$' | tr '\n' ' ')
echo "bench/peer: $(date -u '+%Y-%m-%d %H:%M UTC'), edgetune $(git rev-parse --short HEAD 2>/dev/null || echo ?)," \
     "CPU: $cpu, $(nproc) cores visible, flags: ${flags:-none of avx512f/bf16/vnni/amx}"
case "$flags" in *amx*) ;; *) echo "  (no AMX: PyTorch's oneDNN bf16 runs on AVX512_BF16 here, not on AMX tiles)";; esac
echo "  PyTorch peer: $("$PY" -c 'import torch, transformers, peft; print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)')"
RES="$WORK/results.jsonl"
: > "$RES"
run() { # one configuration, one process: its JSON line into RES
  out=$("$@" 2>"$WORK/last.err" | grep '^{' || true)
  if [ -z "$out" ]; then echo "  FAILED: $*" >&2; tail -3 "$WORK/last.err" >&2; return 0; fi
  echo "$out" >> "$RES"
  echo "  $out"
}
r=1
while [ $r -le "$ROUNDS" ]; do
  echo "round $r of $ROUNDS"
  for mode in $MODES; do
    if [ "$mode" = lora ]; then
      run build/bench/bench_peer lora "$MODEL" "$WORK/tokens.i32" $B $T "$STEPS" --base F32
      run "$PY" bench/peer/peer.py step lora "$WORK/hf" "$WORK/tokens.i32" $B $T "$STEPS"
      run build/bench/bench_peer lora "$MODEL" "$WORK/tokens.i32" $B $T "$STEPS" --base BF16 --bf16
      run "$PY" bench/peer/peer.py step lora "$WORK/hf" "$WORK/tokens.i32" $B $T "$STEPS" --autocast bf16
      run build/bench/bench_peer lora "$MODEL" "$WORK/tokens.i32" $B $T "$STEPS" --base Q4_1 --bf16 --rc
    else
      run build/bench/bench_peer full "$MODEL" "$WORK/tokens.i32" $B $T "$STEPS"
      run "$PY" bench/peer/peer.py step full "$WORK/hf" "$WORK/tokens.i32" $B $T "$STEPS"
      run build/bench/bench_peer full "$MODEL" "$WORK/tokens.i32" $B $T "$STEPS" --bf16
      run "$PY" bench/peer/peer.py step full "$WORK/hf" "$WORK/tokens.i32" $B $T "$STEPS" --autocast bf16
      run build/bench/bench_peer full "$MODEL" "$WORK/tokens.i32" $B $T "$STEPS" --bf16 --rc
      run build/bench/bench_peer full "$MODEL" "$WORK/tokens.i32" $B $T "$STEPS" --bf16 --optim adamw8bit
      run build/bench/bench_peer full "$MODEL" "$WORK/tokens.i32" $B $T "$STEPS" --bf16 --rc-layers 12 --optim adamw8bit
      run build/bench/bench_peer full "$MODEL" "$WORK/tokens.i32" $B $T "$STEPS" --bf16 --rc --optim adamw8bit
    fi
  done
  r=$((r + 1))
done
"$PY" bench/peer/peer.py summary "$RES"
