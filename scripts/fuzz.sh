#!/usr/bin/env bash
# Build each fuzz/fuzz_*.c with clang libFuzzer + ASan/UBSan against the
# library sources and run it for SECONDS seconds on its seed corpus.
# Usage: scripts/fuzz.sh SECONDS fuzz/fuzz_x.c ...
set -euo pipefail
secs=$1; shift
command -v clang >/dev/null || { echo "fuzz: clang not found" >&2; exit 1; }
out=build-fuzz
mkdir -p "$out"
inc=$(pkg-config --cflags hdf5-serial openblas libcjson 2>/dev/null || true)
libs=$(pkg-config --libs hdf5-serial openblas libcjson 2>/dev/null || true)
srcs=$(ls common/*.c export/*.c datasets/*.c quant/*.c engine/*.c eval/*.c train/checkpoint.c 2>/dev/null || true)  # some folders may be empty
summary=()
for f in "$@"; do
  name=$(basename "$f" .c)
  bin="$out/$name"
  clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
        $inc -o "$bin" "$f" $srcs $libs -lm -lpthread -fopenmp=libgomp 2>"$out/$name.build.log" \
    || { cat "$out/$name.build.log" >&2; exit 1; }
  corpus="$out/$name.corpus"; mkdir -p "$corpus"
  seeds="fuzz/seeds/$name"; [ -d "$seeds" ] && cp -n "$seeds"/* "$corpus"/ 2>/dev/null || true
  [ -x "fuzz/$name.seed.sh" ] && "fuzz/$name.seed.sh" "$corpus" || true
  echo "== $name: ${secs}s" >&2
  "$bin" -max_total_time="$secs" -rss_limit_mb=4096 -max_len=1048576 "$corpus" 2>"$out/$name.log" \
    || { tail -40 "$out/$name.log" >&2; echo "fuzz: $name found a crash (see $out/$name.log)" >&2; exit 1; }
  runs=$(grep -o 'Done [0-9]* runs' "$out/$name.log" | tail -1 | awk '{print $2}')
  summary+=("$name: ${runs:-?} executions in ${secs}s, no crash")
done
printf '%s\n' "${summary[@]}"
