#!/usr/bin/env bash
# bench/compare_llamacpp.sh — edgetune's engine against llama.cpp's llama-bench
# on the same GGUF files in one session (issue 4 §5).  llama.cpp is never part
# of the project: build it beside it and point LLAMA_BENCH at the binary, e.g.
#   cmake -S llama.cpp -B llama.cpp/build -DCMAKE_BUILD_TYPE=Release \
#         -DGGML_NATIVE=ON -DLLAMA_CURL=OFF && cmake --build llama.cpp/build --target llama-bench
#   LLAMA_BENCH=llama.cpp/build/bin/llama-bench bench/compare_llamacpp.sh [DIR]
#
# DIR (default /tmp/edgetune-bench) keeps the random-weight SmolLM2-135M-shape
# files that build/bench/bench_engine writes (F32, then F16/Q8_0/Q4_0 quantized
# by edgetune).  Per type, edgetune's bench and then llama-bench run back to
# back (pp128 and tg32, threads 1 and 2, REPS runs each), so both see the same
# machine load.  Printed: tokens/s (medians; llama-bench's samples_ts median),
# the ratio edgetune / llama.cpp, and the generation bound from bandwidth.
# Env: TYPES (F32,F16,Q8_0,Q4_0), THREADS (1,2), REPS (5).
# MODELS=LABEL=PATH,... measures those files instead of the random ones
# (TYPES becomes the labels), e.g. the real SmolLM2-135M-Instruct in Q8_0,
# Q4_0 (both made by `edgetune quantize` from the Q4_1 file) and Q4_1.
# ROUNDS (1): that many interleaved rounds — per round and type, edgetune
# and llama-bench back to back, which one first alternating between rounds;
# the table then gives, per cell, the median and range of all timed runs of
# all rounds (ROUNDS x REPS each side).  Run it under `flock /work/bench.lock`.
# CPUTIME=1 adds a load-independent comparison for a busy machine: tokens per
# (CPU second / threads).  edgetune reports it per run; for llama-bench it is
# the task-clock (perf stat) of a run with REPS+1 repetitions minus one with
# 1, so loading and warm-up cancel.  Threads that spin while waiting count
# as busy, so with more threads than free cores it favours neither side.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${LLAMA_BENCH:?set LLAMA_BENCH to a llama-bench binary}"
DIR=${1:-/tmp/edgetune-bench}
TYPES=${TYPES:-F32,F16,Q8_0,Q4_0}
THREADS=${THREADS:-1,2}
REPS=${REPS:-5}
ROUNDS=${ROUNDS:-1}
MODELS=${MODELS:-}
make -s build/bench/bench_engine >/dev/null
declare -A FILE
if [ -n "$MODELS" ]; then
  TYPES=
  for kv in ${MODELS//,/ }; do
    FILE[${kv%%=*}]=${kv#*=}
    TYPES=${TYPES:+$TYPES,}${kv%%=*}
  done
else
  build/bench/bench_engine --dir "$DIR" --make-only --types "$TYPES"
  for t in ${TYPES//,/ }; do FILE[$t]=$DIR/bench-smollm2-135m-$t.gguf; done
fi

log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
for round in $(seq 1 "$ROUNDS"); do
for t in ${TYPES//,/ }; do
  run_et() {
    build/bench/bench_engine --model "$t=${FILE[$t]}" --threads "$THREADS" --reps "$REPS" --budget 1e9 \
      | tee -a "$log/edgetune.txt"
  }
  run_ll() {
    "$LLAMA_BENCH" -m "${FILE[$t]}" -p 128 -n 32 -t "$THREADS" -r "$REPS" -o json >"$log/llama-$t-$round.json"
    echo "llama-bench $t round $round done"
  }
  if [ $((round % 2)) = 1 ]; then run_et; run_ll; else run_ll; run_et; fi
  if [ "${CPUTIME:-0}" = 1 ] && [ "$round" = 1 ]; then
    for n in ${THREADS//,/ }; do
      for test in "-p 128 -n 0" "-p 0 -n 32"; do
        for r in 1 $((REPS + 1)); do
          # shellcheck disable=SC2086
          perf stat -x, -e task-clock -o "$log/ps" "$LLAMA_BENCH" -m "${FILE[$t]}" \
            $test -t "$n" -r "$r" >/dev/null 2>&1
          echo "$t $n ${test// /_} $r $(grep task-clock "$log/ps" | cut -d, -f1)" >>"$log/cpu.txt"
        done
      done
    done
  fi
done
done

python3 - "$log" "$TYPES" "$ROUNDS" <<'EOF'
import glob, json, statistics, sys, os
log, types, rounds = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
et, et_cpu, et_runs = {}, {}, {}
for line in open(os.path.join(log, "edgetune.txt")):
    if "| edgetune " not in line:
        continue
    f = dict(kv.split("=") for kv in line.split("| edgetune ")[1].split()[1:])
    key = (line.split("| edgetune ")[1].split()[0], int(f["t"]))
    et[key] = (float(f["pp"]), float(f["tg"]), float(f["bound"]))
    et_cpu[key] = (float(f["pp_cpu"]), float(f["tg_cpu"]), float(f["bound_cpu"]))
    for kind in ("pp", "tg"):
        if f.get(kind + "_runs", "-") != "-":
            et_runs.setdefault(key + (kind,), []).extend(float(v) for v in f[kind + "_runs"].split(","))
ll_runs = {}
for t in types:
    for path in glob.glob(os.path.join(log, f"llama-{t}-*.json")):
        for r in json.load(open(path)):
            kind = "pp" if r["n_prompt"] > 0 else "tg"
            ll_runs.setdefault((t, r["n_threads"], kind), []).extend(r["samples_ts"])
med = lambda v: statistics.median(v) if v else float("nan")
def cell(v):
    return f"{med(v):.1f} ({min(v):.0f}-{max(v):.0f})" if v else "-"
print(f"\n{rounds} interleaved round(s); tokens/s, median (min-max) of all timed runs; ratio = edgetune / llama.cpp medians")
print("| type | thr | test | edgetune | llama.cpp | ratio | runs |")
print("|---|---|---|---|---|---|---|")
for (t, n) in sorted(et, key=lambda k: (types.index(k[0]), k[1])):
    for kind, name in (("pp", "pp128"), ("tg", "tg32")):
        e, l = et_runs.get((t, n, kind), []), ll_runs.get((t, n, kind), [])
        print(f"| {t} | {n} | {name} | {cell(e)} | {cell(l)} | {med(e) / med(l):.2f} | {len(e)} / {len(l)} |")
print(f"\ngeneration bound (read bandwidth / weight bytes, last round): " +
      ", ".join(f"{t} t={n} {et[(t, n)][2]:.0f}" for (t, n) in sorted(et, key=lambda k: (types.index(k[0]), k[1]))))
cpu_path = os.path.join(log, "cpu.txt")
if os.path.exists(cpu_path):
    ms = {}
    for line in open(cpu_path):
        t, n, test, r, v = line.split()
        ms[(t, int(n), test, int(r))] = float(v)
    print("\nCPU-time normalized: tokens / (CPU s / threads)")
    print(f"{'type':5} {'thr':>3} {'pp edgetune':>11} {'pp llama':>9} {'ratio':>6}   {'tg edgetune':>11} {'tg llama':>9} {'ratio':>6} {'tg bound':>9}")
    for (t, n) in sorted(et_cpu, key=lambda k: (types.index(k[0]), k[1])):
        pp, tg, bound = et_cpu[(t, n)]
        reps = {r for (tt, nn, _, r) in ms if (tt, nn) == (t, n)}
        hi = max(reps)
        def rate(test, ntok):
            d = ms[(t, n, test, hi)] - ms[(t, n, test, 1)]
            return ntok * (hi - 1) * n / (d / 1000.0)
        lp, lt = rate("-p_128_-n_0", 128), rate("-p_0_-n_32", 32)
        print(f"{t:5} {n:3d} {pp:11.1f} {lp:9.1f} {pp / lp:6.2f}   {tg:11.1f} {lt:9.1f} {tg / lt:6.2f} {bound:9.1f}")
EOF
