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
# The library once, as an archive (each harness links only what it uses): every folder of the
# library, as the Makefile's LIB_DIRS (eval/ needs train/'s et_row_lse since the distillation work:
# the old list of folders no longer linked).
cflags="-std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fopenmp=libgomp"
srcs=$(ls common/*.c export/*.c datasets/*.c train/*.c lora/*.c distill/*.c prune/*.c quant/*.c engine/*.c eval/*.c 2>/dev/null || true)
rm -rf "$out/obj"; mkdir -p "$out/obj"   # rebuilt once per run: a header change reaches every object
# train/'s x86 GEMM kernels (intrinsics, only linked in through eval's use of train/) did not finish in
# 15 minutes each under clang's sanitizers on the loaded 2-core machine: they are built without them
# (no fuzzed parser is in them).
printf '%s\n' $srcs | xargs -P 2 -I{} sh -c 'o="$1/obj/$(echo "$2" | tr / _).o"; f=$3;
  case "$2" in train/*_x86.c) f="-std=c11 -D_GNU_SOURCE -g -O1 -fopenmp=libgomp";; esac; clang $f $4 -c "$2" -o "$o"' \
  _ "$out" {} "$cflags" "$inc" \
  2>"$out/lib.build.log" || { tail -40 "$out/lib.build.log" >&2; exit 1; }
rm -f "$out/libfuzz.a"
ar rcs "$out/libfuzz.a" "$out"/obj/*.o
summary=()
for f in "$@"; do
  name=$(basename "$f" .c)
  bin="$out/$name"
  clang $cflags -fsanitize=fuzzer $inc -o "$bin" "$f" "$out/libfuzz.a" $libs -lm -lpthread 2>"$out/$name.build.log" \
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
