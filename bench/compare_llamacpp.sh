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
make -s build/bench/bench_engine >/dev/null
build/bench/bench_engine --dir "$DIR" --make-only --types "$TYPES"

log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
for t in ${TYPES//,/ }; do
  build/bench/bench_engine --dir "$DIR" --types "$t" --threads "$THREADS" --reps "$REPS" --budget 1e9 \
    | tee -a "$log/edgetune.txt"
  "$LLAMA_BENCH" -m "$DIR/bench-smollm2-135m-$t.gguf" -p 128 -n 32 -t "$THREADS" -r "$REPS" -o json \
    >"$log/llama-$t.json"
  if [ "${CPUTIME:-0}" = 1 ]; then
    for n in ${THREADS//,/ }; do
      for test in "-p 128 -n 0" "-p 0 -n 32"; do
        for r in 1 $((REPS + 1)); do
          # shellcheck disable=SC2086
          perf stat -x, -e task-clock -o "$log/ps" "$LLAMA_BENCH" -m "$DIR/bench-smollm2-135m-$t.gguf" \
            $test -t "$n" -r "$r" >/dev/null 2>&1
          echo "$t $n ${test// /_} $r $(grep task-clock "$log/ps" | cut -d, -f1)" >>"$log/cpu.txt"
        done
      done
    done
  fi
done

python3 - "$log" "$TYPES" <<'EOF'
import json, statistics, sys, os
log, types = sys.argv[1], sys.argv[2].split(",")
et, et_cpu = {}, {}
for line in open(os.path.join(log, "edgetune.txt")):
    if "| edgetune " not in line:
        continue
    f = dict(kv.split("=") for kv in line.split("| edgetune ")[1].split()[1:])
    key = (line.split("| edgetune ")[1].split()[0], int(f["t"]))
    et[key] = (float(f["pp"]), float(f["tg"]), float(f["bound"]))
    et_cpu[key] = (float(f["pp_cpu"]), float(f["tg_cpu"]), float(f["bound_cpu"]))
ll = {}
for t in types:
    for r in json.load(open(os.path.join(log, f"llama-{t}.json"))):
        kind = "pp" if r["n_prompt"] > 0 else "tg"
        ll[(t, r["n_threads"], kind)] = statistics.median(r["samples_ts"])
print(f"\n{'type':5} {'thr':>3} {'pp edgetune':>11} {'pp llama':>9} {'ratio':>6}   {'tg edgetune':>11} {'tg llama':>9} {'ratio':>6} {'tg bound':>9}")
for (t, n), (pp, tg, bound) in sorted(et.items(), key=lambda k: (types.index(k[0][0]), k[0][1])):
    lp, lt = ll.get((t, n, "pp"), float("nan")), ll.get((t, n, "tg"), float("nan"))
    print(f"{t:5} {n:3d} {pp:11.1f} {lp:9.1f} {pp / lp:6.2f}   {tg:11.1f} {lt:9.1f} {tg / lt:6.2f} {bound:9.1f}")
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
